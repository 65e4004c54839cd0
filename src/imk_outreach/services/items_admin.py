"""Items for staff: search what was gathered, exclude an item from editions (and take it back), and add
a manual item with German and English text.

Decisions:

* Excluding sets ``items.excluded_at``/``excluded_by``; compose leaves excluded items out of every new
  or refreshed draft (``compose.selection_now``). An approved or queued edition keeps what it froze.
* A manual item is written as one YAML file into the folder a ``type: manual`` source reads (the
  format of :mod:`imk_outreach.sources.manual`), then that source is gathered at once, so the item is
  in the database now and every later gather keeps it, because the file stays. The file is named after
  the date and the title (``2026-11-20-drehstart-in-babelsberg.yaml``); an existing file is never
  overwritten (``-2``, ``-3``, ... is added). A URL that is stored already, or written in another file of
  the folder, is refused. If the gather fails, the file is removed again and nothing is added.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import yaml

from imk_outreach.config import Settings, SourceSettings
from imk_outreach.db import items_admin as items_db
from imk_outreach.db import store
from imk_outreach.db.items_admin import ItemQuery, ItemRow
from imk_outreach.errors import ImkError
from imk_outreach.models import NewsItem
from imk_outreach.services import ingest
from imk_outreach.services.database import engine_for
from imk_outreach.sources.fetch import MANUAL_SUFFIXES
from imk_outreach.sources.manual import read_file
from imk_outreach.sources.normalize import absolute_url, canonical_url, item_id

__all__ = [
    "ItemRow",
    "ManualItemError",
    "UnknownItemError",
    "add_manual_item",
    "day_range",
    "exclude_item",
    "include_item",
    "manual_sources",
    "parse_tags",
    "search_items",
]

log = logging.getLogger(__name__)

MAX_TITLE = 300
MAX_SUMMARY = 20_000
MAX_PAGE = 500
_TAG = re.compile(r"^[^\W_][\w.-]*$")
_TRANSLITERATE = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})
_SLUG_LENGTH = 60


class UnknownItemError(ImkError):
    def __init__(self, item_id: str) -> None:
        self.item_id = item_id
        super().__init__(f"no stored item with id {item_id!r}")


class ManualItemError(ImkError):
    """A manual item cannot be added. ``field``: ``source``, ``url``, ``title.de``, ``summary.en``,
    ``tags``, ``published``, ``image`` (the form field to fix), or ``item`` for the whole item."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


# -- search and exclusion --------------------------------------------------------------------------


def search_items(
    settings: Settings,
    *,
    text: str | None = None,
    source: str | None = None,
    tag: str | None = None,
    language: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    include_excluded: bool = True,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[ItemRow], int]:
    """One page of the stored items that match, newest first, and how many match in all.

    :param text: a part of the title, summary, URL or a translation (case ignored).
    :param source: the source that brought an item, or any other that had it too.
    :param tag: one tag (compared in lower case, as tags are stored).
    :param language: the item's own language.
    :param since: published at or after; ``until``: published before (see :func:`day_range`).
    :param include_excluded: False leaves items excluded from editions out.
    """
    query = ItemQuery(
        text=(text or "").strip() or None,
        source=(source or "").strip() or None,
        tag=(tag or "").strip().lower() or None,
        language=(language or "").strip().lower() or None,
        since=since,
        until=until,
        include_excluded=include_excluded,
    )
    limit = max(1, min(limit, MAX_PAGE))
    with engine_for(settings).connect() as conn:
        return items_db.search_items(conn, query, limit, max(0, offset))


def day_range(
    settings: Settings, first: date | None, last: date | None
) -> tuple[datetime | None, datetime | None]:
    """``since``/``until`` for the days ``first`` to ``last`` (both included) in the configured zone."""
    since = datetime.combine(first, time(), settings.tz).astimezone(UTC) if first else None
    until = datetime.combine(last + timedelta(days=1), time(), settings.tz).astimezone(UTC) if last else None
    return since, until


def exclude_item(settings: Settings, item_id: str, by: str, now: datetime | None = None) -> ItemRow:
    """Leave the item out of every edition composed from now on (recording who and when).

    :raises UnknownItemError: no such item.
    """
    now = now or datetime.now(UTC)
    return _set_excluded(settings, item_id, now, by)


def include_item(settings: Settings, item_id: str, by: str) -> ItemRow:
    """Take an excluded item back into editions (``by`` is logged).

    :raises UnknownItemError: no such item.
    """
    return _set_excluded(settings, item_id, None, by)


def _set_excluded(settings: Settings, item_id: str, at: datetime | None, by: str) -> ItemRow:
    with engine_for(settings).begin() as conn:
        if not items_db.set_excluded(conn, item_id, at, by if at is not None else None):
            raise UnknownItemError(item_id)
        row = items_db.get_item_row(conn, item_id)
    assert row is not None
    log.info("item %s %s by %s", item_id, "excluded from editions" if at else "included again", by)
    return row


