"""Turn raw entries into NewsItems: canonical URL and id, plain-text title, sanitised summary, UTC date, tags.

Pure functions; the clock comes in as ``now``.

Decisions:

- **Canonical URL** (:func:`canonical_url`): http(s) only; scheme and host lower-cased, IDN hosts in
  punycode, default ports, fragment and tracking parameters dropped; other parameters keep their order
  and spelling. Characters that are not allowed in a URL (spaces, umlauts) are percent-encoded in path
  and query, existing ``%xx`` escapes are kept, so ``/ä`` and ``/%C3%A4`` give the same id.
- **Summary HTML** (:func:`sanitize_html`): the allow-list is ``p br a strong b em i u ul ol li
  blockquote h3 h4 h5 h6``; ``a`` keeps ``href`` and ``title`` and gets ``rel="noopener noreferrer"``.
  No images: images in feed bodies are often third-party tracking pixels (we send no open pixels, and
  neither may the sources), and the item's lead image travels separately in ``NewsItem.image``, placed by
  the template. ``h1``/``h2`` become paragraphs so a summary cannot outrank the template's headings.
  Links must be http, https or mailto; relative links are resolved against the base URL first.
  Script, style, iframe, object, embed, svg, math, form and similar elements are dropped with their
  content.
- **Keyword tags** (:func:`match_tags`): case-insensitive, Unicode-aware. A keyword of 4 or more
  characters matches at the start of a word, so German compounds count (``Film`` matches
  ``Filmförderung``, ``Dreh`` matches ``Dreharbeiten``, but ``Kurzfilm`` does not match). A shorter
  keyword (usually an acronym: ``KI``, ``XR``, ``VR``) must be a whole word: ``KI`` matches ``KI`` and
  ``KI-Projekt`` but not ``Kinder``. A trailing ``*`` (``KI*``) asks for a prefix match at any length.
- **Language codes** are reduced to the primary subtag in lower case (``de-DE`` -> ``de``).
"""

from __future__ import annotations

import functools
import hashlib
import html
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Literal
from urllib.parse import SplitResult, quote, unquote, urlunsplit

import nh3
from markdown_it import MarkdownIt

from imk_outreach.models import NewsItem, ParseResult, RawEntry, RawText, SourceSpec, Translation
from imk_outreach.sources.dates import parse_date
from imk_outreach.sources.urls import (
    DEFAULT_PORTS,
    ascii_host,
    is_reference,
    join_url,
    shown,
    split_url,
    url_problem,
    web_url,
)

log = logging.getLogger(__name__)

SummaryFormat = Literal["html", "text", "markdown"]

ALLOWED_TAGS = frozenset(
    {"p", "br", "a", "strong", "b", "em", "i", "u", "ul", "ol", "li", "blockquote", "h3", "h4", "h5", "h6"}
)
ALLOWED_ATTRIBUTES: Mapping[str, set[str]] = {"a": {"href", "title"}}
ALLOWED_URL_SCHEMES = frozenset({"http", "https", "mailto"})
# Dropped together with everything inside them, not just unwrapped to their text.
_DROP_WITH_CONTENT = frozenset(
    {
        "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "noscript",
        "noembed", "template", "svg", "math", "form", "select", "textarea", "button", "title", "head",
    }
)  # fmt: skip

_TRACKING_EXACT = frozenset(
    {
        "fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "_hsenc", "_hsmi", "igshid", "yclid",
        "ref_src", "wt_mc", "wt_mc_id", "wt.mc_id", "at_medium", "at_campaign",
    }
)  # fmt: skip
_TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "piwik_")
# Characters left as they are when percent-encoding path and query: RFC 3986 reserved and unreserved
# characters and "%" (so existing escapes stay).
_URL_SAFE = "/%:@!$&'()*+,;=-._~?"
_BLOCK_TAG_RE = re.compile(r"<(?=/?(?:br|p|div|li|h[1-6]|blockquote|tr|td|th)\b)", re.IGNORECASE)
_ANY_TAG = re.compile(r"<[^>]*>")
_TITLE_FROM_SUMMARY_CHARS = 80
_SHORT_KEYWORD = 4

_markdown = MarkdownIt("commonmark", {"html": False})


# --- URLs -------------------------------------------------------------------------------------------
# Every URL operation goes through sources/urls.py, whose helpers answer None instead of raising.


