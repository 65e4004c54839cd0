"""parse_date: RFC 822, ISO 8601 and the German and English forms found on scraped pages."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from imk_outreach.sources.dates import parse_date

BERLIN = ZoneInfo("Europe/Berlin")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # RFC 822 / 1123 (RSS)
        ("Fri, 20 Nov 2026 14:30:00 +0100", utc(2026, 11, 20, 13, 30)),
        ("Fri, 20 Nov 2026 14:30:00 GMT", utc(2026, 11, 20, 14, 30)),
        ("20 Nov 2026 14:30:00 -0500", utc(2026, 11, 20, 19, 30)),
        ("Mon, 20 Jul 2026 14:30:00", utc(2026, 7, 20, 12, 30)),  # no zone: Berlin summer time
        # ISO 8601 / RFC 3339
        ("2026-11-20T14:30:00Z", utc(2026, 11, 20, 14, 30)),
        ("2026-11-20T14:30:00.250+02:00", datetime(2026, 11, 20, 12, 30, 0, 250000, tzinfo=UTC)),
        ("2026-11-20T14:30:00+0530", utc(2026, 11, 20, 9, 0)),
        ("2026-11-20", utc(2026, 11, 19, 23, 0)),  # midnight Berlin (winter, +01:00)
        ("2026-07-20", utc(2026, 7, 19, 22, 0)),  # midnight Berlin (summer, +02:00)
        ("2026-11-20 14:30", utc(2026, 11, 20, 13, 30)),
        ("2026-11-20t14:30:00z", utc(2026, 11, 20, 14, 30)),
        # German numeric
        ("20.11.2026", utc(2026, 11, 19, 23, 0)),
        ("20.11.26", utc(2026, 11, 19, 23, 0)),
        ("20.11.2026 14:30", utc(2026, 11, 20, 13, 30)),
        ("1.7.2026, 9.15 Uhr", utc(2026, 7, 1, 7, 15)),
        ("20.07.2026 um 9 Uhr", utc(2026, 7, 20, 7, 0)),
        # German with month names
        ("3. November 2026", utc(2026, 11, 2, 23, 0)),
        ("3. Nov. 2026", utc(2026, 11, 2, 23, 0)),
        ("12. Okt. 2026", utc(2026, 10, 11, 22, 0)),
        ("Montag, 16. November 2026", utc(2026, 11, 15, 23, 0)),
        ("16. November 2026, 14:30 Uhr", utc(2026, 11, 16, 13, 30)),
        ("5. März 2026", utc(2026, 3, 4, 23, 0)),
        ("5. Maerz 2026", utc(2026, 3, 4, 23, 0)),
        ("5. Mär. 2026", utc(2026, 3, 4, 23, 0)),
        ("5. MÄRZ 2026", utc(2026, 3, 4, 23, 0)),
        ("8. Sept. 2026", utc(2026, 9, 7, 22, 0)),
        ("1. Mai 2026", utc(2026, 4, 30, 22, 0)),
        ("24. Dez. 2026", utc(2026, 12, 23, 23, 0)),
        # English
        ("November 3, 2026", utc(2026, 11, 2, 23, 0)),
        ("3 November 2026", utc(2026, 11, 2, 23, 0)),
        ("Oct. 12, 2026", utc(2026, 10, 11, 22, 0)),
        ("November 3rd, 2026 2:30 pm", utc(2026, 11, 3, 13, 30)),
        ("July 4, 2026 12:15 am", utc(2026, 7, 3, 22, 15)),
        # words around the date
        ("Veröffentlicht am 20.11.2026", utc(2026, 11, 19, 23, 0)),
        ("  Stand: 3. November 2026 (aktualisiert)  ", utc(2026, 11, 2, 23, 0)),
        ("Posted on November 3, 2026", utc(2026, 11, 2, 23, 0)),
    ],
)
def test_parse_date_formats(text: str, expected: datetime) -> None:
    assert parse_date(text, BERLIN) == expected


def test_result_is_aware_utc() -> None:
    parsed = parse_date("20.11.2026 14:30", BERLIN)
    assert parsed is not None
    assert parsed.tzinfo is UTC


def test_daylight_saving_time_decides_the_offset() -> None:
    summer = parse_date("15. Juli 2026, 12:00 Uhr", BERLIN)
    winter = parse_date("15. Januar 2026, 12:00 Uhr", BERLIN)
    assert summer == utc(2026, 7, 15, 10, 0)  # +02:00
    assert winter == utc(2026, 1, 15, 11, 0)  # +01:00


def test_the_day_after_the_switch_to_summer_time() -> None:
    # Berlin switches to CEST on 29 March 2026 at 02:00.
    assert parse_date("28.03.2026 12:00", BERLIN) == utc(2026, 3, 28, 11, 0)
    assert parse_date("29.03.2026 12:00", BERLIN) == utc(2026, 3, 29, 10, 0)


def test_naive_values_use_the_given_zone() -> None:
    assert parse_date("20.11.2026 14:30", ZoneInfo("America/New_York")) == utc(2026, 11, 20, 19, 30)
    assert parse_date("20.11.2026 14:30", UTC) == utc(2026, 11, 20, 14, 30)


def test_an_explicit_offset_wins_over_the_zone() -> None:
    assert parse_date("2026-11-20T14:30:00+00:00", BERLIN) == utc(2026, 11, 20, 14, 30)


def test_two_digit_years_before_1970_pivot() -> None:
    assert parse_date("20.11.98", BERLIN) == utc(1998, 11, 19, 23, 0)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "gestern",
        "heute, 14:30 Uhr",
        "vor 3 Stunden",
        "demnächst",
        "November 2026",  # no day
        "20.11.",  # no year
        "31.02.2026",  # no such day
        "30. Februar 2026",
        "2026-13-01",
        "20.11.2026 25:00",
        "3. Mainz 2026",  # a word that starts like a month
        "Version 1.2.3",
    ],
)
def test_unparseable_gives_none(text: str) -> None:
    assert parse_date(text, BERLIN) is None


def test_a_trailing_number_is_not_taken_for_a_time() -> None:
    assert parse_date("20.11.2026 5 Plätze frei", BERLIN) == utc(2026, 11, 19, 23, 0)


def test_iso_date_followed_by_a_word_starting_with_z_is_not_utc() -> None:
    assert parse_date("2026-11-20 Zoom-Meeting", BERLIN) == utc(2026, 11, 19, 23, 0)
