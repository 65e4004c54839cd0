"""What every command group shares: the console, times in the configured zone, JSON output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

from rich.console import Console

from imk_outreach.config import Settings

Command = Callable[[Settings, argparse.Namespace], int]


def make_console() -> Console:
    # Piped output keeps a readable width instead of rich's 80-column fallback.
    return Console(width=None if sys.stdout.isatty() else 140, highlight=False)


def local_time(settings: Settings, moment: datetime | None) -> str:
    return moment.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M") if moment else "-"


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value
