"""Cron expressions as wall-clock times: checked minute by minute against a plain reading of cron."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from imk_outreach.campaigns import cron

EXPRESSIONS = [
    "0 9 1 * *",
    "*/15 * * * *",
    "0 9 * * mon-fri",
    "0 9 * * 1,3,5",
    "30 8-18/2 1-7 JAN,jul 0",
    "0 0 31 12 7",
    "5 4 29 2 *",
    "0 12 13 * fri",
]


def _field(text: str, value: int, low: int, high: int, names: tuple[str, ...] = ()) -> bool:
    for part in text.lower().split(","):
        body, _, step = part.partition("/")
        a, _, b = body.partition("-")

        def num(s: str) -> int:
            return names.index(s) + (1 if len(names) == 12 else 0) if s in names else int(s)

        first, last = (low, high) if body == "*" else (num(a), num(b) if b else (high if step else num(a)))
        if first <= value <= last and (value - first) % int(step or 1) == 0:
            return True
    return False


def matches(expression: str, moment: datetime) -> bool:
    """A plain reading of cron(5): day and weekday are ORed when both are restricted."""
    minute, hour, day, month, weekday = expression.split()
    months = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    days = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
    cron_weekday = (moment.weekday() + 1) % 7
    by_day = _field(day, moment.day, 1, 31)
    by_weekday = _field(weekday, cron_weekday, 0, 7, days) or (
        cron_weekday == 0 and _field(weekday, 7, 0, 7, days)
    )
    day_ok = (by_day and by_weekday) if "*" in (day, weekday) else (by_day or by_weekday)
    return (
        _field(minute, moment.minute, 0, 59)
        and _field(hour, moment.hour, 0, 23)
        and _field(month, moment.month, 1, 12, months)
        and day_ok
    )


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_next_instant_agrees_with_a_minute_by_minute_walk(expression: str) -> None:
    utc = ZoneInfo("UTC")
    parsed = cron.parse(expression)
    rng = random.Random(expression)
    for _ in range(3):
        start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(0, 3 * 365 * 24 * 60))
        found = cron.next_instant(parsed, utc, start)
        assert found is not None
        probe = start + timedelta(minutes=1) - timedelta(seconds=start.second, microseconds=start.microsecond)
        limit = start + timedelta(days=366 * 5)
        while probe < found:
            assert not matches(expression, probe), (expression, start, probe, found)
            probe += timedelta(minutes=1) if probe.hour in parsed.hours else timedelta(hours=1)
            probe = probe.replace(minute=0) if probe.hour not in parsed.hours else probe
        assert matches(expression, found) and found <= limit


def test_wall_times_map_to_one_instant_each_in_berlin() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # skipped (spring): the moment the clock jumps to 3:00
    assert cron.instant(datetime(2027, 3, 28, 2, 30), berlin) == datetime(2027, 3, 28, 1, 0, tzinfo=UTC)
    # twice (autumn): the first occurrence
    assert cron.instant(datetime(2026, 10, 25, 2, 30), berlin) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert cron.instant(datetime(2026, 12, 1, 9, 0), berlin) == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def test_an_impossible_date_has_no_next_time() -> None:
    assert (
        cron.next_instant(cron.parse("0 0 31 2 *"), ZoneInfo("UTC"), datetime(2026, 1, 1, tzinfo=UTC)) is None
    )
