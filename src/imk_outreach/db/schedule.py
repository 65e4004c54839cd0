"""Campaign schedules (which fire times were handled) and campaign runs; the scheduler's lock."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, or_, select, text, update
from sqlalchemy.exc import IntegrityError

from imk_outreach.db.engine import insert_for
from imk_outreach.db.tables import campaign_runs, campaign_schedules
from imk_outreach.models import CampaignRun

# A run still in one of these states needs the scheduler's attention ("composing": claimed by a
# scheduler that is composing it now; one that stays so for long belonged to a scheduler that died).
OPEN_RUN_STATES = ("due", "composing", "waiting", "held")


def checked_until(conn: Connection, campaign: str) -> datetime | None:
    query = select(campaign_schedules.c.checked_until).where(campaign_schedules.c.campaign == campaign)
    value = conn.execute(query).scalar_one_or_none()
    return value if isinstance(value, datetime) else None


def set_checked_until(conn: Connection, campaign: str, schedule: str, moment: datetime) -> None:
    values = {"schedule": schedule, "checked_until": moment}
    statement = insert_for(conn, campaign_schedules).values(campaign=campaign, **values)
    conn.execute(statement.on_conflict_do_update(index_elements=["campaign"], set_=values))


def lock_campaign_schedule(conn: Connection, campaign: str) -> None:
    """Serialise two schedulers' checks of one campaign for the rest of the transaction (SQLite: the
    database's write lock; PostgreSQL: a transaction-scoped advisory lock)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key("campaign:" + campaign)})


def add_run(
    conn: Connection, campaign: str, due_at: datetime, deadline: datetime, missed: int, now: datetime
) -> CampaignRun | None:
    """Record that ``campaign`` fell due at ``due_at``; None when that run is recorded already."""
    values = {
        "campaign": campaign,
        "due_at": due_at,
        "deadline": deadline,
        "state": "due",
        "missed": missed,
        "created_at": now,
        "updated_at": now,
    }
    statement = insert_for(conn, campaign_runs).values(**values)
    statement = statement.on_conflict_do_nothing(index_elements=["campaign", "due_at"])
    try:
        result = conn.execute(statement.returning(campaign_runs.c.id))
    except IntegrityError:
        return None
    new_id = result.scalar_one_or_none()
    return get_run(conn, int(new_id)) if new_id is not None else None


def claim_run(conn: Connection, run_id: int, now: datetime, stale_before: datetime) -> bool:
    """Take a ``due`` run (or one left ``composing`` before ``stale_before``) for composing; False when
    another scheduler or job has it. One statement, so two schedulers never compose one run twice."""
    statement = (
        update(campaign_runs)
        .where(
            campaign_runs.c.id == run_id,
            or_(
                campaign_runs.c.state == "due",
                and_(campaign_runs.c.state == "composing", campaign_runs.c.updated_at < stale_before),
            ),
        )
        .values(state="composing", updated_at=now)
    )
    return bool(conn.execute(statement).rowcount)


def update_run(conn: Connection, run_id: int, now: datetime, **values: Any) -> None:
    """Set a run's ``state``, ``edition_id``, ``note`` or ``notified_at``."""
    conn.execute(update(campaign_runs).where(campaign_runs.c.id == run_id).values(updated_at=now, **values))


def get_run(conn: Connection, run_id: int) -> CampaignRun | None:
    row = conn.execute(select(campaign_runs).where(campaign_runs.c.id == run_id)).first()
    return _run(row) if row is not None else None


def list_runs(
    conn: Connection, states: Sequence[str] = (), campaign: str | None = None, limit: int | None = None
) -> list[CampaignRun]:
    """Runs newest first, optionally in some states or of one campaign."""
    query = select(campaign_runs).order_by(campaign_runs.c.due_at.desc(), campaign_runs.c.id.desc())
    if states:
        query = query.where(campaign_runs.c.state.in_(list(states)))
    if campaign is not None:
        query = query.where(campaign_runs.c.campaign == campaign)
    if limit is not None:
        query = query.limit(limit)
    return [_run(row) for row in conn.execute(query)]


def _run(row: Any) -> CampaignRun:
    return CampaignRun(
        id=row.id,
        campaign=row.campaign,
        due_at=row.due_at,
        deadline=row.deadline,
        state=row.state,
        edition_id=row.edition_id,
        missed=row.missed,
        note=row.note,
        notified_at=row.notified_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# -- the scheduler's lock (PostgreSQL) ---------------------------------------------------------------


def _lock_key(name: str) -> int:
    """A stable signed 64-bit key for pg_advisory_lock from a name."""
    return zlib.crc32(("imk-outreach:" + name).encode()) - 2**31


SCHEDULER_LOCK = "scheduler"


def try_session_lock(conn: Connection, name: str) -> bool:
    """Take the session-level advisory lock ``name`` on PostgreSQL without waiting; it is held until
    this connection closes (or the server notices its process died)."""
    query = text("SELECT pg_try_advisory_lock(:key)")
    return bool(conn.execute(query, {"key": _lock_key(name)}).scalar_one())


def release_session_lock(conn: Connection, name: str) -> None:
    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _lock_key(name)})
