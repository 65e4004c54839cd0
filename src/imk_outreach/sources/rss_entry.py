"""What both paths of the ``rss`` adapter share: the errors, and the choices made for every entry.

Each path fills an :class:`EntryParts` while it reads one entry; :meth:`EntryParts.to_entry` then picks
the link, title, summary, date and image in the same way for both, so a well-formed feed gives the same
entries on either path. The rules for text constructs are feedparser's (the fallback's reading is the
reference; see rss_fast.py for how the fast path follows it):

- a ``type`` is mapped as feedparser maps it (``text`` -> ``text/plain``, ``html`` -> ``text/html``,
  ``xhtml`` -> ``application/xhtml+xml``); a ``mode="base64"`` or a type that is neither ``text/*`` nor
  XML means base64-encoded content;
- HTML and XHTML are read as HTML, ``text/*`` and other decoded types as plain text, inline XML of other
  types and images, audio or video are not read at all;
- outside Atom, a ``text/plain`` value that looks like HTML (a closing tag or an entity, and only known
  HTML elements) is read as HTML: RSS does not say, and feeds routinely put markup into titles.

A title read as plain text is handed on escaped, so normalisation (which reads titles as HTML) keeps
``Using the <canvas> element`` as written.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from html.entities import entitydefs
from typing import Literal

from feedparser.sanitizer import _HTMLSanitizer

from imk_outreach.models import RawEntry
from imk_outreach.sources.urls import is_reference, join_url, split_url

Kind = Literal["text", "html", "xhtml"]

NOT_A_FEED = "not an RSS or Atom feed"
# Links that never stand for the entry itself.
_NOT_ENTRY_LINKS = frozenset({"self", "edit", "edit-media", "replies", "license", "hub", "enclosure"})
_TYPE_NAMES = {
    "text": "text/plain",
    "plain": "text/plain",
    "html": "text/html",
    "xhtml": "application/xhtml+xml",
}
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_UNREAD_MEDIA = ("image/", "audio/", "video/")
_IMAGE_PATH = re.compile(r"\.(?:jpe?g|png|gif|webp|avif|svg)$", re.IGNORECASE)
_URL = re.compile(r"https?://", re.IGNORECASE)
# feedparser's list, so that both paths take the same titles for HTML.
_HTML_ELEMENTS = frozenset(_HTMLSanitizer.acceptable_elements)
_CLOSING_TAG = re.compile(r"</(\w+)>")
_ANY_ENTITY = re.compile(r"&#?\w+;")
_TAG_NAME = re.compile(r"</?(\w+)")
_NAMED_ENTITY = re.compile(r"&(\w+);")
# C1 control characters written by Windows software mean their windows-1252 letters (as in feedparser).
_CP1252 = {
    code: bytes([code]).decode("cp1252")
    for code in range(0x80, 0xA0)
    if code not in (129, 141, 143, 144, 157)
}
_SUSPECT = re.compile("[\x80-\xbf]")  # both repairs below need such a character
_C1 = re.compile("[\x80-\x9f]")
_MOJIBAKE = re.compile("[\xc2-\xf4][\x80-\xbf]")  # how a UTF-8 lead and continuation byte read as Latin-1
_ESCAPED_AMP = re.compile(r"&([A-Za-z0-9_]+);")


class FeedReadError(Exception):
    """The document is no feed we can read; ``reason`` says why in words a comms person can act on."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class FastPathUnavailable(FeedReadError):
    """lxml cannot read the document (not well-formed, unknown root element); feedparser may."""


# --- text constructs ------------------------------------------------------------------------------


def mapped_type(raw: str | None, default: str) -> str:
    """A construct's ``type`` as feedparser maps it (lower case, Atom's short names as MIME types)."""
    value = (raw or default).strip().lower()
    return _TYPE_NAMES.get(value, value)


def is_base64(mime: str, mode: str | None) -> bool:
    """Whether content of this mapped type (and Atom 0.3 ``mode``) is base64-encoded."""
    if (mode or "").strip().lower() == "base64":
        return True
    return not (mime.startswith("text/") or mime.endswith(("+xml", "/xml")))


