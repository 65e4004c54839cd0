"""Only one process schedules: the one holding the scheduler lock.

- SQLite (one machine): an exclusive ``flock`` on ``<database>.run.lock``. The kernel drops it when
  the process dies, however it dies. A second ``run`` is refused: SQLite is for one process.
- PostgreSQL: a session advisory lock on a connection kept open for the process's life. The server
  drops it when that connection ends (the process died or lost the network), so a standby's next try
  takes over.
"""

from __future__ import annotations

import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection

from imk_outreach.config import Settings, database_url
from imk_outreach.db import store
from imk_outreach.errors import ImkError
from imk_outreach.services.database import engine_for

log = logging.getLogger(__name__)


class SchedulerBusy(ImkError):
    """Another ``run`` holds the scheduler lock of a SQLite database."""

    def __init__(self, url: str, holder: str) -> None:
        super().__init__(
            f"another 'imk-outreach run' ({holder}) already schedules {url}; SQLite allows one. "
            "Stop that one first (or move to PostgreSQL, where a second run waits as a standby); "
            "'imk-outreach worker' adds delivery processes"
        )


@dataclass
class Leadership:
    """The held lock; :meth:`alive` checks it still holds, :meth:`release` gives it up."""

    kind: str
    handle: Any  # the open lock file (SQLite) or the Connection holding the advisory lock

    def alive(self) -> bool:
        if self.kind == "file":
            return True  # a flock cannot be lost while the file is open
        conn: Connection = self.handle
        try:
            conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - any failure means the lock may be gone
            return False

    def release(self) -> None:
        try:
            if self.kind == "file":
                fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
                self.handle.close()
            else:
                store.release_session_lock(self.handle, store.SCHEDULER_LOCK)
                self.handle.commit()
                self.handle.close()
        except Exception as exc:  # noqa: BLE001 - the lock goes with the process anyway
            log.debug("releasing the scheduler lock: %s", exc)


def uses_sqlite(settings: Settings) -> bool:
    return database_url(settings).startswith("sqlite")


def lock_path(settings: Settings) -> Path:
    return Path(database_url(settings).removeprefix("sqlite:///") + ".run.lock")


def try_lead(settings: Settings, me: str) -> Leadership | None:
    """Take the scheduler lock if it is free; None when another process holds it (PostgreSQL).

    :param me: this process's name, written into the SQLite lock file for the refusal message.
    :raises SchedulerBusy: on SQLite, another ``run`` holds it.
    """
    if uses_sqlite(settings):
        return _file_lock(settings, me)
    conn = engine_for(settings).connect()
    try:
        if store.try_session_lock(conn, store.SCHEDULER_LOCK):
            conn.commit()
            return Leadership("advisory", conn)
        conn.rollback()
    except Exception:
        conn.close()
        raise
    conn.close()
    return None


def _file_lock(settings: Settings, me: str) -> Leadership:
    path = lock_path(settings)
    handle: IO[str] = path.open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown process"
        handle.close()
        raise SchedulerBusy(store.redacted_url(database_url(settings)), holder) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}, {me}\n")
    handle.flush()
    return Leadership("file", handle)
