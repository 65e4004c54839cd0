"""News items and the health of their sources."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    exists,
    func,
    select,
    update,
)

from imk_outreach.db.engine import chunks, insert_for
from imk_outreach.db.tables import (
    item_sources,
    item_tags,
    items,
    sources,
)
from imk_outreach.models import (
    NewsItem,
    SourceHealth,
    Translation,
    Validators,
)

# -- items -----------------------------------------------------------------------------------------


def content_hash(item: NewsItem) -> str:
    """A hash over what a reader sees; an estimated date is not content."""
    payload = {
        "url": item.url,
        "title": item.title,
        "summary": item.summary_html,
        "published": None if item.date_estimated else item.published_at.isoformat(),
        "language": item.language,
        "image": item.image,
        "translations": {k: [t.title, t.summary_html] for k, t in sorted(item.translations.items())},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _existing(conn: Connection, ids: Sequence[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for chunk in chunks(ids):
        query = select(items.c.id, items.c.source, items.c.content_hash).where(items.c.id.in_(chunk))
        found.update({row.id: row for row in conn.execute(query)})
    return found


def _item_row(item: NewsItem, digest: str, now: datetime, image_source: str | None) -> dict[str, Any]:
    return {
        "id": item.id,
        "url": item.url,
        "source": item.source,
        "title": item.title,
        "summary_html": item.summary_html,
        "published_at": item.published_at,
        "date_estimated": item.date_estimated,
        "language": item.language,
        "image": item.image,
        "image_source": image_source,
        "translations": {
            k: {"title": t.title, "summary_html": t.summary_html} for k, t in item.translations.items()
        },
        "content_hash": digest,
        "first_seen_at": now,
        "updated_at": now,
    }


def upsert_items(
    conn: Connection,
    source: str,
    batch: Sequence[NewsItem],
    now: datetime,
    image_sources: Mapping[str, str] | None = None,
) -> tuple[int, int]:
    """Store the items one source delivered; returns (new, updated).

    An item already known (same canonical URL, from any source) is not added again; the source is
    remembered beside it and its tags are merged. Its text is updated only from the source that first
    brought it, so two sources with different teasers for one URL do not flip it back and forth.

    :param image_sources: item id -> the URL its stored image (``item.image``) was made from.
    """
    image_sources = image_sources or {}
    existing = _existing(conn, [item.id for item in batch])
    new_rows: list[dict[str, Any]] = []
    changed: list[tuple[NewsItem, str, str | None]] = []
    tag_rows: list[dict[str, Any]] = []
    source_rows: list[dict[str, Any]] = []
    for item in batch:
        digest = content_hash(item)
        known = existing.get(item.id)
        if known is None:
            new_rows.append(_item_row(item, digest, now, image_sources.get(item.id)))
        elif known.source == source and known.content_hash != digest:
            changed.append((item, digest, image_sources.get(item.id)))
        tag_rows.extend({"item_id": item.id, "tag": tag} for tag in item.tags)
        source_rows.append({"item_id": item.id, "source": source, "first_seen_at": now})
    for chunk in chunks(new_rows, 200):
        conn.execute(insert_for(conn, items).on_conflict_do_nothing(index_elements=["id"]), list(chunk))
    for item, digest, image_source in changed:
        _update_item(conn, item, digest, now, image_source)
    _insert_ignoring_duplicates(conn, item_tags, tag_rows, ["item_id", "tag"])
    _insert_ignoring_duplicates(conn, item_sources, source_rows, ["item_id", "source"])
    return len(new_rows), len(changed)


def _update_item(
    conn: Connection, item: NewsItem, digest: str, now: datetime, image_source: str | None
) -> None:
    row = _item_row(item, digest, now, image_source)
    for key in ("id", "first_seen_at", "source"):
        row.pop(key)
    if item.date_estimated:  # keep the first-seen date an undated item was given
        row.pop("published_at")
    conn.execute(update(items).where(items.c.id == item.id).values(**row))


@dataclass(frozen=True)
class StoredImage:
    """What is stored about a known item's image: the source that owns the item's text, the stored
    copy (``media/<name>`` or None) and the URL that copy was made from."""

    source: str
    image: str | None
    image_source: str | None


def stored_images(conn: Connection, ids: Sequence[str]) -> dict[str, StoredImage]:
    """The image state of the known items among ``ids`` (unknown ids are left out)."""
    found: dict[str, StoredImage] = {}
    columns = (items.c.id, items.c.source, items.c.image, items.c.image_source)
    for chunk in chunks(list(ids)):
        for row in conn.execute(select(*columns).where(items.c.id.in_(chunk))):
            found[row.id] = StoredImage(row.source, row.image, row.image_source)
    return found


def _insert_ignoring_duplicates(
    conn: Connection, table: Any, rows: list[dict[str, Any]], keys: list[str]
) -> None:
    for chunk in chunks(rows):
        conn.execute(insert_for(conn, table).on_conflict_do_nothing(index_elements=keys), list(chunk))


def list_items(
    conn: Connection,
    since: datetime | None = None,
    tags: Iterable[str] = (),
    sources_: Iterable[str] = (),
    limit: int | None = None,
) -> list[NewsItem]:
    """Items newest first, optionally published at or after ``since``, with any of ``tags``, from any of
    ``sources_`` (the source that brought an item or any other that had it too)."""
    query = select(items).order_by(items.c.published_at.desc(), items.c.id)
    if since is not None:
        query = query.where(items.c.published_at >= since)
    tag_list, source_list = list(tags), list(sources_)
    if tag_list:
        query = query.where(
            exists().where(and_(item_tags.c.item_id == items.c.id, item_tags.c.tag.in_(tag_list)))
        )
    if source_list:
        query = query.where(
            exists().where(and_(item_sources.c.item_id == items.c.id, item_sources.c.source.in_(source_list)))
        )
    if limit is not None:
        query = query.limit(limit)
    return _load_items(conn, query)


def get_items(conn: Connection, ids: Sequence[str]) -> dict[str, NewsItem]:
    """The stored items with these ids (missing ids are left out)."""
    found: dict[str, NewsItem] = {}
    for chunk in chunks(list(ids)):
        found.update(
            (item.id, item) for item in _load_items(conn, select(items).where(items.c.id.in_(chunk)))
        )
    return found


def known_tags(conn: Connection) -> set[str]:
    """Every tag some stored item carries."""
    return set(conn.execute(select(item_tags.c.tag).distinct()).scalars())


def _load_items(conn: Connection, query: Any) -> list[NewsItem]:
    rows = list(conn.execute(query))
    ids = [row.id for row in rows]
    tag_map = _related(conn, item_tags.c.tag, ids)
    source_map = _related(conn, item_sources.c.source, ids, order=item_sources.c.first_seen_at)
    return [_item_from_row(row, tag_map.get(row.id, []), source_map.get(row.id, [])) for row in rows]


def _related(conn: Connection, column: Any, ids: Sequence[str], order: Any = None) -> dict[str, list[str]]:
    table = column.table
    result: dict[str, list[str]] = {}
    for chunk in chunks(ids):
        query = select(table.c.item_id, column).where(table.c.item_id.in_(chunk))
        query = query.order_by(table.c.item_id, order if order is not None else column, column)
        for item_id, value in conn.execute(query):
            result.setdefault(item_id, []).append(value)
    return result


def _item_from_row(row: Any, tags: list[str], item_source_names: list[str]) -> NewsItem:
    translations = {
        lang: Translation(title=t["title"], summary_html=t["summary_html"])
        for lang, t in row.translations.items()
    }
    others = [name for name in item_source_names if name != row.source]
    return NewsItem(
        id=row.id,
        url=row.url,
        source=row.source,
        title=row.title,
        summary_html=row.summary_html,
        published_at=row.published_at,
        language=row.language,
        tags=tuple(sorted(tags)),
        image=row.image,
        date_estimated=row.date_estimated,
        translations=translations,
        sources=(row.source, *others),
    )


def count_items(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(items)).scalar_one())


# -- source health ---------------------------------------------------------------------------------


def get_source_health(conn: Connection, name: str) -> SourceHealth | None:
    row = conn.execute(select(sources).where(sources.c.name == name)).first()
    return _health_from_row(row) if row is not None else None


def all_source_health(conn: Connection) -> dict[str, SourceHealth]:
    return {row.name: _health_from_row(row) for row in conn.execute(select(sources))}


def _health_from_row(row: Any) -> SourceHealth:
    return SourceHealth(
        name=row.name,
        type=row.type,
        url=row.url,
        last_run_at=row.last_run_at,
        last_status=row.last_status,
        last_success_at=row.last_success_at,
        last_error=row.last_error,
        last_error_at=row.last_error_at,
        last_warning=row.last_warning,
        consecutive_failures=row.consecutive_failures,
        items_seen=row.items_seen,
        validators=Validators(etag=row.etag, last_modified=row.last_modified),
    )


def save_source_health(conn: Connection, health: SourceHealth) -> None:
    """Insert or replace the stored state of one source."""
    values = {
        "type": health.type,
        "url": health.url,
        "etag": health.validators.etag,
        "last_modified": health.validators.last_modified,
        "last_run_at": health.last_run_at,
        "last_status": health.last_status,
        "last_success_at": health.last_success_at,
        "last_error": health.last_error,
        "last_error_at": health.last_error_at,
        "last_warning": health.last_warning,
        "consecutive_failures": health.consecutive_failures,
        "items_seen": health.items_seen,
    }
    statement = insert_for(conn, sources).values(name=health.name, **values)
    conn.execute(statement.on_conflict_do_update(index_elements=["name"], set_=values))


def count_items_by_source(conn: Connection) -> dict[str, int]:
    """How many stored items each source has had (including items another source brought first)."""
    query = select(item_sources.c.source, func.count()).group_by(item_sources.c.source)
    return {name: int(count) for name, count in conn.execute(query)}
