"""The ``rss`` adapter: RSS 0.9x, RSS 1.0 (RDF), RSS 2.0, Atom 1.0 and Atom 0.3.

Two paths read a feed. The fast path parses well-formed feeds with lxml (about 25 times faster than
feedparser); feedparser's tolerant parser takes over when lxml cannot read the document (not well-formed,
unknown root element, HTML entities from a DTD). Both paths fill the same ``_Parts`` and share its choices
(which link, which summary, which date, which image), so a well-formed feed gives the same entries on
either path. Every document first passes ``check_xml_safe``: entity declarations are refused before any
parser runs.

Nothing is normalised here: links stay as found except that ``xml:base`` in effect is applied (feedparser
always does that, so the fast path does too); the base in effect is kept in ``RawEntry.base_url`` for the
relative URLs inside summaries. HTML stays unsanitised and odd date strings stay strings.
"""

from __future__ import annotations

import copy
import html
import logging
import re
import xml.sax
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import feedparser
from lxml import etree

from imk_outreach.errors import SourceError, UnsafeDocumentError
from imk_outreach.models import Document, ParseResult, RawEntry, SourceSpec
from imk_outreach.sources.base import charset_of
from imk_outreach.sources.xmlsafety import check_xml_safe

logger = logging.getLogger(__name__)

ReadPath = Literal["lxml", "feedparser"]

NS_ATOM = "http://www.w3.org/2005/Atom"
NS_ATOM03 = "http://purl.org/atom/ns#"
NS_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
NS_RSS10 = "http://purl.org/rss/1.0/"
NS_RSS090 = "http://my.netscape.com/rdf/simple/0.9/"
NS_CONTENT = "http://purl.org/rss/1.0/modules/content/"
NS_DC = "http://purl.org/dc/elements/1.1/"
NS_MEDIA = ("http://search.yahoo.com/mrss/", "http://search.yahoo.com/mrss")
XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"

NOT_A_FEED = "not an RSS or Atom feed"
_HTML_PAGE = f"{NOT_A_FEED}: found an HTML page (is the URL the feed's address, not the website's?)"
# Links that never stand for the entry itself.
_NOT_ENTRY_LINKS = frozenset({"self", "edit", "edit-media", "replies", "license", "hub", "enclosure"})
_VOID_PAIR = re.compile(
    r"<(area|base|br|col|embed|hr|img|input|link|meta|param|source|track|wbr)(\s[^<>]*)?></\1>", re.IGNORECASE
)
_ATOM_KINDS = {
    "text": "text",
    "text/plain": "text",
    "html": "html",
    "text/html": "html",
    "xhtml": "xhtml",
    "application/xhtml+xml": "xhtml",
}
_IMAGE_PATH = re.compile(r"\.(?:jpe?g|png|gif|webp|avif|svg)$", re.IGNORECASE)
_URL = re.compile(r"https?://", re.IGNORECASE)
_HTML_START = re.compile(
    r"(?:\s|<\?.*?\?>|<!--.*?-->)*<(?:!doctype\s+html|html[\s>]|head[\s>]|body[\s>])",
    re.IGNORECASE | re.DOTALL,
)


