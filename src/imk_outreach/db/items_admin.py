"""Items for staff: search with paging, and excluding an item from editions (``items.excluded_at``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, String, and_, cast, exists, func, or_, select, update

from imk_outreach.db.engine import chunks
from imk_outreach.db.items import get_items
from imk_outreach.db.tables import item_sources, item_tags, items
from imk_outreach.models import NewsItem


@dataclass(frozen=True)
class ItemRow:
    """A stored item as staff see it: the item, and who excluded it from editions when (None: it is
    in)."""

    item: NewsItem
    excluded_at: datetime | None = None
    excluded_by: str | None = None

    @property
    def excluded(self) -> bool:
        return self.excluded_at is not None


@dataclass(frozen=True)
class ItemQuery:
    """What to look for; every field left empty matches everything.

    ``text``: a part of the title, summary, URL or a translation (case is ignored; on SQLite only for
    ASCII letters). ``source``: the source that brought the item or any other that had it too.
    ``language``: the item's own language. ``since``/``until``: published at or after / before.
    """

    text: str | None = None
    source: str | None = None
    tag: str | None = None
    language: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    include_excluded: bool = True


def _conditions(query: ItemQuery) -> list[Any]:
    found: list[Any] = []
    if query.text:
        needle = query.text.lower()
        columns = (items.c.title, items.c.summary_html, items.c.url)
        matches = [func.lower(c).contains(needle, autoescape=True) for c in columns]
        # Translations are stored as JSON text, non-ASCII letters written \u00fc: look for that form.
        in_json = json.dumps(needle)[1:-1]
        matches.append(func.lower(cast(items.c.translations, String)).contains(in_json, autoescape=True))
        found.append(or_(*matches))
    if query.source:
        found.append(
            exists().where(and_(item_sources.c.item_id == items.c.id, item_sources.c.source == query.source))
        )
    if query.tag:
        found.append(exists().where(and_(item_tags.c.item_id == items.c.id, item_tags.c.tag == query.tag)))
    if query.language:
        found.append(items.c.language == query.language)
    if query.since is not None:
        found.append(items.c.published_at >= query.since)
    if query.until is not None:
        found.append(items.c.published_at < query.until)
    if not query.include_excluded:
        found.append(items.c.excluded_at.is_(None))
    return found


def search_items(
    conn: Connection, query: ItemQuery, limit: int = 100, offset: int = 0
) -> tuple[list[ItemRow], int]:
    """One page of the matching items, newest first, and how many match in all."""
    where = _conditions(query)
    total = conn.execute(select(func.count()).select_from(items).where(*where)).scalar_one()
    page = conn.execute(
        select(items.c.id, items.c.excluded_at, items.c.excluded_by)
        .where(*where)
        .order_by(items.c.published_at.desc(), items.c.id)
        .limit(limit)
        .offset(offset)
    ).all()
    loaded = get_items(conn, [row.id for row in page])
    rows = [ItemRow(loaded[row.id], row.excluded_at, row.excluded_by) for row in page if row.id in loaded]
    return rows, int(total)


def get_item_row(conn: Connection, item_id: str) -> ItemRow | None:
    """The stored item with this id, or None."""
    row = conn.execute(select(items.c.excluded_at, items.c.excluded_by).where(items.c.id == item_id)).first()
    if row is None:
        return None
    item = get_items(conn, [item_id])[item_id]
    return ItemRow(item, row.excluded_at, row.excluded_by)


def item_for_url(conn: Connection, item_id: str, canonical_url: str) -> NewsItem | None:
    """The stored item with this id or this canonical URL (ids derive from the URL), or None."""
    query = select(items.c.id).where(or_(items.c.id == item_id, items.c.url == canonical_url)).limit(1)
    found = conn.execute(query).scalar()
    return get_items(conn, [found]).get(found) if found is not None else None


def set_excluded(conn: Connection, item_id: str, at: datetime | None, by: str | None) -> bool:
    """Exclude the item (``at`` set) or take it back in (``at`` None); False when there is no such item."""
    result = conn.execute(update(items).where(items.c.id == item_id).values(excluded_at=at, excluded_by=by))
    return bool(result.rowcount)


def excluded_among(conn: Connection, ids: Sequence[str]) -> set[str]:
    """The ids among ``ids`` whose items are excluded from editions."""
    found: set[str] = set()
    for chunk in chunks(list(ids)):
        query = select(items.c.id).where(items.c.id.in_(chunk), items.c.excluded_at.is_not(None))
        found.update(conn.execute(query).scalars())
    return found
