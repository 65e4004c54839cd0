"""Copies of the sample sources for the demo tour, every date moved so the newest is yesterday.

The samples carry fixed dates and the campaigns select by age (``since: 7d``), so later the tour would
find nothing to send. The demo reads copies with all dates moved by one whole number of days: spacing,
times of day and offsets stay as written, and each date keeps its format (RFC 822 in RSS, ISO 8601 in
Atom, JSON Feed and YAML, German forms on the HTML page). Only :func:`copy_sources` does I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path

from imk_outreach.config import SourceSettings

_EN_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_EN_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DE_DAYS = ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag")
_DE_MONTHS = ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September",
              "Oktober", "November", "Dezember")  # fmt: skip
_DE_SHORT = ("Jan.", "Feb.", "März", "Apr.", "Mai", "Juni", "Juli", "Aug.", "Sept.", "Okt.", "Nov.", "Dez.")
_DE_STEMS = {name.rstrip(".").lower(): n for n, name in enumerate(_DE_SHORT, 1)} | {"sep": 9, "mär": 3}
_DE_FULL = {name.lower(): n for n, name in enumerate(_DE_MONTHS, 1)}
_DE_NAMES = _DE_FULL | _DE_STEMS


def _alternatives(names: Sequence[str]) -> str:
    return "|".join(sorted(names, key=len, reverse=True))  # the longest first: "November" before "Nov"


@dataclass(frozen=True)
class DateForm:
    """One way of writing a date: where it is in a value, how to read it, how to write a new one."""

    pattern: re.Pattern[str]
    read: Callable[[re.Match[str]], date]
    write: Callable[[re.Match[str], date], str]


def _pad(like: str, number: int) -> str:
    """``number`` with as many digits as ``like`` had (``05`` stays two digits, ``3`` one)."""
    return str(number).zfill(len(like))


def _write_rfc822(m: re.Match[str], day: date) -> str:
    weekday = f"{_EN_DAYS[day.weekday()]}{m['sep']}" if m["weekday"] else ""
    return f"{weekday}{_pad(m['day'], day.day)} {_EN_MONTHS[day.month - 1]} {day.year}"


def _write_numeric(m: re.Match[str], day: date) -> str:
    year = str(day.year)[-len(m["year"]) :]
    return f"{_pad(m['day'], day.day)}.{_pad(m['month'], day.month)}.{year}"


def _write_named(m: re.Match[str], day: date) -> str:
    weekday = f"{_DE_DAYS[day.weekday()]}{m['sep']}" if m["weekday"] else ""
    full = m["month"].lower() in _DE_FULL and not m["dot"]
    month = (_DE_MONTHS if full else _DE_SHORT)[day.month - 1]
    padded = m["day"].startswith("0")  # "3. November", "16. November"; "03. November" stays padded
    return f"{weekday}{_pad(m['day'] if padded else '0', day.day)}.{m['gap']}{month} {day.year}"


ISO = DateForm(
    re.compile(r"(?<!\d)(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})(?!\d)"),
    lambda m: date(int(m["year"]), int(m["month"]), int(m["day"])),
    lambda m, day: day.isoformat(),
)
RFC822 = DateForm(
    re.compile(
        rf"(?:(?P<weekday>{_alternatives(_EN_DAYS)})(?P<sep>,\s*))?(?P<day>\d{{1,2}})\s+"
        rf"(?P<month>{_alternatives(_EN_MONTHS)})\s+(?P<year>\d{{4}})"
    ),
    lambda m: date(int(m["year"]), _EN_MONTHS.index(m["month"]) + 1, int(m["day"])),
    _write_rfc822,
)
GERMAN_NUMERIC = DateForm(
    re.compile(r"(?<![\d.])(?P<day>\d{1,2})\.(?P<month>\d{1,2})\.(?P<year>\d{4}|\d{2})(?!\d)"),
    lambda m: date(int(m["year"]) + (2000 if len(m["year"]) == 2 else 0), int(m["month"]), int(m["day"])),
    _write_numeric,
)
GERMAN_NAMED = DateForm(
    re.compile(
        rf"(?:(?P<weekday>{_alternatives(_DE_DAYS)})(?P<sep>,\s*))?(?<!\d)(?P<day>\d{{1,2}})\.(?P<gap>\s*)"
        rf"(?P<month>{_alternatives(list(_DE_NAMES))})(?P<dot>\.)?\s+(?P<year>\d{{4}})",
        re.IGNORECASE,
    ),
    lambda m: date(int(m["year"]), _DE_NAMES[m["month"].lower()], int(m["day"])),
    _write_named,
)


@dataclass(frozen=True)
class SampleKind:
    """Where a file type writes its dates (the group ``value`` of ``field``) and in which forms."""

    field: re.Pattern[str]
    forms: tuple[DateForm, ...]


_KINDS = {
    ".xml": SampleKind(re.compile(r"<(pubDate|lastBuildDate)>(?P<value>[^<]*)<"), (RFC822,)),
    ".atom": SampleKind(re.compile(r"<(published|updated)>(?P<value>[^<]*)<"), (ISO,)),
    ".json": SampleKind(re.compile(r'"date_(published|modified)"\s*:\s*"(?P<value>[^"]*)"'), (ISO,)),
    ".html": SampleKind(
        re.compile(r'class="date"[^>]*>(?P<value>[^<]*)<|datetime="(?P<value2>[^"]*)"'),
        (ISO, GERMAN_NUMERIC, GERMAN_NAMED),
    ),
    ".yaml": SampleKind(re.compile(r"^[ \t-]*published:(?P<value>.*)$", re.MULTILINE), (ISO,)),
}
_KINDS |= {".rss": _KINDS[".xml"], ".htm": _KINDS[".html"], ".yml": _KINDS[".yaml"]}


def _values(kind: SampleKind, text: str) -> Iterator[tuple[int, int]]:
    """Start and end of each value in ``text`` that may hold a date."""
    for m in kind.field.finditer(text):
        yield m.span("value" if m["value"] is not None else "value2")


def _first(kind: SampleKind, value: str) -> tuple[DateForm, re.Match[str]] | None:
    found = ((form, form.pattern.search(value)) for form in kind.forms)
    return next(((form, m) for form, m in found if m is not None), None)


def dates_in(suffix: str, text: str) -> list[date]:
    """The dates a sample file of this type (``.xml``, ``.atom``, ...) writes; [] for other types."""
    kind = _KINDS.get(suffix.lower())
    if kind is None:
        return []
    found = [_first(kind, text[start:end]) for start, end in _values(kind, text)]
    return [form.read(m) for form, m in filter(None, found)]


def shift_text(suffix: str, text: str, days: int) -> str:
    """``text`` with every date moved by ``days``, each written in its own format again."""
    kind = _KINDS.get(suffix.lower())
    if kind is None or days == 0:
        return text
    parts, last = [], 0
    for start, end in _values(kind, text):
        value, match = text[start:end], _first(kind, text[start:end])
        if match is not None:
            form, m = match
            value = value[: m.start()] + form.write(m, form.read(m) + timedelta(days=days)) + value[m.end() :]
        parts += [text[last:start], value]
        last = end
    return "".join([*parts, text[last:]])


def shift_days(newest: date, now: datetime, tz: tzinfo) -> int:
    """The whole days that move ``newest`` to the day before ``now`` (in the zone ``tz``)."""
    yesterday = now.astimezone(tz).date() - timedelta(days=1)
    return (yesterday - newest).days


# -- the copies (the only I/O here) ----------------------------------------------------------------


_REMOTE = ("http://", "https://")
PICTURES = "pictures"  # under the target folder
_PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp")
# Image addresses on the samples' made-up sites (*.example, which never resolves): the demo draws a
# picture for each and serves it from 127.0.0.1 while it gathers, so the tour shows images fetched,
# resized and served from public_url, offline.
_EXAMPLE_PICTURE = re.compile(
    r"https?://[a-z0-9.-]+\.example/[^\s\"'<>]+?\.(?:jpg|jpeg|png)"  # on a made-up site
    r"|(?<=[\"'])/[^\s\"'<>]+?\.(?:jpg|jpeg|png)(?=[\"'])",  # site-relative, in quotes
    re.IGNORECASE,
)


def _local_pictures(text: str, pictures: Path, base_url: str) -> str:
    """``text`` with every made-up image address replaced by ``base_url`` + the name of a picture drawn
    for it under ``pictures``."""

    def replace(match: re.Match[str]) -> str:
        url = match.group(0)
        digest = hashlib.sha256(url.encode()).hexdigest()[:12]
        picture = pictures / f"{digest}.jpg"
        if not picture.exists():
            _draw_picture(picture, url.rsplit("/", 1)[-1].rsplit(".", 1)[0], digest)
        return base_url.rstrip("/") + "/" + picture.name

    return _EXAMPLE_PICTURE.sub(replace, text)


def _draw_picture(path: Path, label: str, digest: str) -> None:
    from PIL import Image, ImageDraw  # only the demo draws

    hue = int(digest[:2], 16) / 255
    red, green, blue = (int(255 * (0.35 + 0.4 * abs(((hue * 6 + k) % 6) - 3) / 3)) for k in (0, 2, 4))
    image = Image.new("RGB", (800, 450), (red, green, blue))
    draw = ImageDraw.Draw(image)
    for step in range(0, 800, 40):  # a simple pattern, so resizing has something to do
        draw.line(
            [(step, 0), (step + 300, 450)], fill=(min(red + 30, 255), min(green + 30, 255), blue), width=6
        )
    draw.rectangle([(0, 370), (800, 450)], fill=(18, 53, 91))
    draw.text((24, 395), label.replace("-", " "), fill=(255, 255, 255), font_size=36)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=85)


def _decode(data: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8, else ISO-8859-1 (the Atom sample), so the bytes round-trip unchanged."""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def _copy_of(path: Path, base_dir: Path, target: Path) -> Path:
    """Where a source's copy goes: its place relative to the config's folder, else its name."""
    try:
        return target / path.relative_to(base_dir.resolve())
    except ValueError:
        return target / path.name


