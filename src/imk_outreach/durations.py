"""Durations as staff write them in config.yaml, campaign files and on the command line.

One parser for all of them: ``"30m"``, ``"1h30m"``, ``"7d"``, ``"2w"``, ``"20s"``, ``"1.5h"``. Where a
key or flag was a number of seconds before (``smtp.timeout``, ``worker --poll``), a plain number still
means seconds; elsewhere a unit is required, since ``since: 7`` could mean days or hours.
"""

from __future__ import annotations

import argparse
import math
import re
from datetime import timedelta

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(w|d|h|m|s)")
_DURATION_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
EXAMPLES = "30m, 2h, 7d, 1w"
SECONDS_EXAMPLES = "20s, 1.5 (seconds) or 2m"


def parse_duration(text: str, examples: str = EXAMPLES) -> timedelta:
    """``"30m"``, ``"1h30m"``, ``"7d"``, ``"2w"``, ``"90s"``, ``"1.5h"`` -> timedelta (any case, spaces
    ignored). A unit is required.

    :param examples: shown in the error, e.g. ``"20s, 2m"`` for a timeout.
    :raises ValueError: not a duration; the message gives examples.
    """
    compact = text.replace(" ", "").lower()
    parts = _DURATION.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"{text!r} is not a duration (use e.g. {examples})")
    delta = timedelta()
    for number, unit in parts:
        delta += timedelta(**{_DURATION_UNITS[unit]: float(number)})
    return delta


def _number(value: object) -> float | None:
    """A plain number (an int or float that is not a bool, or text such as ``"1.5"``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def to_timedelta(value: object, seconds_if_plain: bool = True, examples: str = EXAMPLES) -> timedelta:
    """A duration from config or a flag: a timedelta, text with units, or (``seconds_if_plain``) a plain
    number of seconds.

    :raises ValueError: anything else; the message gives examples.
    """
    if isinstance(value, timedelta):
        return value
    number = _number(value) if seconds_if_plain else None
    if number is not None:
        return timedelta(seconds=number)
    if isinstance(value, str):
        return parse_duration(value, examples)
    raise ValueError(f"expected a duration such as {examples}, got {value!r}")


def to_seconds(value: object) -> float:
    """Seconds as a float from ``20``, ``2.5``, ``"20s"`` or ``"2m"`` (keys such as ``smtp.timeout``).

    :raises ValueError: not a duration.
    """
    return to_timedelta(value, examples=SECONDS_EXAMPLES).total_seconds()


def seconds_argument(text: str) -> float:
    """An argparse ``type`` for flags given in seconds (``--poll 2``, ``--poll 2s``, ``--poll 1m``):
    positive seconds as a float.

    :raises argparse.ArgumentTypeError: not a positive duration; argparse prints the message.
    """
    try:
        seconds = to_seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be longer than zero (e.g. {SECONDS_EXAMPLES})")
    return seconds
