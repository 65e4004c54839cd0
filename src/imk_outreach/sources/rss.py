"""The ``rss`` adapter: RSS 0.9x, RSS 1.0 (RDF), RSS 2.0, Atom 1.0 and Atom 0.3.

Two paths read a feed. The fast path (rss_fast.py) parses well-formed feeds with lxml (about 25 times
faster than feedparser); feedparser's tolerant parser (here) takes over when lxml cannot read the
document (not well-formed, unknown root element, HTML entities from a DTD). Both paths fill the same
``EntryParts`` and share its choices (rss_entry.py: which link, title, summary, date and image, and how
a text construct of each type is read), so a well-formed feed gives the same entries on either path.
Every document first passes ``check_xml_safe``: entity declarations are refused before any parser runs.

Nothing is normalised here: links stay as found except that ``xml:base`` in effect is applied (feedparser
always does that, so the fast path does too); the base in effect for the summary is kept in
``RawEntry.base_url`` for the relative URLs inside it. HTML stays unsanitised and odd date strings stay
strings. A URL that cannot be resolved is handed on as found (sources/urls.py never raises), so
normalisation skips that entry with a warning and keeps the rest.
"""

from __future__ import annotations

import logging
import re
import xml.sax
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import feedparser

from imk_outreach.errors import SourceError, UnsafeDocumentError
from imk_outreach.models import Document, ParseResult, RawEntry, SourceSpec
from imk_outreach.sources.base import charset_of
from imk_outreach.sources.rss_entry import (
    NOT_A_FEED,
    EntryParts,
    FastPathUnavailable,
    FeedReadError,
    feed_base,
    join,
    kept,
    kind_of,
    mapped_type,
)
from imk_outreach.sources.rss_fast import HTML_PAGE, read_fast
from imk_outreach.sources.xmlsafety import check_xml_safe

__all__ = [
    "NOT_A_FEED",
    "FastPathUnavailable",
    "FeedReadError",
    "ReadPath",
    "RssSource",
    "parse_fast",
    "parse_feedparser",
    "read_feed",
]

logger = logging.getLogger(__name__)

ReadPath = Literal["lxml", "feedparser"]

_VOID_PAIR = re.compile(
    r"<(area|base|br|col|embed|hr|img|input|link|meta|param|source|track|wbr)(\s[^<>]*)?></\1>", re.IGNORECASE
)
_CHAR_REF = re.compile(rb"&#([xX][0-9a-fA-F]+|[0-9]+);")
_HTML_START = re.compile(
    r"(?:\s|<\?.*?\?>|<!--.*?-->)*<(?:!doctype\s+html|html[\s>]|head[\s>]|body[\s>])",
    re.IGNORECASE | re.DOTALL,
)


class RssSource:
    """Reads RSS and Atom feeds (see the module docstring for the two paths)."""

    def parse(self, doc: Document, spec: SourceSpec) -> ParseResult:
        """Read the entries of one fetched feed.

        :param doc: the fetched bytes; ``content_type`` may name a charset for the fallback path.
        :param spec: the configured source (only its name is used, for errors and logs).
        :returns: the entries in document order, and warnings when the feed parsed only in part.
        :raises SourceError: the document is unsafe (entity declarations), empty, HTML, JSON, or no
            readable feed.
        """
        try:
            result, path = read_feed(doc.body, doc.content_type)
        except (UnsafeDocumentError, FeedReadError) as exc:
            raise SourceError(spec.name, doc.base_url, exc.reason) from exc
        logger.debug("source %s: read %d entries via %s", spec.name, len(result.entries), path)
        return result


def read_feed(body: bytes, content_type: str | None = None) -> tuple[ParseResult, ReadPath]:
    """Read a feed on the fast path, falling back to feedparser; says which path read it.

    :param body: the document bytes.
    :param content_type: the HTTP Content-Type, if any (its charset matters only to feedparser).
    :raises UnsafeDocumentError: the prolog declares entities or DTD declarations.
    :raises FeedReadError: the document is empty, HTML, JSON or no readable feed.
    """
    check_xml_safe(body, charset=charset_of(content_type))
    _refuse_obvious_non_feeds(body)
    try:
        return read_fast(body), "lxml"
    except FastPathUnavailable as exc:
        logger.debug("lxml cannot read the feed (%s); trying feedparser", exc.reason)
        if _HTML_START.match(_head_text(body)):
            raise FeedReadError(HTML_PAGE) from exc
        return _read_feedparser(body, content_type, exc.reason), "feedparser"


