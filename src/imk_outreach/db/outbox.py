"""The outbox: one row per (edition, channel, recipient), claimed under leases."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
    update,
)

from imk_outreach.db.engine import insert_for
from imk_outreach.db.tables import (
    UTCDateTime,
    edition_messages,
    editions,
    outbox,
    subscriber_lists,
    subscribers,
)
from imk_outreach.models import (
    Delivery,
    RenderedEmail,
)

# -- outbox ----------------------------------------------------------------------------------------

# ``posting``: a social post whose request may be on its way (committed just before the call), so a
# crash leaves a row that is settled by whether a retry is safe, never posted again blindly
PENDING_STATES = ("queued", "retry", "sending", "posting")
FINAL_STATES = ("sent", "failed", "unknown", "cancelled")
# The error recorded on the rows of a cancelled edition (a recipient who left gets "recipient ...").
EDITION_CANCELLED = "edition cancelled"
# Confirmation mails: outbox rows without an edition on this channel, built when they are sent.
CONFIRM_CHANNEL = "confirm"
SUPERSEDED = "superseded by a newer sign-up"


def _of_cancelled_edition() -> Any:
    """Rows whose edition was cancelled: they must never be claimed or queued again."""
    return outbox.c.edition_id.in_(select(editions.c.id).where(editions.c.state == "cancelled"))


def _send_language(languages: Sequence[str]) -> Any:
    """The language a subscriber is sent: their own, or the first of ``languages`` when the campaign
    lacks it."""
    return case(
        (subscribers.c.language.in_(list(languages)), subscribers.c.language), else_=literal(languages[0])
    )


def _confirmed_members(query: Any, list_name: str) -> Any:
    """``query`` over the confirmed subscribers of ``list_name``: whom enqueue picks and the send plan
    counts."""
    return query.join(subscriber_lists, subscriber_lists.c.subscriber_id == subscribers.c.id).where(
        subscriber_lists.c.list == list_name, subscribers.c.status == "confirmed"
    )


def recipients_per_language(conn: Connection, list_name: str, languages: Sequence[str]) -> dict[str, int]:
    """How many rows :func:`enqueue_edition` would add per language for a fresh edition (grouped by
    the stored language and folded here as :func:`_send_language` does: PostgreSQL cannot group by a
    CASE whose parameters are bound apart from the selected one)."""
    query = select(subscribers.c.language, func.count()).select_from(subscribers)
    query = _confirmed_members(query, list_name).group_by(subscribers.c.language)
    counts = {lang: 0 for lang in languages}
    for lang, count in conn.execute(query):
        counts[lang if lang in counts else languages[0]] += int(count)
    return counts


def enqueue_edition(
    conn: Connection, edition_id: int, list_name: str, languages: Sequence[str], channel: str, now: datetime
) -> int:
    """One outbox row per confirmed subscriber of ``list_name`` (set-based: the list is never loaded).

    The UNIQUE (edition, channel, recipient) key makes a second call, or two at once, add nothing.
    A subscriber whose language the edition lacks gets the first of ``languages``.
    :returns: the number of rows added.
    """
    chosen = select(
        literal(edition_id).label("edition_id"),
        literal(channel).label("channel"),
        subscribers.c.id.label("subscriber_id"),
        _send_language(languages).label("language"),
        literal("queued").label("state"),
        literal(0).label("attempts"),
        literal(now, UTCDateTime()).label("next_attempt_at"),
        literal(now, UTCDateTime()).label("created_at"),
        literal(now, UTCDateTime()).label("updated_at"),
    )
    chosen = _confirmed_members(chosen, list_name).order_by(subscribers.c.id)
    columns = [
        "edition_id",
        "channel",
        "subscriber_id",
        "language",
        "state",
        "attempts",
        "next_attempt_at",
        "created_at",
        "updated_at",
    ]
    statement = insert_for(conn, outbox).from_select(columns, chosen)
    statement = statement.on_conflict_do_nothing(index_elements=["edition_id", "channel", "subscriber_id"])
    before = _outbox_rows(conn, edition_id, channel)
    conn.execute(statement)
    # rowcount of INSERT ... SELECT ... ON CONFLICT is not reported by every driver (psycopg gives -1)
    return _outbox_rows(conn, edition_id, channel) - before


def _outbox_rows(conn: Connection, edition_id: int, channel: str) -> int:
    query = (
        select(func.count())
        .select_from(outbox)
        .where(outbox.c.edition_id == edition_id, outbox.c.channel == channel)
    )
    return int(conn.execute(query).scalar_one())


def claim_batch(
    conn: Connection, worker: str, now: datetime, lease_until: datetime, limit: int
) -> list[Delivery]:
    """Claim up to ``limit`` due rows for ``worker`` under a lease and count the attempt.

    Due: queued or retry rows whose time has come, and rows of a worker whose lease ran out (it
    crashed). On PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets workers claim side by side without waiting
    or overlapping; SQLite takes the write lock first (``BEGIN IMMEDIATE``), which serialises claims.
    Call it as the first statement of a transaction.

    Rows of a cancelled edition that come up (a dead worker's, or a retry recorded while the edition
    was cancelled) are settled ``cancelled`` here and not returned.
    """
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    while True:
        claimed = _claim(conn, worker, now, lease_until, limit)
        stopped = _cancelled_among(conn, {d.edition_id for d in claimed if d.edition_id is not None})
        if not stopped:
            return claimed
        _settle_cancelled(conn, [d.id for d in claimed if d.edition_id in stopped], now, uncount=True)
        live = [d for d in claimed if d.edition_id not in stopped]
        if live or len(claimed) < limit:
            return live


def _claim(conn: Connection, worker: str, now: datetime, lease_until: datetime, limit: int) -> list[Delivery]:
    """Confirmation mails waiting come first, so a sign-up during a campaign of 100,000 is not answered
    after it; then the rest in queue order. The first look goes through the partial index
    ``ix_outbox_confirmations`` and is unordered on purpose: with ORDER BY id PostgreSQL walks the
    primary key through the whole campaign instead, and they are few anyway."""
    waiting = and_(
        outbox.c.edition_id.is_(None),
        outbox.c.state.in_(["queued", "retry"]),
        outbox.c.next_attempt_at <= now,
    )
    first = _claim_where(conn, worker, now, lease_until, limit, waiting, ordered=False)
    if len(first) >= limit:
        return first
    return first + _claim_where(conn, worker, now, lease_until, limit - len(first), _due(now))


def _claim_where(
    conn: Connection,
    worker: str,
    now: datetime,
    lease_until: datetime,
    limit: int,
    due: Any,
    ordered: bool = True,
) -> list[Delivery]:
    chosen = select(outbox.c.id).where(due).limit(limit)
    if ordered:
        chosen = chosen.order_by(outbox.c.id)
    statement = claim_statement(conn, chosen, worker, now, lease_until).returning(*outbox.c)
    rows = sorted(conn.execute(statement).all(), key=lambda row: row.id)
    return [_delivery_from_row(row) for row in rows]


def claim_statement(conn: Connection, chosen: Any, worker: str, now: datetime, lease_until: datetime) -> Any:
    """UPDATE the rows ``chosen`` (a SELECT of ids) to ``sending`` for ``worker`` under a lease, counting
    the attempt; on PostgreSQL rows another worker has locked are skipped, not waited for."""
    if conn.dialect.name == "postgresql":
        chosen = chosen.with_for_update(skip_locked=True)
    return (
        update(outbox)
        .where(outbox.c.id.in_(chosen.scalar_subquery()))
        .values(
            state="sending",
            claimed_by=worker,
            lease_until=lease_until,
            attempts=outbox.c.attempts + 1,
            updated_at=now,
        )
    )


def _cancelled_among(conn: Connection, edition_ids: set[int]) -> set[int]:
    if not edition_ids:
        return set()
    query = select(editions.c.id).where(editions.c.id.in_(list(edition_ids)), editions.c.state == "cancelled")
    return set(conn.execute(query).scalars())


def _settle_cancelled(conn: Connection, ids: Sequence[int], now: datetime, uncount: bool = False) -> int:
    """Rows ``ids`` end ``cancelled`` (their edition was); ``uncount`` takes back the attempt a claim
    just counted. The server's last reply, if any, stays in ``reply``."""
    if not ids:
        return 0
    values: dict[str, Any] = {
        "state": "cancelled",
        "error": EDITION_CANCELLED,
        "claimed_by": None,
        "lease_until": None,
        "updated_at": now,
    }
    if uncount:
        values["attempts"] = outbox.c.attempts - 1
    statement = update(outbox).where(outbox.c.id.in_(list(ids))).values(**values)
    return int(conn.execute(statement).rowcount or 0)