def _plan(sources: Sequence[Path], base_dir: Path, target: Path) -> dict[Path, Path]:
    """Each file to copy (a folder source: every file in it) and the path of its copy."""
    plan: dict[Path, Path] = {}
    for path in sources:
        copy = _copy_of(path, base_dir, target)
        if path.is_dir():
            plan |= {f: copy / f.name for f in sorted(path.iterdir()) if f.is_file()}
        else:
            plan[path] = copy
    return plan


def copy_sources(
    sources: Sequence[SourceSettings],
    base_dir: Path,
    target: Path,
    now: datetime,
    tz: tzinfo,
    pictures_url: str | None = None,
) -> tuple[tuple[SourceSettings, ...], int]:
    """Copy the local files of ``sources`` under ``target``, all dates shifted by one offset.

    :param base_dir: the config's folder; relative source paths are relative to it, and the copies keep
        that layout under ``target`` (``samples/feeds/x.xml`` -> ``target/samples/feeds/x.xml``).
        Sources with http(s) URLs, and paths that do not exist (gather reports them), stay as they are.
    :param pictures_url: where ``target/pictures`` is served; image addresses on the samples' made-up
        sites then point there, each at a picture drawn for it.
    :returns: the sources pointing at the copies (absolute paths), and the days the dates moved.
    :raises OSError: a sample file cannot be read or a copy cannot be written.
    """
    paths = {s.name: (base_dir / s.url).resolve() for s in sources if not s.url.startswith(_REMOTE)}
    local = {name: path for name, path in paths.items() if path.exists()}  # gather reports the others
    plan = _plan(list(local.values()), base_dir, target)
    texts = {path: _decode(path.read_bytes()) for path in plan}
    found = [d for path, (text, _) in texts.items() for d in dates_in(path.suffix, text)]
    days = shift_days(max(found), now, tz) if found else 0
    pictures = target / PICTURES
    for path, (text, encoding) in texts.items():
        plan[path].parent.mkdir(parents=True, exist_ok=True)
        text = shift_text(path.suffix, text, days)
        if path.suffix.lower() not in _PICTURE_SUFFIXES:
            text = _local_pictures(text, pictures, pictures_url) if pictures_url else text
        plan[path].write_bytes(text.encode(encoding))
    urls = {name: str(_copy_of(path, base_dir, target)) for name, path in local.items()}
    return tuple(s.model_copy(update={"url": urls[s.name]}) if s.name in urls else s for s in sources), days