def parse_fast(body: bytes) -> ParseResult:
    """Read a well-formed RSS or Atom feed with lxml (only; for tests and the corpus checker).

    :raises UnsafeDocumentError: the prolog declares entities or DTD declarations.
    :raises FastPathUnavailable: lxml cannot read it (not well-formed, unknown root element, ...).
    :raises FeedReadError: it is an HTML page.
    """
    check_xml_safe(body)
    return read_fast(body)


def parse_feedparser(body: bytes, content_type: str | None = None) -> ParseResult:
    """Read any RSS or Atom feed, well-formed or not, with feedparser (only).

    :raises UnsafeDocumentError: the prolog declares entities or DTD declarations.
    :raises FeedReadError: feedparser found no entries in a broken or foreign document.
    """
    check_xml_safe(body, charset=charset_of(content_type))
    return _read_feedparser(body, content_type, None)


# --- document checks ----------------------------------------------------------------------------------


def _refuse_obvious_non_feeds(body: bytes) -> None:
    """Name the usual mistakes (an empty answer, a JSON document) before any parser tries."""
    head = body[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head:
        raise FeedReadError(f"{NOT_A_FEED}: the document is empty")
    if head[:1] in (b"{", b"["):
        raise FeedReadError(f"{NOT_A_FEED}: found JSON (for a JSON Feed use source type 'jsonfeed')")


def _head_text(body: bytes) -> str:
    return body[:2048].decode("latin-1").lstrip("\xef\xbb\xbf")


# --- fallback: feedparser -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Flaw:
    """What feedparser's ``bozo_exception`` says, worded for a warning and for an error."""

    warning: str
    error: str


def _read_feedparser(body: bytes, content_type: str | None, fast_reason: str | None) -> ParseResult:
    """Read with feedparser; ``fast_reason`` (why lxml failed) explains a document without any feed."""
    data = feedparser.parse(
        _without_impossible_refs(body),
        response_headers=_fp_headers(content_type),
        sanitize_html=False,
        resolve_relative_uris=False,
    )
    version = str(data.get("version") or "")
    entries = kept(_fp_entry(entry, version.startswith("rss")) for entry in data.get("entries", []))
    flaw = _fp_flaw(data, _declares_xml(body))
    if not entries and (flaw is not None or not version):
        detail = flaw.error if flaw is not None else fast_reason or "no RSS or Atom elements found"
        raise FeedReadError(f"{NOT_A_FEED}: {detail}")
    count = f"kept {len(entries)} {'entry' if len(entries) == 1 else 'entries'}"
    warnings = (f"{flaw.warning}; {count}",) if flaw is not None and entries else ()
    return ParseResult(entries=entries, warnings=warnings, base_url=_fp_feed_base(data.get("feed", {})))


def _without_impossible_refs(body: bytes) -> bytes:
    """The document with each character reference that stands for no character (a surrogate, a number
    past U+10FFFF) written as U+FFFD: feedparser's tolerant parser raises on them, so one such
    reference would cost the whole source (lxml refuses them, so only this path meets them)."""
    if b"&#" not in body:
        return body
    return _CHAR_REF.sub(_mended_ref, body)


def _mended_ref(match: re.Match[bytes]) -> bytes:
    ref = match.group(1)
    if len(ref) > 9:
        return b"&#xFFFD;"
    value = int(ref[1:], 16) if ref[:1] in (b"x", b"X") else int(ref)
    return b"&#xFFFD;" if 0xD800 <= value <= 0xDFFF or value > 0x10FFFF else match.group(0)


def _fp_headers(content_type: str | None) -> dict[str, str]:
    """The response headers feedparser sees.

    No Content-Location: feedparser would resolve every relative link against it, the fast path keeps
    them as found. No ``text/*`` type without charset either: feedparser then assumes US-ASCII (RFC
    3023, since replaced by RFC 7303) and flags a correct UTF-8 feed.
    """
    if not content_type:
        return {}
    if content_type.strip().lower().startswith("text/") and charset_of(content_type) is None:
        return {}
    return {"content-type": content_type}


def _declares_xml(body: bytes) -> bool:
    """Whether the document opens with an XML declaration (in UTF-8, Latin-1 or UTF-16 alike)."""
    head = body[:24].replace(b"\x00", b"").lstrip(b"\xef\xbb\xbf\xff\xfe")
    return head.startswith(b"<?xml")


def _fp_flaw(data: Mapping[str, Any], declared: bool) -> _Flaw | None:
    """The flaw feedparser reports, if it matters.

    :param declared: the document has an XML declaration; without one feedparser adds a line of its own
        in front, and its line numbers are one too high.
    """
    if not data.get("bozo"):
        return None
    exc = data.get("bozo_exception")
    if isinstance(exc, feedparser.NonXMLContentType):
        return None  # a server's wrong Content-Type; the fast path ignores it too
    if isinstance(exc, xml.sax.SAXParseException):
        line = (exc.getLineNumber() or 1) - (0 if declared else 1)
        column, message = (exc.getColumnNumber() or 0) + 1, exc.getMessage()
        return _Flaw(
            warning=f"feed is not well-formed XML (line {line}: {message})",
            error=f"not well-formed XML at line {line}, column {column}: {message}",
        )
    return _Flaw(warning=f"feed has a flaw ({exc})", error=str(exc))


def _fp_entry(entry: dict[str, Any], is_rss: bool) -> RawEntry:
    parts = EntryParts(base=_fp_base(entry))
    title = _fp_text(entry.get("title_detail"))
    if title is not None:
        parts.set_title(title[0], title[1])
    for link in entry.get("links", []):
        _fp_link(parts, link)
    if is_rss and entry.get("guidislink"):
        parts.permalink = join(None, entry.get("id"))
    for content in entry.get("content", []):
        read = _fp_text(content)
        if read is not None:
            parts.add_content(read[0], read[1], content.get("base") or None)
    summary = entry.get("summary_detail")
    read = _fp_text(summary)
    if summary and read is not None:
        parts.set_summary(read[0], read[1], summary.get("base") or None)
    # dict.get: FeedParserDict answers a missing "updated" with "published" (and a DeprecationWarning).
    parts.published, parts.updated = dict.get(entry, "published"), dict.get(entry, "updated")
    _fp_media(parts, entry)
    for tag in entry.get("tags", []):
        if (tag.get("term") or "").strip():
            parts.tags.append(tag["term"].strip())
    return parts.to_entry()


def _fp_text(detail: Mapping[str, Any] | None) -> tuple[str, bool] | None:
    """A text construct as (value, is_html) by the shared rules; None when empty or of a kind not read."""
    if not detail:
        return None
    kind = kind_of(mapped_type(detail.get("type"), "text/plain"))
    value = _fp_value(detail)
    if kind is None or value is None:
        return None
    return value, kind != "text"


def _fp_media(parts: EntryParts, entry: Mapping[str, Any]) -> None:
    for media in entry.get("media_content", []):
        parts.add_media(join(None, media.get("url")), media.get("type"), media.get("medium"))
    for thumbnail in entry.get("media_thumbnail", []):
        url = join(None, thumbnail.get("url"))
        if url:
            parts.thumbnails.append(url)


def _fp_link(parts: EntryParts, link: Mapping[str, Any]) -> None:
    href = join(None, link.get("href"))
    if link.get("rel") == "enclosure":
        parts.add_enclosure(href, link.get("type"))
    else:
        parts.add_link(href, link.get("rel"))


def _fp_value(detail: Mapping[str, Any] | None) -> str | None:
    """A text construct's value; XHTML written the HTML way (feedparser writes ``<br></br>``)."""
    if not detail:
        return None
    value = str(detail.get("value") or "").strip()
    if detail.get("type") == "application/xhtml+xml":
        value = _VOID_PAIR.sub(r"<\1\2>", value)
    return value or None


def _fp_base(entry: Mapping[str, Any]) -> str | None:
    """The xml:base in effect on an entry, as feedparser recorded it on the entry's text constructs."""
    for detail in _fp_details(entry):
        if detail.get("base"):
            return str(detail["base"])
    return None


def _fp_details(entry: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for key in ("title_detail", "summary_detail", "subtitle_detail"):
        if entry.get(key):
            yield entry[key]
    yield from entry.get("content", [])


def _fp_feed_base(feed: Mapping[str, Any]) -> str | None:
    parts = EntryParts()
    for link in feed.get("links", []):
        if link.get("rel") != "enclosure":
            parts.add_link(join(None, link.get("href")), link.get("rel"))
    return feed_base([*parts.alternates, _fp_base(feed)])
