"""Subscribers, their lists and the hashes of erased addresses."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    case,
    exists,
    func,
    literal,
    select,
    update,
)

from imk_outreach.db.consent import ConsentEvent, add_consent_events
from imk_outreach.db.engine import chunks, insert_for
from imk_outreach.db.outbox import EDITION_CANCELLED
from imk_outreach.db.tables import (
    editions,
    erased_addresses,
    outbox,
    subscriber_lists,
    subscribers,
)
from imk_outreach.models import (
    Subscriber,
)

# -- subscribers -----------------------------------------------------------------------------------


def email_key(email: str) -> str:
    """The form an address is unique in: whitespace trimmed, lower case."""
    return email.strip().lower()


def _subscriber_values(sub: Subscriber, now: datetime) -> dict[str, Any]:
    return {
        "email": sub.email.strip(),
        "email_key": email_key(sub.email),
        "name": sub.name,
        "language": sub.language,
        "status": sub.status,
        "updated_at": now,
        "signup_at": sub.signup_at,
        "confirmed_at": sub.confirmed_at,
        "unsubscribed_at": sub.unsubscribed_at,
        "consent_version": sub.consent_version,
        "ip_hash": sub.ip_hash,
        "source": sub.source,
        "bounce_reason": sub.bounce_reason,
    }


def find_subscriber(conn: Connection, email: str) -> Subscriber | None:
    row = conn.execute(select(subscribers).where(subscribers.c.email_key == email_key(email))).first()
    return _subscriber_from_row(conn, row) if row is not None else None


def get_subscriber(conn: Connection, subscriber_id: int) -> Subscriber | None:
    row = conn.execute(select(subscribers).where(subscribers.c.id == subscriber_id)).first()
    return _subscriber_from_row(conn, row) if row is not None else None


def _subscriber_from_row(conn: Connection, row: Any, lists: list[str] | None = None) -> Subscriber:
    if lists is None:
        query = select(subscriber_lists.c.list).where(subscriber_lists.c.subscriber_id == row.id)
        lists = sorted(conn.execute(query).scalars())
    return Subscriber(
        id=row.id,
        email=row.email,
        name=row.name,
        language=row.language,
        lists=tuple(lists),
        status=row.status,
        created_at=row.created_at,
        signup_at=row.signup_at,
        confirmed_at=row.confirmed_at,
        unsubscribed_at=row.unsubscribed_at,
        consent_version=row.consent_version,
        ip_hash=row.ip_hash,
        source=row.source,
        bounce_reason=row.bounce_reason,
        token_nonce=row.token_nonce,
    )


def save_subscriber(conn: Connection, sub: Subscriber, now: datetime) -> Subscriber:
    """Insert (``sub.id`` None) or update a subscriber and replace their lists; returns it with its id.

    :raises sqlalchemy.exc.IntegrityError: inserting an address that exists (compare case-insensitively
        with :func:`find_subscriber` first).
    """
    values = _subscriber_values(sub, now)
    if sub.id is None:
        new_id = conn.execute(
            subscribers.insert()
            .values(created_at=now, token_nonce=new_token_nonce(), **values)
            .returning(subscribers.c.id)
        ).scalar_one()
        sub_id = int(new_id)
    else:
        sub_id = sub.id
        conn.execute(update(subscribers).where(subscribers.c.id == sub_id).values(**values))
        conn.execute(subscriber_lists.delete().where(subscriber_lists.c.subscriber_id == sub_id))
    if sub.lists:
        conn.execute(
            subscriber_lists.insert(),
            [{"subscriber_id": sub_id, "list": name} for name in sorted(set(sub.lists))],
        )
    stored = get_subscriber(conn, sub_id)
    assert stored is not None
    return stored


def new_token_nonce() -> str:
    """A fresh random nonce for a row (every insert gets one; it is never reused)."""
    return secrets.token_hex(16)


def delete_subscriber(conn: Connection, subscriber_id: int) -> None:
    """Delete the row; its lists and consent events go with it (ON DELETE CASCADE) and its outbox rows
    lose the reference (SET NULL)."""
    conn.execute(subscribers.delete().where(subscribers.c.id == subscriber_id))


# -- erasure: what of a person is left outside their row -------------------------------------------


def outbox_texts_of(conn: Connection, subscriber_id: int) -> list[tuple[int, str | None, str | None]]:
    """``(id, reply, error)`` of every outbox row of a subscriber (servers echo the address in replies)."""
    query = (
        select(outbox.c.id, outbox.c.reply, outbox.c.error)
        .where(outbox.c.subscriber_id == subscriber_id)
        .order_by(outbox.c.id)
    )
    return [(int(i), reply, error) for i, reply, error in conn.execute(query)]


def rewrite_outbox_texts(
    conn: Connection, texts: Sequence[tuple[int, str | None, str | None]], now: datetime
) -> None:
    """Store these ``(id, reply, error)``; the rest of each row (state, attempts, times) stays."""
    for row_id, reply, error in texts:
        statement = update(outbox).where(outbox.c.id == row_id)
        conn.execute(statement.values(reply=reply, error=error, updated_at=now))


def take_back_in_flight(conn: Connection, subscriber_id: int, now: datetime) -> int:
    """The subscriber's rows a worker holds (``sending``) go back to the queue as if released: the
    worker's outcome, which may carry the address in the server's reply, is then no longer recorded
    (it only writes rows it still holds), and the next claim finds the recipient gone and cancels them.
    Returns the rows taken back (a row of a cancelled edition ends ``cancelled``, as a release does)."""
    cancelled = outbox.c.edition_id.in_(select(editions.c.id).where(editions.c.state == "cancelled"))
    statement = (
        update(outbox)
        .where(outbox.c.subscriber_id == subscriber_id, outbox.c.state == "sending")
        .values(
            state=case(
                (cancelled, literal("cancelled")),
                (outbox.c.attempts > 1, literal("retry")),
                else_=literal("queued"),
            ),
            error=case((cancelled, literal(EDITION_CANCELLED)), else_=outbox.c.error),
            attempts=outbox.c.attempts - 1,
            claimed_by=None,
            lease_until=None,
            updated_at=now,
        )
    )
    return int(conn.execute(statement).rowcount or 0)


def remember_erased(conn: Connection, email_hash: str, now: datetime) -> None:
    statement = insert_for(conn, erased_addresses).values(email_hash=email_hash, erased_at=now)
    conn.execute(statement.on_conflict_do_nothing(index_elements=["email_hash"]))


def is_erased(conn: Connection, email_hash: str) -> bool:
    query = select(erased_addresses.c.email_hash).where(erased_addresses.c.email_hash == email_hash)
    return conn.execute(query).first() is not None


def iter_subscribers(
    conn: Connection, list_name: str | None = None, statuses: Sequence[str] = (), batch: int = 1000
) -> Iterator[Subscriber]:
    """Subscribers in id order, streamed in batches (memory stays flat however long the list is)."""
    last = 0
    while True:
        query = select(subscribers).where(subscribers.c.id > last).order_by(subscribers.c.id).limit(batch)
        if list_name is not None:
            query = query.where(
                exists().where(
                    and_(
                        subscriber_lists.c.subscriber_id == subscribers.c.id,
                        subscriber_lists.c.list == list_name,
                    )
                )
            )
        if statuses:
            query = query.where(subscribers.c.status.in_(list(statuses)))
        rows = conn.execute(query).all()
        if not rows:
            return
        lists = _lists_of(conn, [row.id for row in rows])
        for row in rows:
            yield _subscriber_from_row(conn, row, lists.get(row.id, []))
        last = rows[-1].id


def _lists_of(conn: Connection, ids: Sequence[int]) -> dict[int, list[str]]:
    result: dict[int, list[str]] = {}
    query = (
        select(subscriber_lists.c.subscriber_id, subscriber_lists.c.list)
        .where(subscriber_lists.c.subscriber_id.in_(list(ids)))
        .order_by(subscriber_lists.c.subscriber_id, subscriber_lists.c.list)
    )
    for sub_id, name in conn.execute(query):
        result.setdefault(sub_id, []).append(name)
    return result


def recipients_by_language(conn: Connection, list_name: str) -> dict[str, int]:
    """How many confirmed subscribers of ``list_name`` read each language."""
    query = (
        select(subscribers.c.language, func.count())
        .join(subscriber_lists, subscriber_lists.c.subscriber_id == subscribers.c.id)
        .where(subscriber_lists.c.list == list_name, subscribers.c.status == "confirmed")
        .group_by(subscribers.c.language)
    )
    return {language: int(count) for language, count in conn.execute(query)}


def subscribers_by_id(conn: Connection, ids: Sequence[int]) -> dict[int, Subscriber]:
    """The subscribers with these ids, with their lists (for a claimed batch)."""
    rows = conn.execute(select(subscribers).where(subscribers.c.id.in_(list(ids)))).all()
    lists = _lists_of(conn, [row.id for row in rows])
    return {row.id: _subscriber_from_row(conn, row, lists.get(row.id, [])) for row in rows}


def mark_bounced(conn: Connection, subscriber_ids: Sequence[int], reason: str, now: datetime) -> None:
    """Mark these subscribers bounced, each with a ``bounce`` consent event (once: one already bounced
    is left as it is)."""
    newly = _not_yet(conn, subscriber_ids, "bounced")
    if newly:
        conn.execute(
            update(subscribers)
            .where(subscribers.c.id.in_(newly))
            .values(status="bounced", bounce_reason=reason, updated_at=now)
        )
        add_consent_events(
            conn, [ConsentEvent(i, "bounce", now, source="delivery", note=reason) for i in newly]
        )


def _not_yet(conn: Connection, ids: Sequence[int], status: str) -> list[int]:
    """Those of ``ids`` whose status is not ``status`` yet."""
    found: list[int] = []
    for part in chunks(list(ids)):
        query = select(subscribers.c.id).where(
            subscribers.c.id.in_(list(part)), subscribers.c.status != status
        )
        found += conn.execute(query).scalars().all()
    return sorted(found)
