"""Editions (a campaign's frozen selection) and app settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    delete,
    select,
    update,
)

from imk_outreach.db.engine import insert_for
from imk_outreach.db.items import get_items
from imk_outreach.db.tables import (
    app_settings,
    campaign_runs,
    edition_items,
    edition_messages,
    editions,
)
from imk_outreach.models import (
    Edition,
    EditionSection,
    NewsItem,
)

# -- editions --------------------------------------------------------------------------------------

# States in which an edition's items count as sent: they are never repeated by the same campaign.
SENT_STATES = ("queued", "sending", "sent")
# Open: not yet queued; "held" is a late edition waiting for a person to release it.
OPEN_STATES = ("draft", "approved", "held")
# Being delivered: what ``cancel`` stops. A cancelled edition stays cancelled (its items may be picked
# again by the next edition of the campaign: they are not in SENT_STATES).
CANCELLABLE_STATES = ("queued", "sending")


def create_edition(conn: Connection, edition: Edition) -> int:
    """Store a new edition with its frozen selection; returns its id (``edition.id`` is ignored)."""
    values = _edition_values(edition)
    new_id = conn.execute(editions.insert().values(**values).returning(editions.c.id)).scalar_one()
    _store_selection(conn, int(new_id), edition.sections)
    return int(new_id)


def update_edition(conn: Connection, edition: Edition) -> None:
    """Replace an edition's selection, state, hash and approval fields."""
    conn.execute(update(editions).where(editions.c.id == edition.id).values(**_edition_values(edition)))
    conn.execute(edition_items.delete().where(edition_items.c.edition_id == edition.id))
    _store_selection(conn, edition.id, edition.sections)


def _edition_values(edition: Edition) -> dict[str, Any]:
    return {
        "campaign": edition.campaign,
        "created_at": edition.created_at,
        "date": edition.date,
        "state": edition.state,
        "sections": [{"id": s.id, "heading": dict(s.heading)} for s in edition.sections],
        "content_hash": edition.content_hash,
        "approved_by": edition.approved_by,
        "approved_at": edition.approved_at,
        "approved_hash": edition.approved_hash,
        "skip_reason": edition.skip_reason,
    }


def _store_selection(conn: Connection, edition_id: int, sections: Sequence[EditionSection]) -> None:
    rows = [
        {"edition_id": edition_id, "item_id": item.id, "section": section.id, "position": position}
        for section in sections
        for position, item in enumerate(section.items)
    ]
    if rows:
        conn.execute(edition_items.insert(), rows)


def get_edition(conn: Connection, edition_id: int) -> Edition | None:
    row = conn.execute(select(editions).where(editions.c.id == edition_id)).first()
    return _edition_from_row(conn, row) if row is not None else None


def list_editions(conn: Connection, campaign: str | None = None, states: Sequence[str] = ()) -> list[Edition]:
    """Editions newest first, optionally of one campaign and in some states."""
    query = select(editions).order_by(editions.c.id.desc())
    if campaign is not None:
        query = query.where(editions.c.campaign == campaign)
    if states:
        query = query.where(editions.c.state.in_(list(states)))
    return [_edition_from_row(conn, row) for row in conn.execute(query).all()]


def _edition_from_row(conn: Connection, row: Any) -> Edition:
    query = (
        select(edition_items.c.item_id, edition_items.c.section)
        .where(edition_items.c.edition_id == row.id)
        .order_by(edition_items.c.section, edition_items.c.position)
    )
    placed = list(conn.execute(query))
    found = get_items(conn, [item_id for item_id, _ in placed])
    by_section: dict[str, list[NewsItem]] = {}
    for item_id, section in placed:
        if item_id in found:
            by_section.setdefault(section, []).append(found[item_id])
    sections = tuple(
        EditionSection(s["id"], s["heading"], tuple(by_section.get(s["id"], []))) for s in row.sections
    )
    return Edition(
        id=row.id,
        campaign=row.campaign,
        created_at=row.created_at,
        date=row.date,
        sections=sections,
        state=row.state,
        content_hash=row.content_hash,
        approved_by=row.approved_by,
        approved_at=row.approved_at,
        approved_hash=row.approved_hash,
        skip_reason=row.skip_reason,
    )


def sent_item_ids(conn: Connection, campaign: str) -> set[str]:
    """Ids of the items that earlier editions of ``campaign`` sent (or are sending)."""
    query = (
        select(edition_items.c.item_id)
        .join(editions, editions.c.id == edition_items.c.edition_id)
        .where(editions.c.campaign == campaign, editions.c.state.in_(SENT_STATES))
    )
    return set(conn.execute(query).scalars())


def set_edition_state(
    conn: Connection, edition_id: int, state: str, list_name: str | None = None, reason: str | None = None
) -> None:
    """Move an edition to ``state`` (``reason`` into ``skip_reason``). A cancelled edition is final:
    a worker settling the last batch it had claimed must not mark it ``sent``."""
    values: dict[str, Any] = {"state": state}
    if list_name is not None:
        values["list_name"] = list_name
    if reason is not None:
        values["skip_reason"] = reason
    statement = update(editions).where(editions.c.id == edition_id, editions.c.state != "cancelled")
    conn.execute(statement.values(**values))


def delete_edition(conn: Connection, edition_id: int) -> None:
    """Remove an edition that never went out, with its selection and frozen messages; a campaign run
    that composed it keeps its record without it (the scheduler then skips that run)."""
    conn.execute(
        update(campaign_runs).where(campaign_runs.c.edition_id == edition_id).values(edition_id=None)
    )
    conn.execute(delete(edition_items).where(edition_items.c.edition_id == edition_id))
    conn.execute(delete(edition_messages).where(edition_messages.c.edition_id == edition_id))
    conn.execute(delete(editions).where(editions.c.id == edition_id))


def lock_edition(conn: Connection, edition_id: int) -> str | None:
    """Lock an edition's row for the rest of the transaction and return its state (None: no such
    edition). SQLite has no row locks: there the transaction takes the database's write lock first, so
    call this as the transaction's first statement."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    query = select(editions.c.state).where(editions.c.id == edition_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).scalar_one_or_none()


def edition_lists(conn: Connection, edition_ids: Sequence[int]) -> dict[int, str]:
    """The mailing list each edition was queued for."""
    query = select(editions.c.id, editions.c.list_name).where(editions.c.id.in_(list(edition_ids)))
    return {edition_id: name for edition_id, name in conn.execute(query) if name is not None}


# -- app settings ----------------------------------------------------------------------------------


def get_setting(conn: Connection, key: str) -> str | None:
    return conn.execute(select(app_settings.c.value).where(app_settings.c.key == key)).scalar_one_or_none()


def set_setting_once(conn: Connection, key: str, value: str) -> str:
    """Store ``value`` under ``key`` unless one is there already; returns the stored value (so two
    processes starting at once agree on one)."""
    conn.execute(
        insert_for(conn, app_settings)
        .values(key=key, value=value)
        .on_conflict_do_nothing(index_elements=["key"])
    )
    stored = get_setting(conn, key)
    assert stored is not None
    return stored
