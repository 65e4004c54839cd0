"""Social posts in the outbox: one row per (edition, channel, post key), claimed one at a time, and the
state of each channel (paused, platform session).

A post row has no subscriber; ``post_key`` is the item id (or ``digest``), ``payload`` the rendered
:class:`~imk_outreach.models.Post`, ``scheduled_at`` the slot it was given. Before the platform is called
the row is committed ``posting``: a worker that dies during the call leaves a row that says so, and the
service settles it by whether a retry is safe on that platform, never by posting again blindly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update

from imk_outreach.db.engine import insert_for
from imk_outreach.db.outbox import claim_statement
from imk_outreach.db.tables import channel_states, editions, outbox
from imk_outreach.models import Facet, LinkCard, Post, PostImage

# rows of a post that count for slots and daily caps: waiting, on their way, or out
ACTIVE_STATES = ("queued", "retry", "sending", "posting", "sent", "unknown")


@dataclass(frozen=True)
class PostRow:
    """One social post in the outbox."""

    id: int
    edition_id: int
    channel: str
    key: str
    state: str
    attempts: int
    next_attempt_at: datetime
    scheduled_at: datetime | None
    post: Post
    forced: bool = False  # ``post-now``: goes at once, past slot and daily cap
    remote_id: str | None = None
    remote_url: str | None = None
    reply: str | None = None
    error: str | None = None
    claimed_by: str | None = None
    campaign: str = ""
    updated_at: datetime | None = None


# -- (de)serialising the rendered post ---------------------------------------------------------------


def post_to_json(post: Post, forced: bool = False) -> dict[str, Any]:
    data = asdict(post)
    data["facets"] = [asdict(facet) for facet in post.facets]
    data["fallbacks"] = list(post.fallbacks)
    data["forced"] = forced
    return data


def post_from_json(data: dict[str, Any]) -> Post:
    values = {k: v for k, v in data.items() if k != "forced"}
    values["facets"] = tuple(Facet(**facet) for facet in data.get("facets") or ())
    values["card"] = LinkCard(**data["card"]) if data.get("card") else None
    values["image"] = PostImage(**data["image"]) if data.get("image") else None
    values["fallbacks"] = tuple(data.get("fallbacks") or ())
    return Post(**values)


def _row(row: Any) -> PostRow:
    payload = dict(row.payload or {})
    return PostRow(
        id=row.id,
        edition_id=row.edition_id,
        channel=row.channel,
        key=row.post_key,
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        scheduled_at=row.scheduled_at,
        post=post_from_json(payload),
        forced=bool(payload.get("forced")),
        remote_id=row.message_id,
        remote_url=row.remote_url,
        reply=row.reply,
        error=row.error,
        claimed_by=row.claimed_by,
        campaign=getattr(row, "campaign", "") or "",
        updated_at=row.updated_at,
    )


def _selected() -> Any:
    return select(*outbox.c, editions.c.campaign).join(editions, editions.c.id == outbox.c.edition_id)


# -- queueing ----------------------------------------------------------------------------------------


def queue_post(conn: Connection, edition_id: int, post: Post, at: datetime, now: datetime) -> bool:
    """Store ``post`` due at ``at`` (its slot). A post of the same (edition, channel, key) already
    stored is left as it is (UNIQUE key): queueing twice adds nothing. :returns: whether it was added."""
    values = {
        "edition_id": edition_id,
        "channel": post.channel,
        "subscriber_id": None,
        "language": post.language,
        "state": "queued",
        "attempts": 0,
        "next_attempt_at": at,
        "scheduled_at": at,
        "post_key": post.key,
        "payload": post_to_json(post),
        "created_at": now,
        "updated_at": now,
    }
    statement = insert_for(conn, outbox).values(**values)
    statement = statement.on_conflict_do_nothing(index_elements=["edition_id", "channel", "post_key"])
    return bool(conn.execute(statement).rowcount)


def scheduled_times(conn: Connection, channel: str, since: datetime) -> list[datetime]:
    """The slots the channel's posts hold from ``since`` on (waiting, on their way, or out)."""
    query = select(outbox.c.scheduled_at).where(
        outbox.c.channel == channel,
        outbox.c.post_key.is_not(None),
        outbox.c.state.in_(ACTIVE_STATES),
        outbox.c.scheduled_at >= since,
    )
    return sorted(t for t in conn.execute(query).scalars() if t is not None)


def sent_between(conn: Connection, channel: str, start: datetime, end: datetime) -> int:
    """Posts of the channel that went out (or may have: ``unknown``) in [start, end)."""
    query = (
        select(func.count())
        .select_from(outbox)
        .where(
            outbox.c.channel == channel,
            outbox.c.post_key.is_not(None),
            outbox.c.state.in_(("sent", "unknown", "posting")),
            outbox.c.updated_at >= start,
            outbox.c.updated_at < end,
        )
    )
    return int(conn.execute(query).scalar_one())


# -- claiming and settling -----------------------------------------------------------------------------


def _due(now: datetime) -> Any:
    return and_(
        outbox.c.post_key.is_not(None),
        or_(
            and_(outbox.c.state.in_(["queued", "retry"]), outbox.c.next_attempt_at <= now),
            and_(outbox.c.state == "sending", outbox.c.lease_until < now),
        ),
    )


