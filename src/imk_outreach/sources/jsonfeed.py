"""The ``jsonfeed`` adapter: JSON Feed 1.0 and 1.1 (https://www.jsonfeed.org/version/1.1/).

Nothing is normalised here: URLs stay as found (``home_page_url`` is the base for relative ones; an
unusable one makes normalisation skip that item with a warning), HTML stays unsanitised, and a date that
is not RFC 3339 with a time zone stays a string.

JSON Feed titles are plain text, but feeds often write entities (``&#8217;``) into them; as for RSS
(rss_entry.py) a title that looks like HTML is read as HTML, any other is handed on escaped, so
``Using the <canvas> element`` keeps its word. A JSON string can hold a lone surrogate, which is no text
(and which the HTML sanitiser and the database refuse); in text fields it becomes U+FFFD.
"""

from __future__ import annotations

import codecs
import html as html_text
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from imk_outreach.errors import SourceError
from imk_outreach.models import Document, ParseResult, RawEntry, SourceSpec
from imk_outreach.sources.base import charset_of
from imk_outreach.sources.rss_entry import looks_like_html
from imk_outreach.sources.urls import is_reference

logger = logging.getLogger(__name__)

NOT_A_JSON_FEED = "not a JSON Feed"
_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonFeedError(Exception):
    """The document is no JSON Feed we can read; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class JsonFeedSource:
    """Reads JSON Feed 1.0 and 1.1 documents."""

    def parse(self, doc: Document, spec: SourceSpec) -> ParseResult:
        """Read the items of one fetched JSON Feed.

        :param doc: the fetched bytes; a ``charset`` in ``content_type`` is honoured (default UTF-8).
        :param spec: the configured source (only its name is used, for errors and logs).
        :returns: the items with a URL, and a warning counting the items skipped.
        :raises SourceError: the bytes are not valid JSON in their charset, or the JSON is no JSON Feed.
        """
        try:
            result = parse_json_feed(doc.body, doc.content_type)
        except JsonFeedError as exc:
            raise SourceError(spec.name, doc.base_url, exc.reason) from exc
        logger.debug("source %s: read %d JSON Feed items", spec.name, len(result.entries))
        return result


def parse_json_feed(body: bytes, content_type: str | None = None) -> ParseResult:
    """Read a JSON Feed; items that are no object or have no URL are skipped with one warning.

    :param body: the document bytes.
    :param content_type: the HTTP Content-Type; its ``charset`` decides the decoding (default UTF-8,
        a byte order mark is tolerated).
    :raises JsonFeedError: undecodable bytes, invalid JSON (with line and column), or no JSON Feed.
    """
    feed = _feed_object(_load(_decode(body, content_type)))
    items = feed["items"]
    language = _text(feed.get("language"))
    entries, skipped = _entries(items, language)
    warnings = (
        (f"skipped {skipped.total} of {len(items)} items ({skipped.describe()})",) if skipped.total else ()
    )
    return ParseResult(
        entries=entries,
        warnings=warnings,
        base_url=_base(feed),
    )


def _base(feed: Mapping[str, Any]) -> str | None:
    """``home_page_url``, else ``feed_url``: the first that is a well-formed URL (a broken one is no base)."""
    for key in ("home_page_url", "feed_url"):
        url = _string(feed.get(key))
        if url and is_reference(url):
            return url
    return None


def _decode(body: bytes, content_type: str | None) -> str:
    label = charset_of(content_type)
    codec = _codec(label) if label else json.detect_encoding(body)
    try:
        text = body.decode(codec)
    except UnicodeDecodeError as exc:
        raise JsonFeedError(
            f"{NOT_A_JSON_FEED}: the bytes are not valid {label or 'UTF-8'} (at byte {exc.start})"
        ) from exc
    return text.removeprefix("\ufeff")


def _codec(label: str) -> str:
    """The codec for a charset label; UTF-8 as ``utf-8-sig`` so a byte order mark is tolerated."""
    try:
        name = codecs.lookup(label).name
    except LookupError as exc:
        raise JsonFeedError(f"{NOT_A_JSON_FEED}: unknown charset {label!r} in the Content-Type") from exc
    return "utf-8-sig" if name == "utf-8" else name


def _load(text: str) -> Any:
    stripped = text.lstrip()
    if not stripped:
        raise JsonFeedError(f"{NOT_A_JSON_FEED}: the document is empty")
    if stripped.startswith("<"):
        raise JsonFeedError(f"{NOT_A_JSON_FEED}: found XML or HTML (for RSS or Atom use source type 'rss')")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JsonFeedError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc


def _feed_object(data: Any) -> Mapping[str, Any]:
    """The top-level object, checked for a jsonfeed.org ``version`` and an ``items`` list."""
    if not isinstance(data, dict):
        raise JsonFeedError(f"{NOT_A_JSON_FEED}: the document is a JSON {_json_kind(data)}, not an object")
    version = data.get("version")
    if not isinstance(version, str) or "jsonfeed.org" not in version:
        raise JsonFeedError(f"{NOT_A_JSON_FEED}: no 'version' naming jsonfeed.org")
    if not isinstance(data.get("items"), list):
        raise JsonFeedError(f"{NOT_A_JSON_FEED}: 'items' is missing or not a list")
    return data


def _json_kind(data: Any) -> str:
    if isinstance(data, list):
        return "array"
    if isinstance(data, str):
        return "string"
    if data is None:
        return "null"
    return "boolean" if isinstance(data, bool) else "number"


@dataclass
class _Skipped:
    not_object: int = 0
    no_url: int = 0

    @property
    def total(self) -> int:
        return self.not_object + self.no_url

    def describe(self) -> str:
        parts = [f"{self.no_url} without 'url'"] if self.no_url else []
        if self.not_object:
            parts.append(f"{self.not_object} not a JSON object")
        return ", ".join(parts)


def _entries(items: list[Any], language: str | None) -> tuple[tuple[RawEntry, ...], _Skipped]:
    entries: list[RawEntry] = []
    skipped = _Skipped()
    for item in items:
        if not isinstance(item, dict):
            skipped.not_object += 1
        elif entry := _entry(item, language):
            entries.append(entry)
        else:
            skipped.no_url += 1
    return tuple(entries), skipped


def _entry(item: Mapping[str, Any], feed_language: str | None) -> RawEntry | None:
    """One item, or None when it has neither ``url`` nor ``external_url``."""
    link = _string(item.get("url")) or _string(item.get("external_url"))
    if link is None:
        return None
    summary, summary_format = _summary(item)
    return RawEntry(
        link=link,
        title=_title(item.get("title")),
        summary=summary,
        published=_date(item.get("date_published")) or _date(item.get("date_modified")),
        image=_string(item.get("image")) or _string(item.get("banner_image")),
        tags=_tags(item.get("tags")),
        language=_text(item.get("language")) or feed_language,
        summary_format=summary_format,
    )


def _summary(item: Mapping[str, Any]) -> tuple[str | None, Literal["html", "text"]]:
    """``content_html``, else ``content_text``, else ``summary`` (plain text in JSON Feed)."""
    html = _text(item.get("content_html"))
    if html:
        return html, "html"
    text = _text(item.get("content_text")) or _text(item.get("summary"))
    return text, "text"


def _string(value: Any) -> str | None:
    """A string value as found, stripped (URLs: normalisation judges them); None if empty or no string."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _text(value: Any) -> str | None:
    """A text value, stripped, with lone surrogates as U+FFFD."""
    text = _string(value)
    if text is None or text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


def _title(value: Any) -> str | None:
    """The title as HTML: one that looks like HTML as it is, plain text escaped."""
    title = _text(value)
    if title is None or looks_like_html(title):
        return title
    return html_text.escape(title, quote=False)


def _tags(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(dict.fromkeys(tag for tag in (_text(v) for v in value) if tag))


def _date(value: Any) -> datetime | str | None:
    """RFC 3339 as an aware UTC datetime; anything else (or without zone) as the raw string."""
    raw = _string(value)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return raw
    if moment.tzinfo is None or moment.utcoffset() is None:
        return raw
    return moment.astimezone(UTC)
