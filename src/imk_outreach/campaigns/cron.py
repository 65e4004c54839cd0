"""Cron times as wall-clock times in a time zone, each mapped to exactly one instant (pure).

A five-field expression (minute hour day month weekday, as :func:`cron_syntax.check_cron` accepts it) names
wall-clock times. Each becomes one UTC instant:

- a time that exists once is that instant;
- a time that exists twice (clocks go back, 3:00 -> 2:00) is its first occurrence;
- a time that does not exist (clocks jump, 2:00 -> 3:00) is the moment the clock skips it (3:00).

So a 9:00 campaign stays at 9:00 across both daylight-saving changes, and a time that does not exist or
exists twice that night runs once. (APScheduler 3's CronTrigger fires a repeated time twice and can loop
forever when asked for the next time inside the repeated hour, so the scheduler uses this instead.)
Day and weekday follow cron: when both are restricted, a day matching either one is taken.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_NEAR = timedelta(hours=3)
_SEARCH_DAYS = 366 * 8  # 29 February falls on a Monday at least once in 28 years; 8 covers leap years


@dataclass(frozen=True)
class Cron:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Monday (Python's weekday())
    any_day: bool
    any_weekday: bool

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        by_day, by_weekday = day.day in self.days, day.weekday() in self.weekdays
        if self.any_day or self.any_weekday:
            return by_day and by_weekday
        return by_day or by_weekday


def parse(expression: str) -> Cron:
    """:raises ValueError: not five fields, or a field it cannot read (the loader names the fault)."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"{expression!r}: a cron expression has 5 fields")
    minute, hour, day, month, weekday = fields
    cron_days = _values(weekday, 0, 7, _DAYS)
    return Cron(
        minutes=tuple(sorted(_values(minute, 0, 59))),
        hours=tuple(sorted(_values(hour, 0, 23))),
        days=frozenset(_values(day, 1, 31)),
        months=frozenset(_values(month, 1, 12, _MONTHS, offset=1)),
        weekdays=frozenset((d - 1) % 7 for d in cron_days),  # cron 0/7 = Sunday -> 6; 1 = Monday -> 0
        any_day=day == "*",
        any_weekday=weekday == "*",
    )


def _values(field: str, low: int, high: int, names: tuple[str, ...] = (), offset: int = 0) -> set[int]:
    found: set[int] = set()
    for item in field.split(","):
        body, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            start, end = low, high
        else:
            first, _, last = body.partition("-")
            start = _value(first, names, offset)
            end = _value(last, names, offset) if last else (high if step_text else start)
        found.update(range(start, end + 1, step))
    return found


def _value(text: str, names: tuple[str, ...], offset: int) -> int:
    lowered = text.lower()
    return names.index(lowered) + offset if lowered in names else int(text)


def next_wall_time(cron: Cron, after: datetime) -> datetime | None:
    """The first wall-clock time (naive) strictly after the naive ``after`` that ``cron`` names."""
    day = after.date()
    for offset in range(_SEARCH_DAYS):
        if cron.day_matches(day):
            found = _first_on(cron, day, after.time() if offset == 0 else None)
            if found is not None:
                return found
        day += timedelta(days=1)
    return None


def _first_on(cron: Cron, day: date, after: time | None) -> datetime | None:
    """The first time of ``day`` that cron names, later than ``after`` (None: any time of the day)."""
    for hour in cron.hours[bisect_left(cron.hours, after.hour) :] if after else cron.hours:
        minutes = cron.minutes
        if after is not None and hour == after.hour:
            minutes = minutes[bisect_right(minutes, after.minute) :]
        if minutes:
            return datetime.combine(day, time(hour, minutes[0]))
    return None


def instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The one UTC instant of a naive wall-clock time in ``tz`` (see the module docstring)."""
    aware = wall.replace(tzinfo=tz, fold=0)
    as_utc = aware.astimezone(UTC)
    if as_utc.astimezone(tz).replace(tzinfo=None) == wall:
        return as_utc
    # Skipped by the clock: the moment it jumps is the first existing wall minute after ``wall``.
    probe = wall
    for _ in range(24 * 60):
        probe += timedelta(minutes=1)
        aware = probe.replace(tzinfo=tz, fold=0).astimezone(UTC)
        if aware.astimezone(tz).replace(tzinfo=None) == probe:
            return aware
    return as_utc  # a gap longer than a day does not occur in tz data


def next_instant(cron: Cron, tz: ZoneInfo, after: datetime) -> datetime | None:
    """The first fire instant strictly after the aware ``after``."""
    wall = after.astimezone(tz).replace(tzinfo=None, fold=0)
    if (after - _NEAR).astimezone(tz).utcoffset() != (after + _NEAR).astimezone(tz).utcoffset():
        # Near a change a wall time earlier than after's own can still map to an instant after it
        # (the skipped 2:30 maps to 3:00; the first 2:30 precedes the second): look from a little before.
        wall -= _NEAR
    for _ in range(10_000):
        found = next_wall_time(cron, wall)
        if found is None:
            return None
        moment = instant(found, tz)
        if moment > after:
            return moment
        wall = found
    return None
