"""Which items an edition takes, per section. Pure: the items, the edition's date and what earlier
editions sent come in; nothing is read or written.

Rules, per section in campaign order:

- an item is a candidate when it carries any of the section's ``tags`` (no tags: any item) and comes
  from any of its ``sources`` (``item.source`` or any of ``item.sources``; no sources: any source);
- it was published within ``since`` before the edition's ``date`` (no ``since``: no lower bound) and not
  after ``date`` (an item dated in the future waits for a later edition);
- it is not excluded, was not sent by an earlier edition of the campaign (``already_sent`` holds item
  ids) and is not placed in an earlier section of this edition;
- newest first, equal dates by id, so the order never depends on the input order;
- pinned items (by canonical URL, in pin order) come first whatever the tags, sources or dates say, but
  never when excluded, already sent or placed earlier. Pins always stay, even past ``max``; the rest
  fill up to ``max``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence, Set
from datetime import datetime

from imk_outreach.models import Campaign, EditionSection, NewsItem, Selection


def select_sections(
    campaign: Campaign, items: Sequence[NewsItem], date: datetime, already_sent: Set[str]
) -> tuple[EditionSection, ...]:
    """The items of each section of ``campaign`` for an edition dated ``date``.

    :param items: candidates (any superset of what can match; order does not matter).
    :param date: the edition's date, timezone-aware like every ``published_at``.
    :param already_sent: ids of items sent by earlier editions of this campaign; never picked again.
    """
    ordered = _newest_first(items)
    by_url: dict[str, NewsItem] = {}
    for item in ordered:
        by_url.setdefault(item.url, item)
    placed: set[str] = set(already_sent)
    sections = []
    for section in campaign.sections:
        chosen = _section_items(section.select, ordered, by_url, date, placed)
        placed.update(item.id for item in chosen)
        sections.append(EditionSection(section.id, section.heading, chosen))
    return tuple(sections)


def count_new(sections: Iterable[EditionSection], already_sent: Set[str] = frozenset()) -> int:
    """How many distinct items of ``sections`` were not sent before (what ``min_items`` is compared with).

    Selection never picks an item of ``already_sent``, so for its output this is the number of items.
    """
    return len({item.id for section in sections for item in section.items} - set(already_sent))


def _section_items(
    select: Selection,
    ordered: Sequence[NewsItem],
    by_url: dict[str, NewsItem],
    date: datetime,
    placed: set[str],
) -> tuple[NewsItem, ...]:
    excluded = set(select.exclude)
    pinned = _pinned(select, by_url, excluded, placed)
    taken = {item.id for item in pinned}
    room = None if select.max is None else max(select.max - len(pinned), 0)
    rest = [
        item
        for item in ordered
        if item.id not in placed
        and item.id not in taken
        and item.url not in excluded
        and _matches(select, item, date)
    ]
    return (*pinned, *(rest if room is None else rest[:room]))


def _pinned(
    select: Selection, by_url: dict[str, NewsItem], excluded: set[str], placed: set[str]
) -> list[NewsItem]:
    pinned: list[NewsItem] = []
    for url in select.pin:
        item = by_url.get(url)
        if item is None or url in excluded or item.id in placed or any(p.id == item.id for p in pinned):
            continue
        pinned.append(item)
    return pinned


def _matches(select: Selection, item: NewsItem, date: datetime) -> bool:
    if select.tags and not set(select.tags).intersection(item.tags):
        return False
    if select.sources and not set(select.sources).intersection((item.source, *item.sources)):
        return False
    if item.published_at > date:
        return False
    return select.since is None or item.published_at >= date - select.since


def _newest_first(items: Iterable[NewsItem]) -> list[NewsItem]:
    """Newest first; equal dates ordered by id so the result does not depend on the input order."""
    return sorted(sorted(items, key=lambda item: item.id), key=lambda item: item.published_at, reverse=True)