def absolute_url(url: str | None, base: str | None = None) -> str | None:
    """``url`` resolved against ``base`` if the result is a web URL (see sources/urls.py), else None.

    Scheme and host are lower-cased; nothing else changes (image URLs keep their query).
    """
    parts = web_url(url, base) if url else None
    if parts is None:
        return None
    return urlunsplit(
        (parts.scheme.lower(), _lower_host(parts.netloc), parts.path, parts.query, parts.fragment)
    )


def image_url(url: str | None, base: str | None = None) -> str | None:
    """The URL of an item's image: as :func:`absolute_url`; for a document read from disk (a ``file:``
    base) also a relative path to an image file beside it, as a ``file:`` URL. Gathering stores a copy
    of either (services/media.py), so a ``file:`` URL never reaches an edition; a document fetched over
    HTTP cannot name a local file.
    """
    resolved = absolute_url(url, base)
    if resolved is not None or not url or not base or not base.startswith("file:"):
        return resolved
    path = url.strip()
    parts = split_url(path)
    if not path or parts is None or parts.scheme or path.startswith(("/", "\\")):
        return None
    try:
        quoted = quote(path)
    except UnicodeEncodeError:  # a lone surrogate
        return None
    return join_url(base, quoted)


def _lower_host(netloc: str) -> str:
    """``netloc`` with the host part lower-cased (user info kept as written)."""
    userinfo, at, hostport = netloc.rpartition("@")
    return f"{userinfo}{at}{hostport.lower()}"


def canonical_url(url: str, base: str | None = None) -> str | None:
    """The canonical form of an http(s) link, used for the item id and de-duplication.

    :param url: the link as the source wrote it (may be relative or padded with whitespace).
    :param base: what a relative link resolves against.
    :returns: the canonical URL, or None when it is no web URL (:func:`urls.url_problem` says why).
    """
    parts = web_url(url, base)
    if parts is None:
        return None
    scheme = parts.scheme.lower()
    netloc = _canonical_netloc(scheme, parts)
    if netloc is None:
        return None
    path = quote(parts.path, safe=_URL_SAFE) or "/"
    query = _strip_tracking(parts.query)
    return urlunsplit((scheme, netloc, path, query, ""))


def _canonical_netloc(scheme: str, parts: SplitResult) -> str | None:
    """Host in lower case (IDN as punycode) and the port unless it is the scheme's default."""
    raw = parts.hostname or ""
    host = f"[{raw}]" if ":" in raw else ascii_host(raw)  # web_url checked both kinds
    if host is None:
        return None
    userinfo = parts.netloc.rpartition("@")[0]
    text = f"{userinfo}@{host}" if userinfo else host
    port = parts.port
    if port is not None and port != DEFAULT_PORTS[scheme]:
        text += f":{port}"
    return text


def _strip_tracking(query: str) -> str:
    """The query without tracking parameters; the others keep their order and spelling."""
    kept = [part for part in query.split("&") if part and not _is_tracking(part.partition("=")[0])]
    return "&".join(quote(part, safe=_URL_SAFE) for part in kept)


def _is_tracking(raw_name: str) -> bool:
    name = unquote(raw_name.replace("+", " ")).strip().lower()
    return name in _TRACKING_EXACT or name.startswith(_TRACKING_PREFIXES)


def item_id(canonical: str) -> str:
    """The stable item id for a canonical URL: the first 20 hex digits of its SHA-256."""
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:20]


# --- Text and HTML ----------------------------------------------------------------------------------


def sanitize_html(value: str, base_url: str | None) -> str:
    """Untrusted HTML reduced to the allow-list (see the module docstring), links made absolute.

    :param value: an HTML fragment from a feed or page.
    :param base_url: what relative ``href`` values resolve against; without it they are dropped.
    """
    cleaned = nh3.clean(
        _unwrap_top_headings(value),
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(_DROP_WITH_CONTENT),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(ALLOWED_URL_SCHEMES),
        url_relative=lambda link: absolute_url(link, base_url),
        link_rel="noopener noreferrer",
        strip_comments=True,
    )
    return cleaned.strip()


def _unwrap_top_headings(value: str) -> str:
    """``<h1>``/``<h2>`` become paragraphs (the template owns the top headings)."""
    return re.sub(r"<(/?)h[12](?=[\s>/])", r"<\1p", value, flags=re.IGNORECASE)


def plain_text(value: str) -> str:
    """Markup removed, entities decoded once, whitespace collapsed: for titles and excerpts.

    nh3 (a real HTML parser, in Rust) drops every tag and the content of script-like elements; a space
    goes before block-level tags first so ``<p>a</p><p>b</p>`` reads ``a b``.
    """
    if "<" not in value:  # no markup: only entities to decode
        return " ".join(html.unescape(value).split())
    spaced = _BLOCK_TAG_RE.sub(r" \g<0>", value)
    text = nh3.clean(spaced, tags=set(), clean_content_tags=set(_DROP_WITH_CONTENT), strip_comments=True)
    return " ".join(html.unescape(text).split())


