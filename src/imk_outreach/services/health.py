"""Is the scheduler alive, and can the database be reached? (``status`` and ``GET /healthz``)"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.errors import ImkError
from imk_outreach.models import ProcessInfo
from imk_outreach.services.database import engine_for


def fresh_within(settings: Settings) -> timedelta:
    """A heartbeat older than this means its process is gone (three missed beats, at least 15 s)."""
    return max(settings.scheduler.heartbeat * 3, timedelta(seconds=15))


@dataclass(frozen=True)
class Health:
    database: str  # "ok" or the reason it cannot be reached
    scheduler: str  # "running", "stopping" or "down"
    leader: ProcessInfo | None = None
    processes: list[ProcessInfo] = field(default_factory=list)  # alive ones

    @property
    def ok(self) -> bool:
        return self.database == "ok" and self.scheduler == "running"


def health(settings: Settings, now: datetime) -> Health:
    """The database's and the scheduler's state as seen from the database (any process may ask)."""
    try:
        with engine_for(settings).connect() as conn:
            known = store.list_processes(conn)
    except ImkError as exc:
        return Health(database=str(exc), scheduler="unknown")
    except Exception as exc:  # noqa: BLE001 - e.g. the server went away after the engine was made
        return Health(database=f"cannot query the database: {type(exc).__name__}: {exc}", scheduler="unknown")
    alive = [p for p in known if now - p.heartbeat_at <= fresh_within(settings)]
    leaders = [p for p in alive if p.role == "scheduler"]
    leader = leaders[-1] if leaders else None
    state = leader.state if leader is not None else "down"
    return Health(database="ok", scheduler=state, leader=leader, processes=alive)
