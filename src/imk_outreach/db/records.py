"""Read-only queries for the records people read: who got which edition, why rows wait or failed."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select

from imk_outreach.db.tables import UTCDateTime, editions, outbox, subscribers


@dataclass(frozen=True)
class OutboxRecord:
    """One outbox row as a person reads it: the recipient's address (None once erased) and, for a row
    read per subscriber, the edition's campaign. ``updated_at`` of a ``sent`` row is when it went out."""

    id: int
    edition_id: int
    channel: str
    email: str | None
    language: str
    state: str
    attempts: int
    next_attempt_at: datetime
    updated_at: datetime
    reply: str | None
    error: str | None
    message_id: str | None
    campaign: str | None = None


_COLUMNS = (
    outbox.c.id,
    outbox.c.edition_id,
    outbox.c.channel,
    subscribers.c.email,
    outbox.c.language,
    outbox.c.state,
    outbox.c.attempts,
    outbox.c.next_attempt_at,
    outbox.c.updated_at,
    outbox.c.reply,
    outbox.c.error,
    outbox.c.message_id,
)


def _record(row: Any, campaign: str | None = None) -> OutboxRecord:
    return OutboxRecord(
        id=row.id,
        edition_id=row.edition_id,
        channel=row.channel,
        email=row.email,
        language=row.language,
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        updated_at=row.updated_at,
        reply=row.reply,
        error=row.error,
        message_id=row.message_id,
        campaign=campaign,
    )


def iter_edition_deliveries(
    conn: Connection, edition_id: int, state: str | None = None, batch: int = 1000
) -> Iterator[OutboxRecord]:
    """The edition's outbox rows in queue order, streamed in batches by id (memory stays flat for a
    campaign of 100,000); rows of erased subscribers come with ``email`` None."""
    last = 0
    while True:
        query = (
            select(*_COLUMNS)
            .select_from(outbox.outerjoin(subscribers, subscribers.c.id == outbox.c.subscriber_id))
            .where(outbox.c.edition_id == edition_id, outbox.c.id > last)
            .order_by(outbox.c.id)
            .limit(batch)
        )
        if state is not None:
            query = query.where(outbox.c.state == state)
        rows = conn.execute(query).all()
        yield from (_record(row) for row in rows)
        if len(rows) < batch:
            return
        last = rows[-1].id


def rows_per_language(conn: Connection, edition_id: int, channel: str) -> dict[str, int]:
    """The edition's rows on ``channel`` per language, counted in SQL (one row per language)."""
    query = (
        select(outbox.c.language, func.count())
        .where(outbox.c.edition_id == edition_id, outbox.c.channel == channel)
        .group_by(outbox.c.language)
    )
    return {str(language): int(count) for language, count in conn.execute(query)}


def first_in_states(
    conn: Connection, edition_id: int, channel: str, states: Sequence[str], limit: int
) -> list[OutboxRecord]:
    """The edition's first ``limit`` rows on ``channel`` in ``states`` (queue order)."""
    query = (
        select(*_COLUMNS)
        .select_from(outbox.outerjoin(subscribers, subscribers.c.id == outbox.c.subscriber_id))
        .where(
            outbox.c.edition_id == edition_id, outbox.c.channel == channel, outbox.c.state.in_(list(states))
        )
        .order_by(outbox.c.id)
        .limit(limit)
    )
    return [_record(row) for row in conn.execute(query)]


def subscriber_deliveries(conn: Connection, subscriber_id: int) -> list[OutboxRecord]:
    """Every outbox row of one subscriber, newest edition first, with the edition's campaign (a
    person gets one row per edition and channel: few)."""
    query = (
        select(*_COLUMNS, editions.c.campaign)
        .select_from(
            outbox.join(subscribers, subscribers.c.id == outbox.c.subscriber_id).join(
                editions, editions.c.id == outbox.c.edition_id
            )
        )
        .where(outbox.c.subscriber_id == subscriber_id)
        .order_by(outbox.c.edition_id.desc(), outbox.c.id.desc())
    )
    return [_record(row, row.campaign) for row in conn.execute(query)]


def retry_errors(conn: Connection) -> Iterator[tuple[str | None, int, datetime]]:
    """Rows waiting for a retry, per error text: (error, rows, earliest next attempt). Grouped in SQL
    first, so a campaign of 100,000 waiting for one unreachable server is one row here."""
    query = (
        select(outbox.c.error, func.count(), func.min(outbox.c.next_attempt_at))
        .where(outbox.c.state == "retry", outbox.c.post_key.is_(None))  # mail only: posts report apart
        .group_by(outbox.c.error)
    )
    for error, count, at in conn.execute(query):
        moment = UTCDateTime().process_result_value(at, conn.dialect)  # aware UTC on both dialects
        assert moment is not None  # a group has at least one row
        yield error, int(count), moment


def count_queued(conn: Connection) -> int:
    """Rows queued and never tried (queued after a pass began, or released unsent)."""
    query = (
        select(func.count())
        .select_from(outbox)
        .where(outbox.c.state == "queued", outbox.c.post_key.is_(None))
    )
    return int(conn.execute(query).scalar_one())


def count_to_attempt(conn: Connection, due_by: datetime) -> int:
    """Rows a delivery pass that takes what is due by ``due_by`` has still to try: those due by then
    and those in flight (claimed, not settled yet, by any worker)."""
    query = (
        select(func.count())
        .select_from(outbox)
        .where(
            outbox.c.post_key.is_(None),
            or_(
                and_(outbox.c.state.in_(["queued", "retry"]), outbox.c.next_attempt_at <= due_by),
                outbox.c.state == "sending",
            ),
        )
    )
    return int(conn.execute(query).scalar_one())
