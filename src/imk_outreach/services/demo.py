"""Grouping for the demo tour: the sample items by newsletter section and language."""

from __future__ import annotations

from collections.abc import Sequence

from imk_outreach.models import NewsItem

# The sections of the sample monthly newsletter (DESIGN.md); the first whose tags match wins.
DEMO_SECTIONS = {
    "innovation": "Innovation fields / Innovationsfelder",
    "media": "Media & creative industries / Medien & Kreativwirtschaft",
    "finance": "FinTech & BFI",
    "cluster": "Cluster & events / Cluster & Veranstaltungen",
}
_SECTION_TAGS = {
    "finance": {"fintech", "bfi", "blockchain", "finance", "banking"},
    "media": {"film", "tv", "games", "animation", "vfx", "media", "medien", "xr", "vr", "ar"},
    "innovation": {"ki", "ai", "iot", "security", "sicherheit", "xr", "design", "usability", "smart-city"},
}


def section_of(item: NewsItem) -> str:
    tags = set(item.tags)
    for section in ("finance", "media", "innovation"):
        if tags & _SECTION_TAGS[section]:
            return section
    return "cluster"


def group_for_demo(
    items: Sequence[NewsItem], languages: Sequence[str]
) -> list[tuple[tuple[str, str], list[NewsItem]]]:
    """Items grouped by (section, language) in section order, then configured language order."""
    groups: dict[tuple[str, str], list[NewsItem]] = {}
    for item in items:
        groups.setdefault((section_of(item), item.language), []).append(item)
    order = {lang: i for i, lang in enumerate(languages)}
    sections = list(DEMO_SECTIONS)
    keys = sorted(groups, key=lambda k: (sections.index(k[0]), order.get(k[1], len(order)), k[1]))
    return [(key, groups[key]) for key in keys]
