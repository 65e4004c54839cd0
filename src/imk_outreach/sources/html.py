"""The ``html`` source: scrape a listing page with CSS selectors (beautifulsoup4 + soupsieve).

``spec.selectors`` keys: ``item`` (required: one element per news entry), ``title``, ``link``,
``summary``, ``date``, ``image``. A value is a CSS selector inside the item element:

- ``sel`` takes the element's content: its text for ``date``, its inner HTML for ``title`` and
  ``summary`` (normalisation strips or sanitises it); for ``link`` the element's own ``href`` or the first
  ``a[href]`` inside it, for ``image`` its own ``src`` or the first ``img[src]`` inside it;
- ``sel@attr`` takes an attribute of the selected element (``time@datetime``, ``h3 a@href``, ``img@src``);
- ``@attr`` takes an attribute of the item element itself.

Defaults when a key is not given: ``link`` is the first ``a[href]`` of the item (or the item itself when
it is a link); ``title`` is the first heading (``h1``-``h6``) of the item, else the text of that link;
``date`` is the first ``time[datetime]`` when there is one; ``summary`` and ``image`` stay empty.
"""

from __future__ import annotations

import codecs
import html
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

import soupsieve
from bs4 import BeautifulSoup, Tag
from bs4.dammit import EncodingDetector

from imk_outreach.errors import SourceError
from imk_outreach.models import Document, ParseResult, RawEntry, SourceSpec
from imk_outreach.sources.base import charset_of
from imk_outreach.sources.urls import join_url

log = logging.getLogger(__name__)

SELECTOR_KEYS = ("item", "title", "link", "summary", "date", "image")
_ATTR_RE = re.compile(r"^(?P<css>.*?)\s*@(?P<attr>[A-Za-z_:][-\w:.]*)\s*$", re.DOTALL)
_CHARSET_RE = re.compile(r"""charset\s*=\s*["']?([-\w.:]+)""", re.IGNORECASE)
# WHATWG Encoding Standard: these labels mean windows-1252 on the web.
_WEB_ALIASES = {"iso8859-1": "windows-1252", "ascii": "windows-1252"}
_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")


@dataclass(frozen=True)
class Selector:
    """One configured selector: ``css`` inside the item ('' = the item itself), ``attr`` or None."""

    key: str
    raw: str
    css: str
    attr: str | None


class HtmlSource:
    """Reads news entries from an HTML listing page (see the module docstring for selectors)."""

    def parse(self, doc: Document, spec: SourceSpec) -> ParseResult:
        """The entries of ``doc``, one per element matching the ``item`` selector.

        :raises SourceError: the ``item`` selector is missing, a selector is not valid CSS, an unknown
            selector key is configured, or the ``item`` selector matches nothing.
        """
        selectors = parse_selectors(spec)
        charset = charset_of(doc.content_type) or _declared_charset(doc.body)
        soup = BeautifulSoup(doc.body, "lxml", from_encoding=charset)
        base = _base_url(soup, doc.base_url)
        item_sel = selectors["item"]
        elements = soup.select(item_sel.css) if item_sel.css else []
        if not elements:
            raise SourceError(
                spec.name,
                spec.url,
                f"selector {item_sel.raw!r} matched nothing on the page; has the page layout changed?",
            )
        entries = tuple(_entry(element, selectors) for element in elements)
        warnings = _unmatched_warnings(entries, selectors)
        for warning in warnings:
            log.warning("source %s: %s", spec.name, warning)
        return ParseResult(entries=entries, warnings=warnings, base_url=base)


def parse_selectors(spec: SourceSpec) -> dict[str, Selector]:
    """The configured selectors, checked: ``item`` present, known keys only, valid CSS.

    :raises SourceError: naming the missing or unknown key, or the selector that is not valid CSS.
    """
    unknown = sorted(set(spec.selectors) - set(SELECTOR_KEYS))
    if unknown:
        raise SourceError(
            spec.name, spec.url, f"selectors: unknown key {unknown[0]!r} (known: {', '.join(SELECTOR_KEYS)})"
        )
    if not str(spec.selectors.get("item") or "").strip():
        raise SourceError(spec.name, spec.url, "selectors: the required key 'item' is missing")
    result = {key: _selector(spec, key, str(value)) for key, value in spec.selectors.items()}
    if result["item"].attr is not None:
        raise SourceError(
            spec.name, spec.url, f"selectors.item: {result['item'].raw!r} must select elements, not '@attr'"
        )
    return result


def _selector(spec: SourceSpec, key: str, raw: str) -> Selector:
    """Split ``sel@attr`` and compile the CSS part so syntax errors show before any page is read."""
    text = raw.strip()
    match = _ATTR_RE.match(text)
    css, attr = (match["css"].strip(), match["attr"]) if match else (text, None)
    if css:
        try:
            soupsieve.compile(css)
        except (soupsieve.SelectorSyntaxError, NotImplementedError, ValueError) as exc:
            reason = str(exc).splitlines()[0]
            raise SourceError(
                spec.name, spec.url, f"selectors.{key}: {raw!r} is not a valid CSS selector ({reason})"
            ) from exc
    return Selector(key=key, raw=raw, css=css, attr=attr)