def cancel_unsent(conn: Connection, edition_id: int, reason: str, now: datetime) -> int:
    """The edition's rows that wait (queued, retry) end ``cancelled`` with ``reason`` as their error.
    Rows a worker holds (``sending``) are left to it: it may still send them, and what it cannot send
    it releases as cancelled (see :func:`release_deliveries`). Returns the rows cancelled."""
    statement = (
        update(outbox)
        .where(outbox.c.edition_id == edition_id, outbox.c.state.in_(["queued", "retry"]))
        .values(state="cancelled", error=reason, claimed_by=None, lease_until=None, updated_at=now)
    )
    return int(conn.execute(statement).rowcount or 0)


def queue_confirmation(
    conn: Connection, subscriber_id: int, language: str, now: datetime, not_sent: str | None = None
) -> int:
    """A confirmation mail for the subscriber: a row without an edition on :data:`CONFIRM_CHANNEL`,
    due now (the delivery loop builds the mail when it sends it). A confirmation of theirs still waiting
    ends ``cancelled`` (:data:`SUPERSEDED`): one mail, as asked for last. With ``not_sent`` the row is
    stored ``cancelled`` with that reason instead: a sign-up owed no mail leaves the same trace.

    The UNIQUE (edition, channel, recipient) key does not hold these rows back: NULL editions are
    distinct on SQLite and PostgreSQL alike. :returns: the row's id.
    """
    if not_sent is None:
        waiting = update(outbox).where(
            outbox.c.edition_id.is_(None),
            outbox.c.channel == CONFIRM_CHANNEL,
            outbox.c.subscriber_id == subscriber_id,
            outbox.c.state.in_(["queued", "retry"]),
        )
        conn.execute(waiting.values(state="cancelled", error=SUPERSEDED, updated_at=now))
    values = {
        "edition_id": None,
        "channel": CONFIRM_CHANNEL,
        "subscriber_id": subscriber_id,
        "language": language,
        "state": "queued" if not_sent is None else "cancelled",
        "error": not_sent,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }
    return int(conn.execute(outbox.insert().values(**values).returning(outbox.c.id)).scalar_one())