def text_to_html(text: str) -> str:
    """Plain text as HTML: escaped, paragraphs at blank lines, single line breaks kept as ``<br>``."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text.replace("\r\n", "\n"))]
    return "".join(
        "<p>" + "<br>".join(html.escape(line.strip()) for line in p.splitlines()) + "</p>"
        for p in paragraphs
        if p
    )


def summary_to_html(text: str, fmt: SummaryFormat, base_url: str | None) -> str:
    """A summary as sanitised HTML.

    :param fmt: ``html`` (sanitised), ``text`` (escaped, paragraphs at blank lines) or ``markdown``
        (CommonMark with raw HTML disabled, then sanitised).
    """
    if not text.strip():
        return ""
    if fmt == "text":
        return text_to_html(text)
    if fmt == "markdown":
        return sanitize_html(_markdown.render(text), base_url)
    return sanitize_html(text, base_url)


def match_tags(text: str, rules: Mapping[str, Sequence[str]]) -> set[str]:
    """The tags whose keywords occur in ``text`` (rules from ``tagging:``; matching as in the module doc).

    :param rules: tag -> keywords, e.g. ``{"ki": ["KI", "künstliche Intelligenz"], "film": ["Film"]}``.
    :returns: the matching tag names as written in ``rules``.
    """
    return {tag for tag, keywords in rules.items() if any(_keyword_re(k).search(text) for k in keywords)}


@functools.lru_cache(maxsize=4096)
def _keyword_re(keyword: str) -> re.Pattern[str]:
    word = keyword.strip()
    prefix = word.endswith("*")
    word = word.rstrip("*").strip()
    if not word:
        return re.compile(r"(?!)")  # matches nothing
    end = "" if prefix or len(word) >= _SHORT_KEYWORD else r"(?!\w)"
    return re.compile(r"(?<!\w)" + re.escape(word) + end, re.IGNORECASE)


# --- Entries ----------------------------------------------------------------------------------------


def normalize_entry(
    entry: RawEntry,
    spec: SourceSpec,
    doc_base: str | None,
    now: datetime,
    tagging: Mapping[str, Sequence[str]],
    tz: tzinfo,
) -> NewsItem | None:
    """One raw entry as a NewsItem.

    :param doc_base: the document's base URL (``entry.base_url`` wins when set).
    :param now: the gather time; ``published_at`` when the entry has no usable date (``date_estimated``).
    :param tagging: keyword rules, tag -> keywords.
    :param tz: the zone of dates without an offset.
    :returns: the item, or None when the entry has no usable http(s) link.
    """
    base = _base(entry.base_url, doc_base)
    url = canonical_url(entry.link, base) if entry.link else None
    if url is None:
        _log_unusable_link(entry, spec, base)
        return None
    language = _language(entry.language) or spec.language
    summary_html = summary_to_html(entry.summary or "", entry.summary_format, base)
    title = _title(entry.title, summary_html) or url
    translations = _translations(entry, language, base)
    published, estimated = _published(entry.published, now, tz)
    texts = [title, _sanitized_text(summary_html)]
    texts += [t for tr in translations.values() for t in (tr.title, _sanitized_text(tr.summary_html))]
    return NewsItem(
        id=item_id(url),
        url=url,
        source=spec.name,
        title=title,
        summary_html=summary_html,
        published_at=published,
        language=language,
        tags=_tags(spec.tags, entry.tags, match_tags("\n".join(texts), tagging)),
        image=_image(entry, spec, base),
        date_estimated=estimated,
        translations=translations,
        sources=(spec.name,),
    )


def _base(own: str | None, fallback: str | None) -> str | None:
    """A base the source gave (``xml:base``, ``<base href>``, ``home_page_url``), itself resolved against
    the one it overrides; that one when it is no well-formed URL."""
    if not own or not is_reference(own):
        return fallback
    return (join_url(fallback, own) or own) if fallback else own


def _log_unusable_link(entry: RawEntry, spec: SourceSpec, base: str | None) -> None:
    """An entry without a link is logged quietly; one whose link is unusable gets a warning saying why."""
    if not entry.link or not entry.link.strip():
        log.debug("source %s: entry %s has no link, skipped", spec.name, _entry_name(entry))
        return
    reason = url_problem(entry.link, base) or "it is not an http(s) address"
    log.warning(
        "source %s: entry %s skipped: its link %s cannot be used (%s)",
        spec.name,
        _entry_name(entry),
        shown(entry.link),
        reason,
    )


def _image(entry: RawEntry, spec: SourceSpec, base: str | None) -> str | None:
    """The entry's image URL; an unusable one is left out (the item keeps everything else)."""
    url = image_url(entry.image, base)
    if url is None and entry.image and entry.image.strip():
        reason = url_problem(entry.image, base) or "it is not an http(s) address"
        log.info(
            "source %s: entry %s: image %s left out (%s)",
            spec.name,
            _entry_name(entry),
            shown(entry.image),
            reason,
        )
    return url