def _declared_charset(body: bytes) -> str | None:
    """The charset a page declares itself (BOM, ``<meta charset>``, ``<meta http-equiv>``)."""
    declared = EncodingDetector.find_declared_encoding(body, is_html=True)
    return _codec(declared) if declared else None


def _codec(label: str) -> str | None:
    """A charset label as a Python codec name, with the web's aliases (``iso-8859-1`` is windows-1252)."""
    try:
        name = codecs.lookup(label).name
    except LookupError:
        log.warning("unknown charset %r; detecting the encoding from the page", label)
        return None
    return _WEB_ALIASES.get(name, name)


def _base_url(soup: BeautifulSoup, doc_base: str) -> str:
    """``<base href>`` resolved against the document URL, else (also when it is no valid URL) the
    document URL. Links and images stay as found: normalisation resolves and checks them."""
    base = soup.find("base", href=True)
    if isinstance(base, Tag):
        href = str(base.get("href") or "").strip()
        joined = join_url(doc_base, href) if href else None
        if joined:
            return joined
        if href:
            log.warning(
                "page %s: <base href=%r> is not a valid URL; links resolve against the page", doc_base, href
            )
    return doc_base


def _entry(element: Tag, selectors: Mapping[str, Selector]) -> RawEntry:
    """One item element as a RawEntry; values not found are None."""
    return RawEntry(
        link=_link(element, selectors.get("link")),
        title=_title(element, selectors.get("title")),
        summary=_html_value(element, selectors.get("summary")),
        published=_date(element, selectors.get("date")),
        image=_image(element, selectors.get("image")),
        summary_format="html",
    )


def _target(element: Tag, sel: Selector) -> Tag | None:
    """The element a selector points at inside an item (the item itself for ``@attr``)."""
    found = element.select_one(sel.css) if sel.css else element
    return found if isinstance(found, Tag) else None


def _attr(tag: Tag | None, name: str) -> str | None:
    """An attribute value, stripped; None when absent or empty (multi-valued ones joined)."""
    if tag is None:
        return None
    value = tag.get(name)
    if value is None:
        return None
    text = " ".join(value) if isinstance(value, list) else str(value)
    return text.strip() or None


def _find(tag: Tag, names: str | tuple[str, ...], with_attr: str | None = None) -> Tag | None:
    """The first descendant named ``names`` (that has ``with_attr``, if given)."""
    for found in tag.find_all(names):
        if isinstance(found, Tag) and (with_attr is None or found.has_attr(with_attr)):
            return found
    return None


def _text(tag: Tag | None) -> str | None:
    if tag is None:
        return None
    return " ".join(tag.get_text(" ").split()) or None


def _inner_html(tag: Tag | None) -> str | None:
    if tag is None:
        return None
    return tag.decode_contents().strip() or None


def _link(element: Tag, sel: Selector | None) -> str | None:
    if sel is None:
        return _attr(element, "href") or _attr(_find(element, "a", "href"), "href")
    target = _target(element, sel)
    if sel.attr is not None:
        return _attr(target, sel.attr)
    if target is None:
        return None
    return _attr(target, "href") or _attr(_find(target, "a", "href"), "href")


def _title(element: Tag, sel: Selector | None) -> str | None:
    """Title as HTML (an attribute value is escaped), so normalisation decodes entities exactly once."""
    if sel is None:
        link = element if element.name == "a" else _find(element, "a", "href")
        return _inner_html(_find(element, _HEADINGS) or link)
    return _html_value(element, sel)


def _html_value(element: Tag, sel: Selector | None) -> str | None:
    """Inner HTML of the selected element, or an attribute value escaped as HTML text."""
    if sel is None:
        return None
    target = _target(element, sel)
    if sel.attr is None:
        return _inner_html(target)
    value = _attr(target, sel.attr)
    return html.escape(value, quote=False) if value is not None else None


def _date(element: Tag, sel: Selector | None) -> str | None:
    """The raw date string (normalisation parses it); an attribute such as ``datetime`` when configured."""
    if sel is None:
        return _attr(_find(element, "time", "datetime"), "datetime")
    target = _target(element, sel)
    return _attr(target, sel.attr) if sel.attr is not None else _text(target)


def _image(element: Tag, sel: Selector | None) -> str | None:
    if sel is None:
        return None
    target = _target(element, sel)
    if sel.attr is not None:
        return _attr(target, sel.attr)
    if target is None:
        return None
    return _attr(target, "src") or _attr(_find(target, "img", "src"), "src")


_FIELDS = {"link": "link", "title": "title", "summary": "summary", "date": "published", "image": "image"}


def _unmatched_warnings(entries: tuple[RawEntry, ...], selectors: Mapping[str, Selector]) -> tuple[str, ...]:
    """A warning for each configured selector that found nothing in any item (likely a layout change)."""
    warnings = []
    for key, field_name in _FIELDS.items():
        sel = selectors.get(key)
        if sel is not None and all(getattr(entry, field_name) is None for entry in entries):
            warnings.append(f"selector {key} {sel.raw!r} found nothing in any of the {len(entries)} items")
    return tuple(warnings)
