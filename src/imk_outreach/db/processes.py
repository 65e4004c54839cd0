"""Live processes (scheduler, standby, workers) and their heartbeats."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, update

from imk_outreach.db.engine import insert_for
from imk_outreach.db.tables import processes
from imk_outreach.models import ProcessInfo


def beat(
    conn: Connection,
    process: ProcessInfo,
    now: datetime,
    state: str | None = None,
    info: Mapping[str, Any] | None = None,
) -> None:
    """Insert or refresh a process's row: heartbeat now, and its role, state and info."""
    values = {
        "role": process.role,
        "host": process.host,
        "pid": process.pid,
        "started_at": process.started_at,
        "heartbeat_at": now,
        "state": state or process.state,
        "info": dict(info if info is not None else process.info),
    }
    statement = insert_for(conn, processes).values(name=process.name, **values)
    conn.execute(statement.on_conflict_do_update(index_elements=["name"], set_=values))


def set_role(conn: Connection, name: str, role: str) -> None:
    conn.execute(update(processes).where(processes.c.name == name).values(role=role))


def remove_process(conn: Connection, name: str) -> None:
    conn.execute(processes.delete().where(processes.c.name == name))


def list_processes(conn: Connection, role: str | None = None) -> list[ProcessInfo]:
    """Every recorded process (alive or not: compare ``heartbeat_at``), oldest first."""
    query = select(processes).order_by(processes.c.started_at, processes.c.name)
    if role is not None:
        query = query.where(processes.c.role == role)
    return [
        ProcessInfo(
            name=row.name,
            role=row.role,
            host=row.host,
            pid=row.pid,
            started_at=row.started_at,
            heartbeat_at=row.heartbeat_at,
            state=row.state,
            info=row.info or {},
        )
        for row in conn.execute(query)
    ]


def forget_processes_before(conn: Connection, moment: datetime) -> int:
    """Drop rows of processes whose last heartbeat is older than ``moment`` (long gone)."""
    result = conn.execute(processes.delete().where(processes.c.heartbeat_at < moment))
    return int(result.rowcount or 0)


def count_live(conn: Connection, role: str, since: datetime) -> int:
    """Processes in ``role`` whose last heartbeat is at or after ``since``."""
    query = (
        select(func.count())
        .select_from(processes)
        .where(processes.c.role == role, processes.c.heartbeat_at >= since)
    )
    return int(conn.execute(query).scalar_one())
