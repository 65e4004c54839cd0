"""Heartbeats of this installation's long-running processes (scheduler, standby, workers)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import ProcessInfo
from imk_outreach.services.database import engine_for


def beat(
    settings: Settings, process: ProcessInfo, now: datetime, state: str, info: Mapping[str, Any] | None = None
) -> None:
    """Record that ``process`` lives, in ``state``, with what it wants shown (next runs, outcomes)."""
    with engine_for(settings).begin() as conn:
        store.beat(conn, process, now, state, info)


def forget(settings: Settings, process: ProcessInfo) -> None:
    """A clean exit: the process's row goes."""
    with engine_for(settings).begin() as conn:
        store.remove_process(conn, process.name)
