"""The Source protocol and the registry of adapters (built-ins register like third parties would)."""

from __future__ import annotations

import functools
from importlib import import_module
from importlib.metadata import entry_points
from typing import Protocol

from imk_outreach.models import Document, ParseResult, SourceSpec

ENTRY_POINT_GROUP = "imk_outreach.sources"

_BUILTIN = {
    "rss": "imk_outreach.sources.rss:RssSource",
    "html": "imk_outreach.sources.html:HtmlSource",
    "jsonfeed": "imk_outreach.sources.jsonfeed:JsonFeedSource",
    "manual": "imk_outreach.sources.manual:ManualSource",
}


class Source(Protocol):
    """Reads the entries of one fetched document.

    :param doc: the fetched bytes with their base URL and content type.
    :param spec: the configured source (selectors for ``html``, language, ...).
    :returns: the entries read, and warnings for flaws that did not stop reading.
    :raises SourceError: the document cannot be read at all (wrong format, unsafe XML, ...).
    """

    def parse(self, doc: Document, spec: SourceSpec) -> ParseResult: ...


def charset_of(content_type: str | None) -> str | None:
    """The ``charset`` parameter of a Content-Type header, if any (it wins over a document's own
    declaration where the format says so)."""
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip(" \"'"):
            return value.strip(" \"'")
    return None


@functools.cache
def _registry() -> dict[str, str]:
    """type name -> "module:attr"; scanning installed distributions is slow, so it happens once."""
    targets = dict(_BUILTIN)
    targets.update({ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)})
    return targets


def known_types() -> list[str]:
    """Every source type name: the built-ins plus any registered through the entry-point group."""
    return sorted(_registry())


@functools.cache
def get_source(type_name: str) -> Source:
    """The adapter for ``type_name`` (adapters are stateless, so one instance serves every source).

    :raises KeyError: no adapter of that name.
    """
    module_name, _, attr = _registry()[type_name].partition(":")
    return getattr(import_module(module_name), attr)()  # type: ignore[no-any-return]