def _due(now: datetime) -> Any:
    """Mail rows due now (social posts, ``post_key`` set, have their own claim in ``db/posts.py``)."""
    return and_(
        outbox.c.post_key.is_(None),
        or_(
            and_(outbox.c.state.in_(["queued", "retry"]), outbox.c.next_attempt_at <= now),
            and_(outbox.c.state == "sending", outbox.c.lease_until < now),
        ),
    )


def count_due(conn: Connection, now: datetime, cap: int) -> int:
    """How many rows :func:`claim_batch` could take now, counted up to ``cap`` (a bounded count stays
    cheap while a campaign of 100,000 waits)."""
    chosen = select(outbox.c.id).where(_due(now)).limit(cap).subquery()
    return int(conn.execute(select(func.count()).select_from(chosen)).scalar_one())


def _delivery_from_row(row: Any) -> Delivery:
    return Delivery(
        id=row.id,
        edition_id=row.edition_id,
        channel=row.channel,
        subscriber_id=row.subscriber_id,
        language=row.language,
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        claimed_by=row.claimed_by,
        lease_until=row.lease_until,
        message_id=row.message_id,
        reply=row.reply,
        error=row.error,
    )


def mark_deliveries(conn: Connection, worker: str, results: Sequence[dict[str, Any]], now: datetime) -> int:
    """Record outcomes in one round trip: each dict has ``id``, ``state`` and optionally ``message_id``,
    ``reply``, ``error``, ``next_attempt_at``. Only rows still claimed by ``worker`` change (a worker that
    lost its lease must not overwrite the new owner's result). Returns the rows changed."""
    if not results:
        return 0
    statement = (
        update(outbox)
        .where(outbox.c.id == bindparam("b_id"), outbox.c.claimed_by == worker, outbox.c.state == "sending")
        .values(
            state=bindparam("b_state"),
            message_id=bindparam("b_message_id"),
            reply=bindparam("b_reply"),
            error=bindparam("b_error"),
            next_attempt_at=bindparam("b_next"),
            lease_until=None,
            updated_at=now,
        )
    )
    params = [
        {
            "b_id": r["id"],
            "b_state": r["state"],
            "b_message_id": r.get("message_id"),
            "b_reply": r.get("reply"),
            "b_error": r.get("error"),
            "b_next": r.get("next_attempt_at") or now,
        }
        for r in results
    ]
    changed = int(conn.execute(statement, params).rowcount or 0)
    _cancel_retries(conn, [r["id"] for r in results if r["state"] == "retry"], now)
    return changed