class FeedReadError(Exception):
    """The document is no feed we can read; ``reason`` says why in words a comms person can act on."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class FastPathUnavailable(FeedReadError):
    """lxml cannot read the document (not well-formed, unknown root element); feedparser may."""


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
        return _read_fast(body), "lxml"
    except FastPathUnavailable as exc:
        logger.debug("lxml cannot read the feed (%s); trying feedparser", exc.reason)
        if _HTML_START.match(_head_text(body)):
            raise FeedReadError(_HTML_PAGE) from exc
        return _read_feedparser(body, content_type, exc.reason), "feedparser"


def parse_fast(body: bytes) -> ParseResult:
    """Read a well-formed RSS or Atom feed with lxml.

    :raises UnsafeDocumentError: the prolog declares entities or DTD declarations.
    :raises FastPathUnavailable: lxml cannot read it (not well-formed, unknown root element, ...).
    :raises FeedReadError: it is an HTML page.
    """
    check_xml_safe(body)
    return _read_fast(body)


def parse_feedparser(body: bytes, content_type: str | None = None) -> ParseResult:
    """Read any RSS or Atom feed, well-formed or not, with feedparser.

    :raises UnsafeDocumentError: the prolog declares entities or DTD declarations.
    :raises FeedReadError: feedparser found no entries in a broken or foreign document.
    """
    check_xml_safe(body, charset=charset_of(content_type))
    return _read_feedparser(body, content_type, None)


# --- choices shared by both paths ------------------------------------------------------------------


@dataclass
class _Parts:
    """What one entry yields while its elements are read; ``to_entry`` makes the same choices on both paths.

    Single values follow feedparser's rule (a later element wins); candidates for links and images keep
    document order.
    """

    base: str | None = None
    title: str | None = None
    alternates: list[str] = field(default_factory=list)
    other_links: list[str] = field(default_factory=list)
    permalink: str | None = None
    rich: str | None = None
    plain: str | None = None
    summary: str | None = None
    summary_is_text: bool = False
    published: str | None = None
    updated: str | None = None
    enclosure_images: list[str] = field(default_factory=list)
    media_images: list[str] = field(default_factory=list)
    thumbnails: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    def add_link(self, href: str | None, rel: str | None) -> None:
        if not href:
            return
        rel = (rel or "alternate").strip().lower()
        if rel == "alternate":
            self.alternates.append(href)
        elif rel not in _NOT_ENTRY_LINKS:
            self.other_links.append(href)

    def add_content(self, value: str | None, is_html: bool) -> None:
        """Content is kept per kind, the first of each kind winning (feedparser lists them in order)."""
        if value and is_html and self.rich is None:
            self.rich = value
        elif value and not is_html and self.plain is None:
            self.plain = value

    def set_summary(self, value: str | None, is_html: bool) -> None:
        if value:
            self.summary, self.summary_is_text = value, not is_html

    def add_enclosure(self, url: str | None, mime: str | None) -> None:
        # feedparser gives a link without type "text/html"; that says nothing about an enclosure.
        if url and mime and mime.strip().lower() == "text/html":
            mime = None
        if url and _is_image(mime, None, url):
            self.enclosure_images.append(url)

    def add_media(self, url: str | None, mime: str | None, medium: str | None) -> None:
        if url and _is_image(mime, medium, url):
            self.media_images.append(url)

    def to_entry(self) -> RawEntry:
        summary, summary_format = self._summary()
        images = self.enclosure_images + self.media_images + self.thumbnails
        return RawEntry(
            link=self._link(),
            title=self.title,
            summary=summary,
            published=_pick_date(self.published, self.updated),
            image=images[0] if images else None,
            tags=tuple(dict.fromkeys(self.tags)),
            base_url=self.base,
            summary_format=summary_format,
        )

    def _link(self) -> str | None:
        """The alternate link, else another link, else a permalink guid that is an http(s) URL."""
        links = self.alternates or self.other_links
        if links:
            return links[0]
        if self.permalink and _URL.match(self.permalink):
            return self.permalink
        return None

    def _summary(self) -> tuple[str | None, Literal["html", "text"]]:
        """Rich content (content:encoded, Atom html/xhtml) over the summary, over plain-text content."""
        if self.rich:
            return self.rich, "html"
        if self.summary:
            return self.summary, "text" if self.summary_is_text else "html"
        if self.plain:
            return self.plain, "text"
        return None, "html"


def _kept(entries: Iterable[RawEntry]) -> tuple[RawEntry, ...]:
    """Entries with a link, a title or a summary; a broken feed can leave shells with none of them."""
    return tuple(entry for entry in entries if entry.link or entry.title or entry.summary)


def _is_image(mime: str | None, medium: str | None, url: str) -> bool:
    """Whether a media reference is an image: by medium, else by MIME type, else by the URL's extension."""
    if medium and medium.strip():
        return medium.strip().lower() == "image"
    if mime and mime.strip():
        return mime.strip().lower().startswith("image/")
    return _IMAGE_PATH.search(urlsplit(url).path) is not None


def _pick_date(published: str | None, updated: str | None) -> datetime | str | None:
    """The first of published/updated that parses; else the first raw string given."""
    first = _parse_date(published)
    if isinstance(first, datetime):
        return first
    second = _parse_date(updated)
    return second if isinstance(second, datetime) or first is None else first


def _parse_date(raw: str | None) -> datetime | str | None:
    """RFC 822 or ISO 8601 / RFC 3339 as an aware UTC datetime; anything else (or naive) as the raw string."""
    value = (raw or "").strip()
    if not value:
        return None
    parsed = _rfc822(value) or _iso8601(value)
    return parsed if parsed is not None else value


