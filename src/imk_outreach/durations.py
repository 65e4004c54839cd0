"""Durations as staff write them in config.yaml, campaign files and on the command line."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"(\d+)(w|d|h|m|s)")
_DURATION_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(text: str) -> timedelta:
    """``"30m"``, ``"1h30m"``, ``"7d"``, ``"2w"``, ``"90s"`` -> timedelta (any case, spaces ignored).

    :raises ValueError: not a duration.
    """
    compact = text.replace(" ", "").lower()
    parts = _DURATION.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"{text!r} is not a duration (use e.g. 30m, 2h, 7d, 1w)")
    delta = timedelta()
    for number, unit in parts:
        delta += timedelta(**{_DURATION_UNITS[unit]: int(number)})
    return delta
