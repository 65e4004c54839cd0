"""What a delivery run did, as a person needs to read it: each distinct error with its count and, for
rows waiting for a retry, when the next try is; the exit code the run earns; the progress bar's totals.

Errors come from two places: the run's own report (rows it failed, per normalised reason) and the
outbox (every row waiting for a retry, with its last error and next attempt time), so a row that failed
in an earlier run is not reported again, while a row still waiting is, whichever run made it wait.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.publishers.base import PublishError
from imk_outreach.services.database import engine_for
from imk_outreach.services.delivery import DeliverReport, Progress, deliver_parallel
from imk_outreach.services.delivery_errors import normalise_error

__all__ = [
    "DeliverySummary",
    "ErrorGroup",
    "ProgressTotals",
    "normalise_error",
    "run_deliver",
    "summarise",
]


@dataclass(frozen=True)
class ErrorGroup:
    """``count`` rows with the same (normalised) error; for waiting rows the earliest next try."""

    count: int
    error: str
    next_attempt_at: datetime | None = None


@dataclass(frozen=True)
class DeliverySummary:
    """A delivery run and what it left behind.

    ``waiting``: rows in the outbox waiting for a retry, per error, most first. ``failed``: rows this run
    failed for good, per reason, most first. ``queued``: rows queued that no run has tried yet (queued
    after this run began, or handed back when the run stopped). ``stopped_by``: why the run stopped
    before the outbox was done, when nothing more could be sent at all (login refused, TLS broken).
    """

    report: DeliverReport
    waiting: list[ErrorGroup] = field(default_factory=list)
    failed: list[ErrorGroup] = field(default_factory=list)
    queued: int = 0
    stopped_by: str | None = None

    @property
    def waiting_rows(self) -> int:
        return sum(group.count for group in self.waiting)

    @property
    def exit_code(self) -> int:
        """1 when nothing went out although something was to go (the server unreachable, the login
        refused, every recipient refused); 3 when some went and others failed or still wait for a
        retry; 0 when everything tried went out (also when nothing was due)."""
        unfinished = bool(self.report.failed or self.waiting_rows or self.stopped_by)
        if not unfinished:
            return 0
        return 1 if self.report.sent == 0 else 3


def run_deliver(
    settings: Settings, processes: int = 1, until_empty: bool = False, progress: Progress | None = None
) -> DeliverySummary:
    """Deliver (see :func:`~imk_outreach.services.delivery.deliver_parallel`) and summarise the run.

    A :class:`PublishError` (nothing can be sent: login refused, TLS or AUTH broken) does not escape:
    the rows went back to the queue, and the summary says why in ``stopped_by``.
    """
    try:
        report = deliver_parallel(settings, processes, until_empty=until_empty, progress=progress)
    except PublishError as error:
        return summarise(settings, DeliverReport(), str(error))
    return summarise(settings, report)


def summarise(settings: Settings, report: DeliverReport, stopped_by: str | None = None) -> DeliverySummary:
    """The run's failures and the outbox's waiting rows, each grouped by :func:`normalise_error`."""
    waiting: dict[str, tuple[int, datetime]] = {}
    with engine_for(settings).connect() as conn:
        for error, count, at in store.retry_errors(conn):
            key = normalise_error(error)
            before = waiting.get(key)
            waiting[key] = (count, at) if before is None else (before[0] + count, min(before[1], at))
        queued = store.count_queued(conn)
    groups = [ErrorGroup(count, error, at) for error, (count, at) in waiting.items()]
    failed = [ErrorGroup(count, reason) for reason, count in report.failures.items()]
    return DeliverySummary(report, _most_first(groups), _most_first(failed), queued, stopped_by)


def _most_first(groups: list[ErrorGroup]) -> list[ErrorGroup]:
    return sorted(groups, key=lambda group: (-group.count, group.error))


class ProgressTotals:
    """The progress bar's numbers: rows this run has dealt with, and how many it will have dealt with
    once what is due now is done (both grow as rows come due or are queued while it runs).

    The loop reports its own totals and the rows still to try (due by its horizon or in flight, across
    all workers). With several processes only one reports, so the rows the others settled are those
    that left the count without this process settling them.
    """

    def __init__(self) -> None:
        self.done = 0
        self.total = 0

    def update(self, report: DeliverReport, remaining: int) -> tuple[int, int]:
        """:returns: (done, total) after this report."""
        own = report.sent + report.failed + report.retry + report.cancelled
        self.done = max(own, self.done, self.total - remaining)
        self.total = max(self.total, self.done + remaining)
        return self.done, self.total