def claim_post(
    conn: Connection, worker: str, now: datetime, lease_until: datetime, skip_channels: Iterable[str] = ()
) -> PostRow | None:
    """Claim the next due post (slot order) of a channel not in ``skip_channels`` under a lease.
    Call it as the first statement of a transaction."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    chosen = select(outbox.c.id).where(_due(now)).order_by(outbox.c.next_attempt_at, outbox.c.id).limit(1)
    skipped = list(skip_channels)
    if skipped:
        chosen = chosen.where(outbox.c.channel.not_in(skipped))
    chosen = chosen.where(
        or_(outbox.c.edition_id.is_(None), outbox.c.edition_id.not_in(_cancelled_editions()))
    )
    statement = claim_statement(conn, chosen, worker, now, lease_until).returning(outbox.c.id)
    found = conn.execute(statement).scalar()
    return None if found is None else get_post(conn, int(found))


def _cancelled_editions() -> Any:
    return select(editions.c.id).where(editions.c.state == "cancelled")


def mark_posting(conn: Connection, post_id: int, worker: str, now: datetime) -> bool:
    """The request is about to go out; commit this before calling the platform."""
    statement = (
        update(outbox)
        .where(outbox.c.id == post_id, outbox.c.claimed_by == worker, outbox.c.state == "sending")
        .values(state="posting", updated_at=now)
    )
    return bool(conn.execute(statement).rowcount)


def settle_post(
    conn: Connection,
    post_id: int,
    state: str,
    now: datetime,
    *,
    worker: str | None = None,
    reply: str | None = None,
    error: str | None = None,
    remote_id: str | None = None,
    remote_url: str | None = None,
    next_attempt_at: datetime | None = None,
    attempts_back: bool = False,
) -> bool:
    """Record the outcome (``worker``: only while that worker still holds the row)."""
    conditions = [outbox.c.id == post_id]
    if worker is not None:
        conditions += [outbox.c.claimed_by == worker, outbox.c.state.in_(("sending", "posting"))]
    values: dict[str, Any] = {
        "state": state,
        "reply": reply,
        "error": error,
        "next_attempt_at": next_attempt_at or now,
        "lease_until": None,
        "updated_at": now,
    }
    if remote_id is not None:
        values["message_id"] = remote_id
    if remote_url is not None:
        values["remote_url"] = remote_url
    if attempts_back:
        values["attempts"] = outbox.c.attempts - 1
    return bool(conn.execute(update(outbox).where(*conditions).values(**values)).rowcount)


def set_forced(conn: Connection, post_id: int, now: datetime) -> PostRow | None:
    """``post-now``: due at once, past its slot and the daily cap."""
    row = get_post(conn, post_id)
    if row is None:
        return None
    payload = post_to_json(row.post, forced=True)
    conn.execute(
        update(outbox)
        .where(outbox.c.id == post_id)
        .values(payload=payload, next_attempt_at=now, scheduled_at=now, updated_at=now)
    )
    return get_post(conn, post_id)


def stale_posting(conn: Connection, now: datetime) -> list[PostRow]:
    """Rows left ``posting`` by a worker whose lease ran out (it died during the platform call)."""
    query = _selected().where(
        outbox.c.post_key.is_not(None), outbox.c.state == "posting", outbox.c.lease_until < now
    )
    return [_row(row) for row in conn.execute(query)]


# -- reading -----------------------------------------------------------------------------------------------


def get_post(conn: Connection, post_id: int) -> PostRow | None:
    row = conn.execute(_selected().where(outbox.c.id == post_id, outbox.c.post_key.is_not(None))).first()
    return None if row is None else _row(row)


def list_posts(
    conn: Connection,
    *,
    states: Sequence[str] | None = None,
    channel: str | None = None,
    edition_id: int | None = None,
    limit: int = 200,
) -> list[PostRow]:
    """Posts in slot order (``next_attempt_at``), optionally by state, channel and edition."""
    query = _selected().where(outbox.c.post_key.is_not(None))
    if states is not None:
        query = query.where(outbox.c.state.in_(list(states)))
    if channel is not None:
        query = query.where(outbox.c.channel == channel)
    if edition_id is not None:
        query = query.where(outbox.c.edition_id == edition_id)
    query = query.order_by(outbox.c.next_attempt_at, outbox.c.id).limit(limit)
    return [_row(row) for row in conn.execute(query)]


def post_next_due(conn: Connection, skip_channels: Iterable[str] = ()) -> datetime | None:
    query = select(func.min(outbox.c.next_attempt_at)).where(
        outbox.c.post_key.is_not(None), outbox.c.state.in_(["queued", "retry"])
    )
    skipped = list(skip_channels)
    if skipped:
        query = query.where(outbox.c.channel.not_in(skipped))
    value: datetime | None = conn.execute(query).scalar()
    return value


# -- channel state -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelState:
    channel: str
    paused_at: datetime | None = None
    paused_reason: str | None = None
    checked_at: datetime | None = None
    checked_as: str | None = None
    session: str | None = None


def channel_state(conn: Connection, channel: str) -> ChannelState:
    row = conn.execute(select(channel_states).where(channel_states.c.channel == channel)).first()
    if row is None:
        return ChannelState(channel)
    return ChannelState(
        channel, row.paused_at, row.paused_reason, row.checked_at, row.checked_as, row.session
    )


def paused_channels(conn: Connection) -> dict[str, str]:
    query = select(channel_states.c.channel, channel_states.c.paused_reason).where(
        channel_states.c.paused_at.is_not(None)
    )
    return {str(name): str(reason or "") for name, reason in conn.execute(query)}


def save_channel_state(conn: Connection, channel: str, now: datetime, **values: Any) -> None:
    """Set some of paused_at, paused_reason, checked_at, checked_as, session for ``channel``."""
    statement = insert_for(conn, channel_states).values(channel=channel, updated_at=now, **values)
    statement = statement.on_conflict_do_update(
        index_elements=["channel"], set_={**values, "updated_at": now}
    )
    conn.execute(statement)