def kind_of(mime: str) -> Kind | None:
    """How a value of this mapped type is read; None for inline XML of another kind and for media."""
    if mime == "text/html":
        return "html"
    if mime == "application/xhtml+xml":
        return "xhtml"
    if mime.startswith("text/"):
        return "text"
    if mime.endswith(("+xml", "/xml")) or mime.startswith(_UNREAD_MEDIA):
        return None
    return "text"  # base64-encoded, decoded as UTF-8 text


def decode_base64(value: str) -> str:
    """Base64 decoded as UTF-8; the value as found when it is no such thing (as feedparser keeps it)."""
    try:
        return base64.decodebytes(value.encode("utf-8")).decode("utf-8")
    except (binascii.Error, UnicodeError):
        return value


def looks_like_html(value: str) -> bool:
    """feedparser's guess for text of unknown kind: a closing tag or an entity, known elements only."""
    if "<" not in value and "&" not in value:
        return False
    if not (_CLOSING_TAG.search(value) or _ANY_ENTITY.search(value)):
        return False
    if any(name.lower() not in _HTML_ELEMENTS for name in _TAG_NAME.findall(value)):
        return False
    return all(name in entitydefs for name in _NAMED_ENTITY.findall(value))


def repaired(value: str, utf8: bool) -> str:
    """Text mended as feedparser mends it: UTF-8 read as Latin-1 once too often (in a UTF-8 document)
    decoded again, and C1 control characters turned into their windows-1252 letters."""
    if value.isascii() or not _SUSPECT.search(value):
        return value
    if utf8 and _MOJIBAKE.search(value):
        try:
            value = value.encode("iso-8859-1").decode("utf-8")
        except UnicodeError:
            pass
    return value.translate(_CP1252) if _C1.search(value) else value


def link_text(value: str) -> str:
    """A link written as element text, with ``&amp;`` written once too often undone (as feedparser)."""
    if "&" not in value or ";" not in value:
        return value
    return _ESCAPED_AMP.sub(r"&\1", value.replace("&amp;", "&"))


def join(base: str | None, url: str | None) -> str | None:
    """``url`` stripped and resolved against an ``xml:base`` in effect; None if empty.

    A URL that cannot be resolved stays as found, so normalisation can name it when it skips the entry.
    """
    value = (url or "").strip()
    if not value:
        return None
    return (join_url(base, value) or value) if base else value


def feed_base(candidates: Iterable[str | None]) -> str | None:
    """The first well-formed of a feed's base candidates (its alternate links, then its ``xml:base``):
    the base for relative links when an entry has none of its own."""
    return next((url for url in candidates if url and is_reference(url)), None)


# --- one entry -------------------------------------------------------------------------------------


