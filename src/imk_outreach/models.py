"""Plain data passed between the stages. No I/O here.

Every datetime is timezone-aware; stored and compared in UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

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


# -- campaigns and editions --------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Which items a section takes: any of ``tags``, from any of ``sources`` (empty = no restriction),
    published within ``since`` of the edition's date, newest first, at most ``max``. ``pin`` URLs come
    first whatever the rules say; ``exclude`` URLs never appear."""

    tags: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    since: timedelta | None = None
    max: int | None = None
    pin: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class Section:
    id: str
    heading: Mapping[str, str]
    select: Selection


@dataclass(frozen=True)
class Campaign:
    """A campaign file, validated. Texts are per language; ``subject`` and ``intro`` are Jinja
    templates rendered with the edition."""

    name: str
    path: str
    kind: str = "newsletter"
    list: str = "newsletter"
    languages: tuple[str, ...] = ("de", "en")
    schedule: Mapping[str, str] = field(default_factory=dict)
    late_policy: str = "hold"  # a run later than ``grace``: "send" anyway, or "hold" for a person
    grace: timedelta = timedelta(hours=6)
    approval: str = "required"
    min_items: int = 1
    template: str = "newsletter/default.mjml.j2"
    subject: Mapping[str, str] = field(default_factory=dict)
    intro: Mapping[str, str] = field(default_factory=dict)
    preheader: Mapping[str, str] = field(default_factory=dict)
    sections: tuple[Section, ...] = ()
    # kind social: the config.yaml channels it posts to, ``new_items`` (a post per new item) or None
    # (a digest post per edition), and a template per platform ("" or missing: the shipped default)
    channels: tuple[str, ...] = ()
    trigger: str | None = None
    templates: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EditionSection:
    id: str
    heading: Mapping[str, str]
    items: tuple[NewsItem, ...]


@dataclass(frozen=True)
class Edition:
    """One run of a campaign: the frozen items per section.

    ``state``: ``draft`` -> ``approved`` (-> ``queued`` -> ``sent`` in later steps) or ``skipped``.
    ``content_hash`` covers everything rendered from it; ``approved_hash`` is the hash that was approved,
    so an approval is void as soon as the two differ.
    """

    id: int
    campaign: str
    created_at: datetime
    date: datetime
    sections: tuple[EditionSection, ...]
    state: str = "draft"
    content_hash: str | None = None
    approved_by: str | None = None
    approved_at: datetime | None = None
    approved_hash: str | None = None
    skip_reason: str | None = None

    @property
    def items(self) -> tuple[NewsItem, ...]:
        return tuple(item for section in self.sections for item in section.items)

    @property
    def approval_valid(self) -> bool:
        return self.approved_hash is not None and self.approved_hash == self.content_hash


@dataclass(frozen=True)
class Brand:
    """What every email shows around the content (from config.yaml)."""

    name: Mapping[str, str]
    imprint: Mapping[str, str]
    public_url: str
    sender_name: str
    sender_email: str
    social_links: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RenderedEmail:
    """One edition in one language, compiled once. ``html`` and ``text`` hold per-recipient
    placeholders (see ``render.email.PLACEHOLDERS``) that are filled per recipient without recompiling.
    ``fallbacks`` are the ids of items shown in their original language because a translation is missing.
    """

    language: str
    subject: str
    preheader: str
    html: str
    text: str
    fallbacks: tuple[str, ...] = ()


# -- social posts -----------------------------------------------------------------------------------

PLATFORMS = ("x", "mastodon", "bluesky", "linkedin")


@dataclass(frozen=True)
class Facet:
    """A link (or hashtag) inside a Bluesky post: UTF-8 byte offsets into ``Post.text``.
    ``kind`` is ``link`` (``value`` the full URL) or ``tag`` (``value`` the tag without '#')."""

    byte_start: int
    byte_end: int
    kind: str
    value: str


@dataclass(frozen=True)
class LinkCard:
    """The item's link preview (Bluesky ``app.bsky.embed.external``, LinkedIn article)."""

    url: str
    title: str
    description: str


@dataclass(frozen=True)
class PostImage:
    """An image to attach: the local copy in the media store, its MIME type and the alt text."""

    path: str
    mime_type: str
    alt: str


@dataclass(frozen=True)
class Post:
    """One social post for one channel, rendered and counted by the platform's rule.

    ``key`` identifies the post within its edition and channel: the item id (``trigger: new_items``)
    or ``digest``. ``language`` is ``de``, ``en`` or ``both`` (one bilingual post). ``length`` is the
    platform's count (X: weighted, URLs 23; Mastodon: URLs 23; Bluesky: graphemes), ``limit`` its maximum.
    ``shortened``: the teaser was cut to fit. ``fallbacks``: ids of items shown in their original language.
    """

    channel: str
    platform: str
    language: str
    key: str
    text: str
    length: int
    limit: int
    link: str | None = None
    facets: tuple[Facet, ...] = ()
    card: LinkCard | None = None
    image: PostImage | None = None
    shortened: bool = False
    fallbacks: tuple[str, ...] = ()
    template: str = ""


# -- subscribers and delivery ------------------------------------------------------------------------

SUBSCRIBER_STATES = ("pending", "confirmed", "unsubscribed", "bounced")


@dataclass(frozen=True)
class Subscriber:
    """A subscriber with the evidence of their consent. ``email`` is kept as given; uniqueness is
    case-insensitive. ``ip_hash`` is a keyed hash, never the address itself."""

    email: str
    language: str
    lists: tuple[str, ...] = ()
    name: str = ""
    status: str = "pending"
    id: int | None = None
    created_at: datetime | None = None
    signup_at: datetime | None = None
    confirmed_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    consent_version: str | None = None
    ip_hash: str | None = None
    source: str | None = None
    bounce_reason: str | None = None
    # Random per stored row (set when the row is inserted), part of every link token: a link of an
    # erased person stays dead even if the same address comes back under a reused id.
    token_nonce: str | None = None


OUTBOX_STATES = ("queued", "sending", "posting", "retry", "sent", "failed", "cancelled", "unknown")


@dataclass(frozen=True)
class Delivery:
    """One outbox row: an edition to one recipient on one channel, or (``edition_id`` None, channel
    ``confirm``) a confirmation mail. ``state`` in OUTBOX_STATES."""

    id: int
    edition_id: int | None
    channel: str
    subscriber_id: int
    language: str
    state: str = "queued"
    attempts: int = 0
    next_attempt_at: datetime | None = None
    claimed_by: str | None = None
    lease_until: datetime | None = None
    message_id: str | None = None
    reply: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class ProcessInfo:
    """A live (or lately live) process of this installation: the scheduler, a standby or a worker.

    ``name`` is ``host:pid:start`` (start: the process's start time as the OS counts it), so a pid the
    OS hands out again never looks like the process that is gone.
    """

    name: str
    role: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    state: str = "running"
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CampaignRun:
    """One scheduled run of a campaign that fell due. ``state``: ``waiting`` (a draft waits for
    approval), ``queued``, ``held`` (late: waits for a person), ``skipped`` (too few items),
    ``failed`` (with ``note``)."""

    id: int
    campaign: str
    due_at: datetime
    deadline: datetime
    state: str
    edition_id: int | None = None
    missed: int = 0
    note: str | None = None
    notified_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
