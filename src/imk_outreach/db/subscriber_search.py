"""Subscribers for staff: search by a part of the address or name, status and list, with paging."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, exists, func, or_, select

from imk_outreach.db.people import subscribers_by_id
from imk_outreach.db.tables import subscriber_lists, subscribers
from imk_outreach.models import Subscriber


@dataclass(frozen=True)
class SubscriberQuery:
    """Every field left empty matches everyone. ``text``: a part of the address or the name (case is
    ignored; for the name on SQLite only for ASCII letters)."""

    text: str | None = None
    status: str | None = None
    list_name: str | None = None


def _conditions(query: SubscriberQuery) -> list[Any]:
    found: list[Any] = []
    if query.text:
        needle = query.text.strip().lower()
        found.append(
            or_(
                subscribers.c.email_key.contains(needle, autoescape=True),
                func.lower(subscribers.c.name).contains(needle, autoescape=True),
            )
        )
    if query.status:
        found.append(subscribers.c.status == query.status)
    if query.list_name:
        found.append(
            exists().where(
                and_(
                    subscriber_lists.c.subscriber_id == subscribers.c.id,
                    subscriber_lists.c.list == query.list_name,
                )
            )
        )
    return found


def search_subscribers(
    conn: Connection, query: SubscriberQuery, limit: int, offset: int
) -> tuple[list[Subscriber], int]:
    """One page of the matching subscribers in address order, and how many match in all."""
    where = _conditions(query)
    total = conn.execute(select(func.count()).select_from(subscribers).where(*where)).scalar_one()
    ids = list(
        conn.execute(
            select(subscribers.c.id)
            .where(*where)
            .order_by(subscribers.c.email_key, subscribers.c.id)
            .limit(limit)
            .offset(offset)
        ).scalars()
    )
    found = subscribers_by_id(conn, ids)
    return [found[i] for i in ids if i in found], int(total)