# -- manual items ----------------------------------------------------------------------------------


def manual_sources(settings: Settings) -> list[SourceSettings]:
    """The configured ``type: manual`` sources that read a folder (items can be added to these)."""
    return [s for s in settings.sources if s.type == "manual" and _folder_of(settings, s) is not None]


def _folder_of(settings: Settings, source: SourceSettings) -> Path | None:
    """The folder the source reads; None when it reads a single file."""
    path = Path(settings.source_location(source))
    if path.is_dir() or (not path.exists() and path.suffix.lower() not in MANUAL_SUFFIXES):
        return path
    return None


def parse_tags(text: str) -> list[str]:
    """Tags as typed into a form: separated by commas (``film, ki``); blank ones left out."""
    return [part.strip() for part in re.split(r"[,;]", text) if part.strip()]


@dataclass(frozen=True)
class _Checked:
    url: str
    titles: dict[str, str]
    summaries: dict[str, str]
    tags: list[str]
    published: str | None
    image: str | None


def add_manual_item(
    settings: Settings,
    source_name: str,
    *,
    url: str,
    title: Mapping[str, str],
    summary: Mapping[str, str],
    tags: Sequence[str] = (),
    published: date | datetime | str | None = None,
    image: str | None = None,
    now: datetime | None = None,
    by: str | None = None,
) -> NewsItem:
    """Write the item into the folder of the manual source ``source_name`` and gather that source now.

    :param title: language -> title; every configured language is required.
    :param summary: language -> Markdown text (optional per language).
    :param published: a date (midnight local time), a datetime, ISO text (``2026-11-20``,
        ``2026-11-20T14:30``), or None (dated when gathered).
    :param image: an http(s) URL of an image, or None.
    :param by: the staff member adding it (written in a comment of the file).
    :returns: the item as stored.
    :raises ManualItemError: a field is not acceptable (``field`` names it), the URL is known already,
        or gathering the source failed (then nothing was added).
    """
    now = now or datetime.now(UTC)
    source = _manual_source(settings, source_name)
    folder = _folder_of(settings, source)
    if folder is None:
        raise ManualItemError(
            "source",
            f"{source.name} reads the single file {settings.source_location(source)}; items can be added "
            "only to a manual source that reads a folder (its url: a folder)",
        )
    language = settings.source_language(source)
    checked = _check(settings, url, title, summary, tags, published, image)
    canonical = canonical_url(checked.url)
    assert canonical is not None  # _check made sure
    new_id = item_id(canonical)
    _refuse_known(settings, folder, language, canonical, new_id)
    text = _yaml_text(checked, by, now)
    _validate(text, language)
    path = _write_new(folder, _file_stem(checked, language, now), text)
    log.info("manual item %s written to %s", checked.url, path)
    return _gathered(settings, source.name, path, new_id, now)


def _manual_source(settings: Settings, name: str) -> SourceSettings:
    for source in settings.sources:
        if source.name == name:
            if source.type != "manual":
                raise ManualItemError("source", f"{name} is a {source.type} source; choose a manual source")
            return source
    known = ", ".join(s.name for s in settings.sources if s.type == "manual") or "none in config.yaml"
    raise ManualItemError("source", f"no source named {name!r} (manual sources: {known})")


def _check(
    settings: Settings,
    url: str,
    title: Mapping[str, str],
    summary: Mapping[str, str],
    tags: Sequence[str],
    published: date | datetime | str | None,
    image: str | None,
) -> _Checked:
    url = url.strip()
    if not url:
        raise ManualItemError("url", "required")
    if canonical_url(url) is None:
        raise ManualItemError(
            "url", f"not an http(s) web address: {url!r} (write e.g. https://example.org/news)"
        )
    titles = _texts(settings, "title", title, MAX_TITLE, required=True)
    summaries = _texts(settings, "summary", summary, MAX_SUMMARY, required=False)
    image = (image or "").strip() or None
    if image is not None and absolute_url(image) is None:
        raise ManualItemError("image", f"not an http(s) web address of an image: {image!r}")
    return _Checked(url, titles, summaries, _tags(tags), _published(published), image)


def _texts(
    settings: Settings, key: str, given: Mapping[str, str], longest: int, required: bool
) -> dict[str, str]:
    unknown = sorted(set(given) - set(settings.languages))
    if unknown:
        raise ManualItemError(
            key, f"unknown language {unknown[0]!r} (languages: {', '.join(settings.languages)})"
        )
    texts: dict[str, str] = {}
    for language in settings.languages:
        value = (
            " ".join(given.get(language, "").split()) if key == "title" else given.get(language, "").strip()
        )
        if not value:
            if required:
                raise ManualItemError(f"{key}.{language}", "required (write it in this language)")
            continue
        if len(value) > longest:
            raise ManualItemError(f"{key}.{language}", f"longer than {longest} characters ({len(value)})")
        texts[language] = value.replace("\r\n", "\n")
    return texts