def _cancel_retries(conn: Connection, ids: Sequence[int], now: datetime) -> None:
    """A row that failed for now while its edition was cancelled is not tried again."""
    if ids:
        statement = (
            update(outbox)
            .where(outbox.c.id.in_(list(ids)), outbox.c.state == "retry", _of_cancelled_edition())
            .values(state="cancelled", error=EDITION_CANCELLED, updated_at=now)
        )
        conn.execute(statement)


def renew_leases(conn: Connection, worker: str, lease_until: datetime) -> int:
    """The heartbeat: extend the lease of every row ``worker`` holds. Returns the rows renewed.

    On PostgreSQL rows locked by the worker's own settling transaction (marking them sent) are skipped
    (``FOR UPDATE SKIP LOCKED``): the two would otherwise lock the same rows in different orders and
    deadlock; a row being settled needs no longer lease, and a settle that fails is renewed next beat.
    """
    held = and_(outbox.c.state == "sending", outbox.c.claimed_by == worker)
    if conn.dialect.name == "postgresql":
        free = select(outbox.c.id).where(held).order_by(outbox.c.id).with_for_update(skip_locked=True)
        held = outbox.c.id.in_(free.scalar_subquery())
    statement = update(outbox).where(held).values(lease_until=lease_until)
    return int(conn.execute(statement).rowcount or 0)


def release_deliveries(conn: Connection, worker: str, now: datetime, ids: Sequence[int] | None = None) -> int:
    """Give rows ``worker`` holds (those of ``ids``, or all) back unsent: claimable at once, and the
    attempt the claim counted is taken back (``retry`` if an earlier attempt was made, else ``queued``;
    ``cancelled`` when its edition was cancelled meanwhile: it never goes back to the queue).
    The row's due time is left as it was: it was due when claimed. Returns the rows released."""
    held = [outbox.c.state == "sending", outbox.c.claimed_by == worker]
    if ids is not None:
        if not ids:
            return 0
        held.append(outbox.c.id.in_(list(ids)))
    statement = (
        update(outbox)
        .where(*held)
        .values(
            state=case(
                (_of_cancelled_edition(), literal("cancelled")),
                (outbox.c.attempts > 1, literal("retry")),
                else_=literal("queued"),
            ),
            error=case((_of_cancelled_edition(), literal(EDITION_CANCELLED)), else_=outbox.c.error),
            attempts=outbox.c.attempts - 1,
            claimed_by=None,
            lease_until=None,
            updated_at=now,
        )
    )
    return int(conn.execute(statement).rowcount or 0)


def lease_holders(conn: Connection, now: datetime) -> list[str]:
    """The workers holding rows under a lease that has not run out (few: one per loop in flight)."""
    query = (
        select(outbox.c.claimed_by)
        .where(outbox.c.state == "sending", outbox.c.lease_until >= now, outbox.c.claimed_by.is_not(None))
        .distinct()
    )
    return [str(name) for name in conn.execute(query).scalars()]


def end_leases(conn: Connection, workers: Sequence[str], now: datetime) -> int:
    """End the leases of ``workers`` now (they are gone), so their rows are claimable at once, as if
    the leases had run out. Returns the rows affected."""
    if not workers:
        return 0
    statement = (
        update(outbox)
        .where(outbox.c.state == "sending", outbox.c.claimed_by.in_(list(workers)))
        .values(lease_until=now)
    )
    return int(conn.execute(statement).rowcount or 0)


