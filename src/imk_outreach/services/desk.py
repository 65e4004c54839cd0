"""What the staff's dashboard shows, in one call: editions waiting for a person, held runs, the next
scheduled runs, the sending queue (depth and recent rate), the sources' health and the upcoming
social posts with the paused channels. Nothing is changed.

Cheap on purpose (the dashboard is the page opened most): only editions not yet queued are loaded,
and only an approved one is rendered (to tell whether its approval still holds); the queue is counted
in SQL, and only the rows of editions being delivered are read to count the recent rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.db.posts import PostRow
from imk_outreach.models import CampaignRun, Edition
from imk_outreach.services import catalog, compose, schedule, social_queue
from imk_outreach.services.catalog import SourceStatus
from imk_outreach.services.database import engine_for
from imk_outreach.services.schedule import NextRun

__all__ = ["ActiveEdition", "Overview", "QueueSummary", "overview"]

RATE_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class ActiveEdition:
    """An edition with rows still to deliver, and its rows per state."""

    edition: Edition
    counts: dict[str, int]


@dataclass(frozen=True)
class QueueSummary:
    waiting: int  # rows not delivered yet (queued, retry, sending, posting), mail and posts
    sent_last_hour: int  # rows of the editions being delivered that went out in the last hour
    active: tuple[ActiveEdition, ...] = ()


@dataclass(frozen=True)
class Overview:
    """``awaiting``: editions not queued yet (draft, approved, held), newest first, each with its
    approval state as :func:`compose.approval_state` gives it."""

    awaiting: list[tuple[Edition, str]]
    held: list[CampaignRun]
    next_runs: list[NextRun]
    queue: QueueSummary
    sources: list[SourceStatus]
    social: dict[str, list[PostRow]]
    paused: dict[str, str]  # channel -> why it is paused
    problems: list[str] = field(default_factory=list)  # campaign files that do not load


def overview(settings: Settings, now: datetime) -> Overview:
    """Everything the dashboard shows at ``now``."""
    campaigns, errors = compose.load_campaigns(settings)
    with engine_for(settings).connect() as conn:
        open_editions = store.list_editions(conn, None, store.OPEN_STATES)
        paused = store.paused_channels(conn)
    awaiting = [
        (e, compose.approval_state(settings, e) if e.state == "approved" else e.state) for e in open_editions
    ]
    held = [run for run in schedule.open_runs(settings) if run.state == "held"]
    return Overview(
        awaiting=awaiting,
        held=held,
        next_runs=schedule.next_runs(settings, campaigns, now),
        queue=queue_summary(settings, now),
        sources=catalog.source_statuses(settings),
        social=social_queue.upcoming(settings, limit=50),
        paused=paused,
        problems=[str(error) for error in errors],
    )


def queue_summary(settings: Settings, now: datetime) -> QueueSummary:
    """The queue's depth, and how many rows went out within :data:`RATE_WINDOW` before ``now``."""
    since = now - RATE_WINDOW
    with engine_for(settings).connect() as conn:
        waiting = store.pending_deliveries(conn)
        counts = store.outbox_counts(conn)
        active_ids = [
            edition_id
            for edition_id, states in counts.items()
            if any(states.get(s, 0) for s in store.PENDING_STATES)
        ]
        active, sent = [], 0
        for edition_id in sorted(active_ids):
            edition = store.get_edition(conn, edition_id)
            if edition is None:
                continue
            active.append(ActiveEdition(edition, counts[edition_id]))
            sent += sum(
                1
                for record in store.iter_edition_deliveries(conn, edition_id, "sent")
                if record.updated_at >= since
            )
    return QueueSummary(waiting, sent, tuple(active))
