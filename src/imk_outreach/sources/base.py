"""The Source protocol and the registry of adapters (built-ins register like third parties would)."""

from __future__ import annotations

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


def known_types() -> list[str]:
    """Every source type name: the built-ins plus any registered through the entry-point group."""
    names = set(_BUILTIN)
    names.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def get_source(type_name: str) -> Source:
    """The adapter for ``type_name``.

    :raises KeyError: no adapter of that name.
    """
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == type_name:
            return ep.load()()  # type: ignore[no-any-return]
    target = _BUILTIN[type_name]
    module_name, _, attr = target.partition(":")
    return getattr(import_module(module_name), attr)()  # type: ignore[no-any-return]