def has_pending(conn: Connection, edition_id: int) -> bool:
    """Whether any row of the edition still waits to be sent (stops at the first one found: cheap
    while a campaign runs, where counting all its rows per batch would not be)."""
    query = (
        select(outbox.c.id)
        .where(outbox.c.edition_id == edition_id, outbox.c.state.in_(PENDING_STATES))
        .limit(1)
    )
    return conn.execute(query).first() is not None


def outbox_counts(conn: Connection, edition_ids: Sequence[int] | None = None) -> dict[int, dict[str, int]]:
    """Rows per state for each edition (confirmation mails, which have none, are not counted)."""
    query = (
        select(outbox.c.edition_id, outbox.c.state, func.count())
        .where(outbox.c.edition_id.is_not(None))
        .group_by(outbox.c.edition_id, outbox.c.state)
    )
    if edition_ids is not None:
        query = query.where(outbox.c.edition_id.in_(list(edition_ids)))
    counts: dict[int, dict[str, int]] = {}
    for edition_id, state, count in conn.execute(query):
        counts.setdefault(edition_id, {})[state] = int(count)
    return counts


def pending_deliveries(conn: Connection) -> int:
    query = select(func.count()).select_from(outbox).where(outbox.c.state.in_(PENDING_STATES))
    return int(conn.execute(query).scalar_one())


def next_due(conn: Connection) -> datetime | None:
    """When the next row becomes claimable: a queued/retry time or a lease running out."""
    mail = outbox.c.post_key.is_(None)
    waiting = select(func.min(outbox.c.next_attempt_at)).where(mail, outbox.c.state.in_(["queued", "retry"]))
    leased = select(func.min(outbox.c.lease_until)).where(mail, outbox.c.state == "sending")
    times = [conn.execute(waiting).scalar(), conn.execute(leased).scalar()]
    found = [UTCDateTime().process_result_value(t, conn.dialect) for t in times if t is not None]
    return min((t for t in found if t is not None), default=None)


def save_edition_messages(conn: Connection, edition_id: int, rendered: Sequence[RenderedEmail]) -> None:
    """Freeze what an edition rendered to (replacing an earlier freeze of the same edition)."""
    conn.execute(edition_messages.delete().where(edition_messages.c.edition_id == edition_id))
    rows = [
        {
            "edition_id": edition_id,
            "language": r.language,
            "subject": r.subject,
            "preheader": r.preheader,
            "html": r.html,
            "text": r.text,
            "fallbacks": list(r.fallbacks),
        }
        for r in rendered
    ]
    if rows:
        conn.execute(edition_messages.insert(), rows)


def get_edition_messages(conn: Connection, edition_id: int) -> dict[str, RenderedEmail]:
    query = select(edition_messages).where(edition_messages.c.edition_id == edition_id)
    return {
        row.language: RenderedEmail(
            language=row.language,
            subject=row.subject,
            preheader=row.preheader,
            html=row.html,
            text=row.text,
            fallbacks=tuple(row.fallbacks),
        )
        for row in conn.execute(query)
    }


def last_errors(conn: Connection) -> dict[int, tuple[str, datetime]]:
    """Per edition, the newest error still on one of its rows (a row that went out later has none) and
    when it was recorded: why messages wait for a retry or failed."""
    newest = (
        select(outbox.c.edition_id, func.max(outbox.c.updated_at).label("at"))
        .where(outbox.c.error.is_not(None), outbox.c.edition_id.is_not(None))
        .group_by(outbox.c.edition_id)
        .subquery()
    )
    query = (
        select(outbox.c.edition_id, outbox.c.error, outbox.c.updated_at)
        .join(newest, and_(outbox.c.edition_id == newest.c.edition_id, outbox.c.updated_at == newest.c.at))
        .where(outbox.c.error.is_not(None))
        .order_by(outbox.c.id.desc())
    )
    found: dict[int, tuple[str, datetime]] = {}
    for edition_id, error, at in conn.execute(query):
        found.setdefault(edition_id, (error, at))
    return found
