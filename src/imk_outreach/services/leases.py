"""Keeping a delivery loop's leases alive, and taking back the rows of workers that are gone.

A loop claims rows under a short lease (``smtp.lease``) and a :class:`LeaseKeeper` thread renews it
every third of that while the loop runs, together with the loop's row in the ``processes`` table (role
``worker``). So a live worker never loses its rows, however slow the SMTP server, and a dead one's
rows come back within one lease. Faster still: a worker on the same host that finds a lease holder
:func:`~imk_outreach.services.liveness.provably_gone` ends that holder's leases at once.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Self

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from imk_outreach.db import store
from imk_outreach.models import ProcessInfo
from imk_outreach.services import liveness

log = logging.getLogger(__name__)
ROLE = "worker"


def loop_process(suffix: str | None = None) -> ProcessInfo:
    """This process as a worker; with ``suffix``, one of its delivery loops (``host:pid:start/suffix``)."""
    process = liveness.this_process(ROLE)
    if suffix is None:
        return process
    return dataclasses.replace(process, name=f"{process.name}/{suffix}", info={"loop": suffix})


def take_back_from_gone(engine: Engine, now: datetime) -> list[str]:
    """End the leases of every holder that is provably gone (a dead process of this host), and forget
    such workers in the ``processes`` table. :returns: the names whose rows came back."""
    with engine.begin() as conn:
        gone = [name for name in store.lease_holders(conn, now) if liveness.provably_gone(name)]
        rows = store.end_leases(conn, gone, now)
        for process in store.list_processes(conn, role=ROLE):
            if liveness.provably_gone(process.name):
                store.remove_process(conn, process.name)
    if gone:
        log.warning("took back %d rows of %d dead workers: %s", rows, len(gone), ", ".join(gone))
    return gone


class LeaseKeeper:
    """The heartbeat of one delivery loop: a daemon thread that renews the loop's leases and its
    ``processes`` row every ``lease / 3`` and takes back the rows of dead workers of this host.

    Use as a context manager around the loop; leaving it removes the ``processes`` row. A failed beat
    (the database away for a moment) is logged and tried again at the next one.
    """

    def __init__(
        self, engine: Engine, process: ProcessInfo, lease: timedelta, clock: Callable[[], datetime]
    ) -> None:
        self.engine, self.process, self.lease, self.clock = engine, process, lease, clock
        self.interval = max(lease.total_seconds() / 3, 0.05)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat {process.name}", daemon=True)

    @property
    def name(self) -> str:
        return self.process.name

    def __enter__(self) -> Self:
        self.beat()
        take_back_from_gone(self.engine, self.clock())
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._done.set()
        self._thread.join()
        try:
            with self.engine.begin() as conn:
                store.remove_process(conn, self.name)
        except SQLAlchemyError as error:
            log.warning("worker %s: could not remove its process row: %s", self.name, error)

    def beat(self) -> int:
        """Renew the leases and the process row now. :returns: the rows renewed."""
        now = self.clock()
        with self.engine.begin() as conn:
            renewed = store.renew_leases(conn, self.name, now + self.lease)
            store.beat(conn, self.process, now)
        return renewed

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            try:
                self.beat()
                take_back_from_gone(self.engine, self.clock())
            except SQLAlchemyError as error:
                log.warning(
                    "worker %s: heartbeat failed (tried again in %.1f s): %s", self.name, self.interval, error
                )
