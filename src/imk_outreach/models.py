"""Plain data passed between the stages. No I/O here.

Every datetime is timezone-aware; stored and compared in UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

SourceType = Literal["rss", "html", "jsonfeed", "manual"]


@dataclass(frozen=True)
class SourceSpec:
    """One configured source, with its URL already absolute (http(s) URL or absolute local path)."""

    name: str
    type: str
    url: str
    language: str
    tags: tuple[str, ...] = ()
    every: timedelta | None = None
    selectors: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_remote(self) -> bool:
        return self.url.startswith(("http://", "https://"))


@dataclass(frozen=True)
class Validators:
    """What a source answered last time, for a conditional GET."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class Document:
    """The raw bytes of one fetch.

    ``base_url`` is what relative links resolve against (the final URL after redirects, or a
    ``file://`` URI). ``files`` holds (name, bytes) pairs when a local folder was read (manual items).
    """

    source: str
    base_url: str
    body: bytes
    content_type: str | None = None
    validators: Validators = Validators()
    files: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class RawText:
    """Title and summary of an entry in one language, exactly as the source gave them."""

    title: str | None
    summary: str | None


@dataclass(frozen=True)
class RawEntry:
    """One entry as an adapter read it, before normalisation.

    ``title`` may hold entities or markup; ``summary`` is untrusted HTML (or plain text, or Markdown for
    manual items when ``summary_format`` says so). ``published`` is a parsed aware datetime when the
    adapter could parse it, else the raw string (normalisation tries German and other formats), else None.
    ``base_url`` overrides the document's base for this entry (xml:base). ``translations`` holds other
    languages (manual items).
    """

    link: str | None
    title: str | None
    summary: str | None = None
    published: datetime | str | None = None
    image: str | None = None
    tags: tuple[str, ...] = ()
    base_url: str | None = None
    language: str | None = None
    translations: Mapping[str, RawText] = field(default_factory=dict)
    summary_format: Literal["html", "text", "markdown"] = "html"


@dataclass(frozen=True)
class ParseResult:
    """What an adapter read from a document; ``warnings`` name flaws of a feed that parsed only in part."""

    entries: tuple[RawEntry, ...]
    warnings: tuple[str, ...] = ()
    base_url: str | None = None


@dataclass(frozen=True)
class Translation:
    title: str
    summary_html: str


@dataclass(frozen=True)
class NewsItem:
    """A normalised news item. ``id`` derives from the canonical ``url``.

    ``date_estimated`` is True when the source gave no usable date and ``published_at`` is the time the
    item was first seen.
    """

    id: str
    url: str
    source: str
    title: str
    summary_html: str
    published_at: datetime
    language: str
    tags: tuple[str, ...] = ()
    image: str | None = None
    date_estimated: bool = False
    translations: Mapping[str, Translation] = field(default_factory=dict)
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceHealth:
    """Per-source state kept between gathers."""

    name: str
    type: str = ""
    url: str = ""
    last_run_at: datetime | None = None
    last_status: str | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_warning: str | None = None
    consecutive_failures: int = 0
    items_seen: int = 0
    validators: Validators = Validators()


@dataclass(frozen=True)
class SourceReport:
    """The outcome of gathering one source (the ``gather --json`` per-source object)."""

    name: str
    status: Literal["ok", "not_modified", "error"]
    new: int = 0
    updated: int = 0
    error: str | None = None
    warning: str | None = None
    seen: int = 0