def _rfc822(value: str) -> datetime | None:
    try:
        return _aware_utc(parsedate_to_datetime(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _iso8601(value: str) -> datetime | None:
    try:
        return _aware_utc(datetime.fromisoformat(value))
    except ValueError:
        return None


def _aware_utc(moment: datetime) -> datetime | None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        return None
    return moment.astimezone(UTC)


def _join(base: str | None, url: str | None) -> str | None:
    """``url`` stripped and resolved against an ``xml:base`` in effect (as feedparser does); None if empty."""
    value = (url or "").strip()
    if not value:
        return None
    return urljoin(base, value) if base else value


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


# --- fast path: lxml ----------------------------------------------------------------------------------


def _read_fast(body: bytes) -> ParseResult:
    root = _parse_xml(body)
    reader = _READERS.get(root.tag)
    if reader is not None:
        return reader(root)
    name = _local(root.tag)
    if name.lower() == "html":
        raise FeedReadError(_HTML_PAGE)
    raise FastPathUnavailable(f"unknown root element <{name}>")


def _parse_xml(body: bytes) -> etree._Element:
    """Parse from bytes (so the declared encoding is honoured) with every DTD feature off."""
    # Not collect_ids=False: with it libxml2 2.14 tries to fetch the external DTD (no_network stops it).
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as exc:
        line, column = exc.position
        raise FastPathUnavailable(f"not well-formed XML at line {line}, column {column}: {exc.msg}") from exc
    except (etree.LxmlError, ValueError) as exc:
        raise FastPathUnavailable(f"not readable as XML: {exc}") from exc
    # Under a DOCTYPE with an external DTD (never loaded) an entity like &eacute; stays an unresolved
    # node instead of failing the parse; feedparser knows the HTML entities.
    if next(root.iter(etree.Entity), None) is not None:
        raise FastPathUnavailable("the feed uses entities of its DTD (such as &eacute;)")
    return root


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _xml_base(el: etree._Element, parent: str | None) -> str | None:
    own = el.get(XML_BASE)
    if not isinstance(own, str) or not own.strip():
        return parent
    return urljoin(parent, own.strip()) if parent else own.strip()


def _read_rss(root: etree._Element) -> ParseResult:
    channel = root.find("channel")
    if channel is None:
        raise FastPathUnavailable("an <rss> document without <channel>")
    base = _xml_base(channel, _xml_base(root, None))
    entries = _kept(_entry(item, base) for item in channel.iterfind("item"))
    return ParseResult(entries=entries, base_url=_feed_link(channel, base) or base)


def _read_rdf(root: etree._Element) -> ParseResult:
    base = _xml_base(root, None)
    for ns in (NS_RSS10, NS_RSS090):
        channel = root.find(f"{{{ns}}}channel")
        if channel is not None:
            entries = _kept(_entry(item, base) for item in root.iterfind(f"{{{ns}}}item"))
            return ParseResult(entries=entries, base_url=_feed_link(channel, base) or base)
    raise FastPathUnavailable("an RDF document without an RSS 1.0 or 0.90 channel")


def _read_atom_any(root: etree._Element) -> ParseResult:
    ns = root.tag[1:].split("}", 1)[0]
    base = _xml_base(root, None)
    entries = _kept(_entry(item, base) for item in root.iterfind(f"{{{ns}}}entry"))
    return ParseResult(entries=entries, base_url=_feed_link(root, base) or base)


_READERS: dict[str, Callable[[etree._Element], ParseResult]] = {
    "rss": _read_rss,
    f"{{{NS_RDF}}}RDF": _read_rdf,
    f"{{{NS_ATOM}}}feed": _read_atom_any,
    f"{{{NS_ATOM03}}}feed": _read_atom_any,
}


def _entry(item: etree._Element, parent_base: str | None) -> RawEntry:
    parts = _Parts(base=_xml_base(item, parent_base))
    _take_children(parts, item)
    return parts.to_entry()


def _take_children(parts: _Parts, el: etree._Element) -> None:
    for child in el:
        handler = _FIELDS.get(child.tag)  # comments and PIs have a function as tag: no handler
        if handler is not None:
            handler(parts, child)


def _feed_link(parent: etree._Element, base: str | None) -> str | None:
    """The channel's or feed's alternate link: the base for relative links in a feed without xml:base."""
    parts = _Parts(base=base)
    for child in parent:
        if child.tag in _LINK_TAGS:
            _FIELDS[child.tag](parts, child)
    return parts.alternates[0] if parts.alternates else None


def _text(el: etree._Element) -> str | None:
    """An element's content, stripped: its text, or its markup as HTML when it has child elements."""
    value = (el.text or "") if len(el) == 0 else _markup(el)
    return value.strip() or None


def _markup(el: etree._Element) -> str:
    """The content of ``el`` as HTML: escaped text plus children serialised without namespaces."""
    return html.escape(el.text or "", quote=False) + "".join(_html(child) for child in el)


def _html(el: etree._Element) -> str:
    clone = copy.deepcopy(el)
    if isinstance(clone.tag, str):
        for node in clone.iter():
            if isinstance(node.tag, str) and node.tag.startswith("{"):
                node.tag = _local(node.tag)
        etree.cleanup_namespaces(clone)
    return str(etree.tostring(clone, method="html", encoding="unicode", with_tail=True))


def _atom_text(el: etree._Element) -> tuple[str | None, bool]:
    """An Atom text construct as (value, is_html); out-of-line content (``src``) gives no value."""
    if el.get("src") is not None:
        return None, False
    kind = _atom_kind(el)
    if kind == "xhtml":
        return _xhtml(el), True
    return (_text(el), kind == "html") if kind else (None, False)


def _atom_kind(el: etree._Element) -> str | None:
    """text, html or xhtml, from ``type`` (Atom 1.0 names or Atom 0.3 MIME types) and 0.3's ``mode``."""
    mime = (el.get("type") or "text").strip().lower()
    mode = (el.get("mode") or "").strip().lower()
    if mode == "base64":
        raise FastPathUnavailable("base64-encoded content (Atom 0.3)")
    kind = _ATOM_KINDS.get(mime) or ("text" if mime.startswith("text/") else None)
    return "html" if kind == "xhtml" and mode == "escaped" else kind


def _xhtml(el: etree._Element) -> str | None:
    """XHTML content as HTML, without the wrapping ``div`` Atom requires."""
    children = [child for child in el if isinstance(child.tag, str)]
    if len(children) == 1 and _local(children[0].tag) == "div" and not (el.text or "").strip():
        el = children[0]
    return _markup(el).strip() or None


# Handlers for the child elements of an item or entry (and of media:group / media:content).


def _title(parts: _Parts, el: etree._Element) -> None:
    parts.title = _text(el)


def _atom_title(parts: _Parts, el: etree._Element) -> None:
    parts.title = _atom_text(el)[0]


def _rss_link(parts: _Parts, el: etree._Element) -> None:
    parts.add_link(_join(_xml_base(el, parts.base), el.text), "alternate")


def _atom_link(parts: _Parts, el: etree._Element) -> None:
    href = _join(_xml_base(el, parts.base), el.get("href"))
    rel = (el.get("rel") or "alternate").strip().lower()
    if rel == "enclosure":
        parts.add_enclosure(href, el.get("type"))
    else:
        parts.add_link(href, rel)


def _guid(parts: _Parts, el: etree._Element) -> None:
    flag = el.get("isPermaLink", el.get("ispermalink", "true"))
    parts.permalink = _join(_xml_base(el, parts.base), el.text) if flag == "true" else None


def _description(parts: _Parts, el: etree._Element) -> None:
    parts.set_summary(_text(el), is_html=True)


def _encoded(parts: _Parts, el: etree._Element) -> None:
    parts.add_content(_text(el), is_html=True)


def _atom_summary(parts: _Parts, el: etree._Element) -> None:
    value, is_html = _atom_text(el)
    parts.set_summary(value, is_html)


def _atom_content(parts: _Parts, el: etree._Element) -> None:
    value, is_html = _atom_text(el)
    parts.add_content(value, is_html)


def _published(parts: _Parts, el: etree._Element) -> None:
    parts.published = _text(el)


def _updated(parts: _Parts, el: etree._Element) -> None:
    parts.updated = _text(el)


def _category(parts: _Parts, el: etree._Element) -> None:
    value = _text(el)
    if value:
        parts.tags.append(value)


def _atom_category(parts: _Parts, el: etree._Element) -> None:
    term = (el.get("term") or "").strip()
    if term:
        parts.tags.append(term)


def _keywords(parts: _Parts, el: etree._Element) -> None:
    parts.tags.extend(term.strip() for term in (el.text or "").split(",") if term.strip())


def _enclosure(parts: _Parts, el: etree._Element) -> None:
    parts.add_enclosure((el.get("url") or "").strip() or None, el.get("type"))


def _media_content(parts: _Parts, el: etree._Element) -> None:
    parts.add_media((el.get("url") or "").strip() or None, el.get("type"), el.get("medium"))
    _take_children(parts, el)


def _media_thumbnail(parts: _Parts, el: etree._Element) -> None:
    url = (el.get("url") or el.text or "").strip()
    if url:
        parts.thumbnails.append(url)


def _media_group(parts: _Parts, el: etree._Element) -> None:
    _take_children(parts, el)


def _field_table() -> dict[str, Callable[[_Parts, etree._Element], None]]:
    """Element name -> handler, for every dialect at once (their names never collide)."""
    table: dict[str, Callable[[_Parts, etree._Element], None]] = {
        "title": _title,
        "link": _rss_link,
        "guid": _guid,
        "description": _description,
        "pubDate": _published,
        "category": _category,
        "enclosure": _enclosure,
        f"{{{NS_CONTENT}}}encoded": _encoded,
        f"{{{NS_DC}}}date": _updated,
        f"{{{NS_DC}}}subject": _category,
    }
    for ns in (NS_RSS10, NS_RSS090):
        table.update(
            {f"{{{ns}}}title": _title, f"{{{ns}}}link": _rss_link, f"{{{ns}}}description": _description}
        )
    for ns in (NS_ATOM, NS_ATOM03):
        table.update(
            {
                f"{{{ns}}}title": _atom_title,
                f"{{{ns}}}link": _atom_link,
                f"{{{ns}}}summary": _atom_summary,
                f"{{{ns}}}content": _atom_content,
                f"{{{ns}}}category": _atom_category,
            }
        )
    table.update({f"{{{NS_ATOM}}}published": _published, f"{{{NS_ATOM}}}updated": _updated})
    table.update({f"{{{NS_ATOM03}}}issued": _published, f"{{{NS_ATOM03}}}modified": _updated})
    for ns in NS_MEDIA:
        table.update(
            {
                f"{{{ns}}}content": _media_content,
                f"{{{ns}}}thumbnail": _media_thumbnail,
                f"{{{ns}}}group": _media_group,
                f"{{{ns}}}keywords": _keywords,
            }
        )
    return table


_FIELDS = _field_table()
_LINK_TAGS = frozenset(tag for tag, handler in _FIELDS.items() if handler in (_rss_link, _atom_link))


# --- fallback: feedparser -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Flaw:
    """What feedparser's ``bozo_exception`` says, worded for a warning and for an error."""

    warning: str
    error: str


def _read_feedparser(body: bytes, content_type: str | None, fast_reason: str | None) -> ParseResult:
    """Read with feedparser; ``fast_reason`` (why lxml failed) explains a document without any feed."""
    data = feedparser.parse(
        body, response_headers=_fp_headers(content_type), sanitize_html=False, resolve_relative_uris=False
    )
    version = str(data.get("version") or "")
    entries = _kept(_fp_entry(entry, version.startswith("rss")) for entry in data.get("entries", []))
    flaw = _fp_flaw(data, _declares_xml(body))
    if not entries and (flaw is not None or not version):
        detail = flaw.error if flaw is not None else fast_reason or "no RSS or Atom elements found"
        raise FeedReadError(f"{NOT_A_FEED}: {detail}")
    kept = f"kept {len(entries)} {'entry' if len(entries) == 1 else 'entries'}"
    warnings = (f"{flaw.warning}; {kept}",) if flaw is not None and entries else ()
    return ParseResult(entries=entries, warnings=warnings, base_url=_fp_feed_base(data.get("feed", {})))


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
    parts = _Parts(base=_fp_base(entry))
    parts.title = _fp_value(entry.get("title_detail"))
    for link in entry.get("links", []):
        _fp_link(parts, link)
    if is_rss and entry.get("guidislink"):
        parts.permalink = _join(None, entry.get("id"))
    for content in entry.get("content", []):
        parts.add_content(_fp_value(content), _fp_is_html(content))
    summary = entry.get("summary_detail")
    if summary:
        parts.set_summary(_fp_value(summary), _fp_is_html(summary))
    # dict.get: FeedParserDict answers a missing "updated" with "published" (and a DeprecationWarning).
    parts.published, parts.updated = dict.get(entry, "published"), dict.get(entry, "updated")
    _fp_media(parts, entry)
    for tag in entry.get("tags", []):
        if (tag.get("term") or "").strip():
            parts.tags.append(tag["term"].strip())
    return parts.to_entry()


def _fp_media(parts: _Parts, entry: Mapping[str, Any]) -> None:
    for media in entry.get("media_content", []):
        parts.add_media(_join(None, media.get("url")), media.get("type"), media.get("medium"))
    for thumbnail in entry.get("media_thumbnail", []):
        url = _join(None, thumbnail.get("url"))
        if url:
            parts.thumbnails.append(url)


def _fp_link(parts: _Parts, link: Mapping[str, Any]) -> None:
    href = _join(None, link.get("href"))
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


def _fp_is_html(detail: Mapping[str, Any]) -> bool:
    return detail.get("type") in ("text/html", "application/xhtml+xml")


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
    parts = _Parts()
    for link in feed.get("links", []):
        if link.get("rel") != "enclosure":
            parts.add_link(_join(None, link.get("href")), link.get("rel"))
    return parts.alternates[0] if parts.alternates else _fp_base(feed)