def _entry_name(entry: RawEntry) -> str:
    """How a log line names an entry: its plain title in quotes (cut at 60 characters)."""
    title = plain_text(entry.title or "")
    if title:
        return repr(title if len(title) <= 60 else title[:60] + "…")
    return "without a title"


def _sanitized_text(summary_html: str) -> str:
    """The text of already sanitised HTML (no script or comments left), for keyword matching only."""
    return html.unescape(_ANY_TAG.sub(" ", summary_html))


def _language(code: str | None) -> str:
    """``de-DE``/``de_DE``/``DE`` -> ``de``; empty for None."""
    return (code or "").strip().lower().replace("_", "-").partition("-")[0]


def _title(raw: str | None, summary_html: str) -> str:
    """The plain-text title; without one, the start of the summary text (cut at a word)."""
    title = plain_text(raw or "")
    if title:
        return title
    text = plain_text(summary_html)
    if len(text) <= _TITLE_FROM_SUMMARY_CHARS:
        return text
    cut = text[:_TITLE_FROM_SUMMARY_CHARS].rsplit(" ", 1)[0].rstrip(" ,;:.-–")
    return cut + "…"


def _published(value: datetime | str | None, now: datetime, tz: tzinfo) -> tuple[datetime, bool]:
    """(published_at in UTC, estimated?): a naive datetime is in ``tz``; no usable date means ``now``."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=tz)).astimezone(UTC), False
    parsed = parse_date(value, tz) if value else None
    if parsed is not None:
        return parsed, False
    return (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(UTC), True


def _translations(entry: RawEntry, language: str, base: str | None) -> dict[str, Translation]:
    """The other languages of an entry; a language with neither title nor summary is left out."""
    result: dict[str, Translation] = {}
    for code, raw in entry.translations.items():
        lang = _language(code)
        if not lang or lang == language or lang in result:
            continue
        translation = _translation(raw, entry.summary_format, base)
        if translation is not None:
            result[lang] = translation
    return result


def _translation(raw: RawText, fmt: SummaryFormat, base: str | None) -> Translation | None:
    summary_html = summary_to_html(raw.summary or "", fmt, base)
    title = _title(raw.title, summary_html)
    if not title and not summary_html:
        return None
    return Translation(title=title, summary_html=summary_html)


def _tags(spec_tags: Iterable[str], entry_tags: Iterable[str], matched: Iterable[str]) -> tuple[str, ...]:
    """Lower-cased, de-duplicated, sorted; spaces inside a tag become ``-`` (``Künstliche Intelligenz``)."""
    names = {"-".join(tag.lower().split()) for tag in (*spec_tags, *entry_tags, *matched)}
    names.discard("")
    return tuple(sorted(names))


def normalize_all(
    result: ParseResult,
    doc_base: str | None,
    spec: SourceSpec,
    now: datetime,
    tagging: Mapping[str, Sequence[str]],
    tz: tzinfo,
) -> tuple[list[NewsItem], int]:
    """Every entry of one document normalised; duplicates within the document removed (first wins).

    :param doc_base: the document's base URL; ``result.base_url`` (e.g. from ``<base href>``) wins.
    :returns: the items, and how many entries were skipped for lack of a usable link.
    """
    base = _base(result.base_url, doc_base)
    items: dict[str, NewsItem] = {}
    skipped = 0
    for entry in result.entries:
        item = normalize_entry(entry, spec, base, now, tagging, tz)
        if item is None:
            skipped += 1
        elif item.id in items:
            log.debug("source %s: duplicate entry %s ignored", spec.name, item.url)
        else:
            items[item.id] = item
    if skipped:
        log.info("source %s: %d entries without a usable link skipped", spec.name, skipped)
    return list(items.values()), skipped