def _tags(given: Sequence[str]) -> list[str]:
    tags: list[str] = []
    for raw in given:
        tag = "-".join(raw.lower().split())
        if not tag:
            continue
        if len(tag) > 100 or not _TAG.match(tag):
            raise ManualItemError(
                "tags",
                f"{raw!r} is not a tag: use letters, digits, '-', '_' or '.', starting with a letter or "
                "digit (e.g. film, ki, games-xr)",
            )
        if tag not in tags:
            tags.append(tag)
    return tags


def _published(value: date | datetime | str | None) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat(timespec="minutes")
    if isinstance(value, date):
        return value.isoformat()
    text = (value or "").strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ManualItemError(
            "published", f"not a date: {text!r} (write e.g. 2026-11-20 or 2026-11-20T14:30)"
        ) from None
    if len(text) <= len("2026-11-20"):
        return moment.date().isoformat()
    return moment.isoformat(timespec="minutes")


def _refuse_known(settings: Settings, folder: Path, language: str, canonical: str, new_id: str) -> None:
    with engine_for(settings).connect() as conn:
        known = items_db.item_for_url(conn, new_id, canonical)
    if known is not None:
        raise ManualItemError(
            "url", f"an item with this address is stored already ({known.source}: {known.title!r})"
        )
    for path in sorted(folder.glob("*")) if folder.is_dir() else ():
        if path.suffix.lower() not in MANUAL_SUFFIXES or not path.is_file():
            continue
        entries, _problems, _ok = read_file(path.name, path.read_bytes(), language)
        if any(entry.link and canonical_url(entry.link) == canonical for entry in entries):
            raise ManualItemError("url", f"this address is written in {path.name} already")


def _yaml_text(checked: _Checked, by: str | None, now: datetime) -> str:
    entry: dict[str, object] = {"url": checked.url}
    if checked.published is not None:
        entry["published"] = checked.published
    if checked.tags:
        entry["tags"] = checked.tags
    if checked.image is not None:
        entry["image"] = checked.image
    entry["title"] = checked.titles
    if checked.summaries:
        entry["summary"] = checked.summaries
    who = f" by {' '.join(by.split())}" if by else ""
    head = f"# Added in the staff web app{who} on {now.astimezone(UTC).isoformat(timespec='minutes')}.\n"
    body = yaml.safe_dump([entry], allow_unicode=True, sort_keys=False, width=100, default_flow_style=False)
    return head + body


def _validate(text: str, language: str) -> None:
    """The manual source must read the file as written (a safeguard: the fields were checked)."""
    entries, problems, _ok = read_file("new item", text.encode("utf-8"), language)
    if problems or len(entries) != 1:
        raise ManualItemError("item", "; ".join(problems) or "the item could not be written")


def _file_stem(checked: _Checked, language: str, now: datetime) -> str:
    title = checked.titles.get(language) or next(iter(checked.titles.values()))
    day = (checked.published or now.date().isoformat())[:10]
    return f"{day}-{slug(title)}"


def slug(text: str) -> str:
    """``Drehstart in Babelsberg!`` -> ``drehstart-in-babelsberg`` (ASCII; ``item`` when nothing is left)."""
    ascii_text = unicodedata.normalize("NFKD", text.lower().translate(_TRANSLITERATE))
    ascii_text = ascii_text.encode("ascii", "ignore").decode()
    words = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")
    return words[:_SLUG_LENGTH].rstrip("-") or "item"


def _write_new(folder: Path, stem: str, text: str) -> Path:
    """Write ``text`` to a new file ``stem.yaml`` (``stem-2.yaml``, ... when taken); never overwrites.

    The text goes to a temporary file first, which is then linked to its name, so a gather running at
    the same time never reads half a file, and an existing file is never replaced (link fails then).
    """
    temporary = folder / f".{stem}.{secrets.token_hex(4)}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        temporary.write_text(text, encoding="utf-8")
    except OSError as exc:  # read-only folder, disk full: say where, for the operator
        reason = exc.strerror or type(exc).__name__
        raise ManualItemError(
            "source",
            f"the folder {folder} cannot be written ({reason}); ask the operator to make it writable",
        ) from None
    try:
        for number in range(1, 1000):
            path = folder / (f"{stem}.yaml" if number == 1 else f"{stem}-{number}.yaml")
            try:
                os.link(temporary, path)
            except FileExistsError:
                continue
            return path
    finally:
        temporary.unlink(missing_ok=True)
    raise ManualItemError("item", f"too many files named {stem}-*.yaml in {folder}")


def _gathered(settings: Settings, source: str, path: Path, new_id: str, now: datetime) -> NewsItem:
    report = ingest.gather(settings, [source], now=now).reports[0]
    with engine_for(settings).connect() as conn:
        item = store.get_items(conn, [new_id]).get(new_id)
    if report.status == "error" or item is None:
        path.unlink(missing_ok=True)
        reason = report.error or report.warning or "the item was not stored"
        raise ManualItemError("item", f"gathering {source} failed ({reason}); nothing was added")
    return item