@dataclass(slots=True)
class EntryParts:
    """What one entry yields while its elements are read; ``to_entry`` makes the same choices on both paths.

    Dates follow feedparser's rule (a later element wins); the title is the first one found (a
    ``media:title`` only when there is no other); candidates for links and images keep document order.
    ``atom``, ``utf8`` and ``mend`` describe the document, for the fast path's reading of text (``mend``:
    it may hold text that :func:`repaired` changes).
    """

    base: str | None = None
    atom: bool = False
    utf8: bool = False
    mend: bool = False
    title: str | None = None
    title_is_html: bool = False
    media_title: tuple[str, bool] | None = None
    alternates: list[str] = field(default_factory=list)
    other_links: list[str] = field(default_factory=list)
    permalink: str | None = None
    rich: tuple[str, str | None] | None = None
    plain: tuple[str, str | None] | None = None
    summary: tuple[str, str | None] | None = None
    summary_is_text: bool = False
    summary_seen: bool = False
    has_content: bool = False
    published: str | None = None
    updated: str | None = None
    enclosure_images: list[str] = field(default_factory=list)
    media_images: list[str] = field(default_factory=list)
    thumbnails: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    def set_title(self, value: str | None, is_html: bool) -> None:
        if value and self.title is None:
            self.title, self.title_is_html = value, is_html

    def add_link(self, href: str | None, rel: str | None) -> None:
        if not href:
            return
        rel = (rel or "alternate").strip().lower()
        if rel == "alternate":
            self.alternates.append(href)
        elif rel not in _NOT_ENTRY_LINKS:
            self.other_links.append(href)

    def add_content(self, value: str | None, is_html: bool, base: str | None) -> None:
        """Content is kept per kind, the first of each kind winning (feedparser lists them in order)."""
        if value and is_html and self.rich is None:
            self.rich = (value, base)
        elif value and not is_html and self.plain is None:
            self.plain = (value, base)

    def set_summary(self, value: str | None, is_html: bool, base: str | None) -> None:
        if value:
            self.summary, self.summary_is_text = (value, base), not is_html

    def add_enclosure(self, url: str | None, mime: str | None) -> None:
        # feedparser gives a link without type "text/html"; that says nothing about an enclosure.
        if url and mime and mime.strip().lower() == "text/html":
            mime = None
        if url and is_image(mime, None, url):
            self.enclosure_images.append(url)

    def add_media(self, url: str | None, mime: str | None, medium: str | None) -> None:
        if url and is_image(mime, medium, url):
            self.media_images.append(url)

    def to_entry(self) -> RawEntry:
        summary, summary_base, summary_format = self._summary()
        images = self.enclosure_images + self.media_images + self.thumbnails
        return RawEntry(
            link=self._link(),
            title=self._title(),
            summary=summary,
            published=pick_date(self.published, self.updated),
            image=images[0] if images else None,
            tags=tuple(dict.fromkeys(self.tags)),
            base_url=summary_base or self.base,
            summary_format=summary_format,
        )

    def _title(self) -> str | None:
        """The title as HTML: one read as plain text is escaped (normalisation decodes it once)."""
        title, is_html = (
            (self.title, self.title_is_html) if self.title else (self.media_title or (None, False))
        )
        if title is None or is_html:
            return title
        return html.escape(title, quote=False)

    def _link(self) -> str | None:
        """The first well-formed of: the alternate links, else the other links, else a permalink guid
        that is an http(s) URL. When none is well-formed, the first of them, so normalisation can say
        why it skips the entry; a broken guid beside a good link costs nothing."""
        candidates = self.alternates or self.other_links
        if self.permalink and _URL.match(self.permalink):
            candidates = [*candidates, self.permalink]
        if len(candidates) > 1:  # one candidate is the answer either way
            for candidate in candidates:
                if is_reference(candidate):
                    return candidate
        return candidates[0] if candidates else None

    def _summary(self) -> tuple[str | None, str | None, Literal["html", "text"]]:
        """Rich content (content:encoded, Atom html/xhtml) over the summary, over plain-text content."""
        if self.rich:
            return self.rich[0], self.rich[1], "html"
        if self.summary:
            return self.summary[0], self.summary[1], "text" if self.summary_is_text else "html"
        if self.plain:
            return self.plain[0], self.plain[1], "text"
        return None, None, "html"


def kept(entries: Iterable[RawEntry]) -> tuple[RawEntry, ...]:
    """Entries with a link, a title or a summary; a broken feed can leave shells with none of them."""
    return tuple(entry for entry in entries if entry.link or entry.title or entry.summary)


def is_image(mime: str | None, medium: str | None, url: str) -> bool:
    """Whether a media reference is an image: by medium, else by MIME type, else by the URL's extension."""
    if medium and medium.strip():
        return medium.strip().lower() == "image"
    if mime and mime.strip():
        return mime.strip().lower().startswith("image/")
    parts = split_url(url)
    return parts is not None and _IMAGE_PATH.search(parts.path) is not None


# --- dates -----------------------------------------------------------------------------------------


def pick_date(published: str | None, updated: str | None) -> datetime | str | None:
    """The first of published/updated that parses; else the first raw string given."""
    first = parse_date(published)
    if isinstance(first, datetime):
        return first
    second = parse_date(updated)
    return second if isinstance(second, datetime) or first is None else first


def parse_date(raw: str | None) -> datetime | str | None:
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
