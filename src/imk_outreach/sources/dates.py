"""Dates as sources write them: RFC 822, ISO 8601 / RFC 3339 and the German forms seen on scraped pages.

:func:`parse_date` never guesses: a string without a recognisable day, month and year (``gestern``,
``vor 3 Stunden``) gives ``None``. A date is searched for anywhere in the string, so leading and trailing
words (``Veröffentlicht am 3. November 2026``, ``Montag, 16. November 2026``) are tolerated.

Values without an offset are local time in the zone passed as ``tz`` (zoneinfo, so summer dates get
+02:00 and winter dates +01:00 in Europe/Berlin); a date without a time means midnight local time.
The result is always aware and in UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from email.utils import parsedate_to_datetime

_MONTHS: dict[str, int] = {
    "januar": 1, "jan": 1, "jänner": 1, "jän": 1, "january": 1,
    "februar": 2, "feb": 2, "feber": 2, "february": 2,
    "märz": 3, "maerz": 3, "mär": 3, "mrz": 3, "march": 3, "mar": 3,
    "april": 4, "apr": 4,
    "mai": 5, "may": 5,
    "juni": 6, "jun": 6, "june": 6,
    "juli": 7, "jul": 7, "july": 7,
    "august": 8, "aug": 8,
    "september": 9, "sept": 9, "sep": 9,
    "oktober": 10, "okt": 10, "october": 10, "oct": 10,
    "november": 11, "nov": 11,
    "dezember": 12, "dez": 12, "december": 12, "dec": 12,
}  # fmt: skip

_MONTH = r"(?P<month>{names})(?![^\W\d_])\.?".format(names="|".join(sorted(_MONTHS, key=len, reverse=True)))
# An optional time after the date: "14:30", ", 14:30 Uhr", "um 14.30 Uhr", "14 Uhr", "2:30 pm".
_TIME = (
    r"(?:[\s,]+(?:um\s+|at\s+|ab\s+|gegen\s+)?(?P<hour>\d{1,2})(?:[:.](?P<minute>\d{2}))?"
    r"(?::(?P<second>\d{2}))?\s*(?P<suffix>uhr|h|am|pm|a\.m\.|p\.m\.)?(?![\w:]))?"
)
_ISO = re.compile(
    r"(?<!\d)(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})"
    r"(?:[T ](?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d+))?)?"
    r"\s?(?P<offset>Z(?![^\W\d_])|[+-]\d{2}(?::?\d{2})?)?)?(?!\d)",
    re.IGNORECASE,
)
_RFC822 = re.compile(r"^\s*(?:[a-z]{3},?\s*)?\d{1,2}\s+[a-z]{3}\s+\d{2,4}\s+\d{1,2}:\d{2}", re.IGNORECASE)
_NUMERIC = re.compile(
    r"(?<![\d.])(?P<day>\d{1,2})\.\s?(?P<month>\d{1,2})\.\s?(?P<year>\d{4}|\d{2})(?!\d)" + _TIME,
    re.IGNORECASE,
)
_DAY_MONTH_YEAR = re.compile(
    r"(?<![\d.])(?P<day>\d{1,2})(?:\.|st|nd|rd|th)?\s*" + _MONTH + r"\s*,?\s*(?P<year>\d{4})(?!\d)" + _TIME,
    re.IGNORECASE,
)
_MONTH_DAY_YEAR = re.compile(
    r"(?<![^\W\d_])" + _MONTH + r"\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?\s*,?\s*(?P<year>\d{4})(?!\d)" + _TIME,
    re.IGNORECASE,
)


def parse_date(value: str, tz: tzinfo) -> datetime | None:
    """Parse a date as sources write it; the result is aware and in UTC.

    :param value: the text, e.g. ``Fri, 20 Nov 2026 14:30:00 +0100``, ``2026-11-20T14:30:00Z``,
        ``20.11.2026 14:30``, ``3. Nov. 2026``, ``Montag, 16. November 2026, 14:30 Uhr``,
        ``November 3, 2026``.
    :param tz: the zone of values without an offset (e.g. ``ZoneInfo("Europe/Berlin")``).
    :returns: the instant in UTC, or None when no complete, valid date is found.
    """
    text = " ".join(value.split())
    if not text:
        return None
    for parser in (_parse_iso, _parse_rfc822, _parse_numeric, _parse_named):
        try:
            found = parser(text, tz)
        except (ValueError, OverflowError):
            return None
        if found is not None:
            return found.astimezone(UTC)
    return None


def _parse_iso(text: str, tz: tzinfo) -> datetime | None:
    """ISO 8601 / RFC 3339: ``2026-11-20``, ``2026-11-20T14:30:00Z``, ``2026-11-20 14:30+01:00``."""
    m = _ISO.search(text)
    if m is None:
        return None
    fraction = (m["fraction"] or "0")[:6].ljust(6, "0")
    offset = _offset(m["offset"])
    return datetime(
        int(m["year"]),
        int(m["month"]),
        int(m["day"]),
        int(m["hour"] or 0),
        int(m["minute"] or 0),
        int(m["second"] or 0),
        int(fraction),
        tzinfo=offset if offset is not None else tz,
    )


def _offset(text: str | None) -> tzinfo | None:
    """``Z``, ``+02:00``, ``+0200`` or ``+02`` as a fixed offset; None when absent."""
    if not text:
        return None
    if text.upper() == "Z":
        return UTC
    digits = text[1:].replace(":", "")
    minutes = int(digits[:2]) * 60 + int(digits[2:4] or 0)
    return timezone(timedelta(minutes=-minutes if text[0] == "-" else minutes))


def _parse_rfc822(text: str, tz: tzinfo) -> datetime | None:
    """RFC 822 / 1123 as in RSS: ``Fri, 20 Nov 2026 14:30:00 +0100``; no or unknown zone means ``tz``."""
    if not _RFC822.match(text):
        return None
    try:
        found = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return found if found.tzinfo is not None else found.replace(tzinfo=tz)


def _parse_numeric(text: str, tz: tzinfo) -> datetime | None:
    """German numeric dates: ``20.11.2026``, ``20.11.26``, ``20.11.2026 14:30``."""
    m = _NUMERIC.search(text)
    if m is None:
        return None
    year = int(m["year"])
    if len(m["year"]) == 2:
        year += 2000 if year < 70 else 1900
    return _build(year, int(m["month"]), int(m["day"]), m, tz)


def _parse_named(text: str, tz: tzinfo) -> datetime | None:
    """Dates with a month name: ``3. November 2026``, ``12. Okt. 2026``, ``November 3, 2026``."""
    m = _DAY_MONTH_YEAR.search(text) or _MONTH_DAY_YEAR.search(text)
    if m is None:
        return None
    return _build(int(m["year"]), _MONTHS[m["month"].lower()], int(m["day"]), m, tz)


def _build(year: int, month: int, day: int, m: re.Match[str], tz: tzinfo) -> datetime:
    """The local datetime from a date and the optional time groups of ``_TIME``.

    A bare number after the date (no minutes, no ``Uhr``/``am``/``pm``) is not taken as a time.

    :raises ValueError: the day, month or time does not exist (31.02., 25:00).
    """
    hour, minute, second = 0, 0, 0
    suffix = (m["suffix"] or "").lower().replace(".", "")
    if m["hour"] is not None and (m["minute"] is not None or suffix):
        hour, minute, second = int(m["hour"]), int(m["minute"] or 0), int(m["second"] or 0)
        if suffix in ("am", "pm") and not 1 <= hour <= 12:
            raise ValueError(f"hour {hour} with {suffix}")
        if suffix == "pm" and hour != 12:
            hour += 12
        elif suffix == "am" and hour == 12:
            hour = 0
    return datetime(year, month, day, hour, minute, second, tzinfo=tz)
