"""Enqueue and deliver, as one service: :mod:`enqueue` turns an approved edition into outbox rows,
:mod:`delivery` sends them (leases kept alive by a heartbeat, graceful stop), and :func:`status` shows
every edition's rows per state.

Guarantees (DESIGN.md): every row ends ``sent``, ``failed`` (with the reason), ``cancelled`` (the
recipient left before it went out) or ``unknown``; a dead worker's rows come back (within the short
lease, at once when it provably died on this host); the Message-ID derives from the row, so a re-send
after a crash carries the same id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.errors import ImkError
from imk_outreach.models import Edition
from imk_outreach.services.database import engine_for
from imk_outreach.services.delivery import (
    DeliverReport,
    DeliveryHandle,
    Progress,
    deliver,
    deliver_parallel,
    start_delivery,
    worker_name,
)
from imk_outreach.services.enqueue import CHANNEL, SendReport, send, send_test
from imk_outreach.services.liveness import provably_gone
from imk_outreach.services.mailserver import require_smtp  # what takes a dead worker's rows back
from imk_outreach.services.social_delivery import PostingHandle, PostReport, deliver_posts, start_posting

__all__ = [
    "CHANNEL",
    "DeliverReport",
    "DeliveryHandle",
    "DeliveryStopped",
    "PostReport",
    "PostingHandle",
    "deliver_posts",
    "start_posting",
    "EditionStatus",
    "Progress",
    "SendReport",
    "provably_gone",
    "require_smtp",
    "deliver",
    "deliver_parallel",
    "send",
    "send_test",
    "start_delivery",
    "status",
    "worker_name",
]


# -- status ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EditionStatus:
    edition: Edition
    counts: dict[str, int]
    last_error: str | None = None  # the newest error still on one of its rows (retry or failed)
    last_error_at: datetime | None = None


def status(settings: Settings) -> list[EditionStatus]:
    """Every edition with its outbox rows per state and its last delivery error."""
    with engine_for(settings).connect() as conn:
        editions = store.list_editions(conn)
        counts = store.outbox_counts(conn)
        errors = store.last_errors(conn)
    states = ("queued", "sending", "retry", "sent", "failed", "unknown", "cancelled")
    return [
        EditionStatus(e, {s: counts.get(e.id, {}).get(s, 0) for s in states}, *errors.get(e.id, (None, None)))
        for e in editions
    ]


class DeliveryStopped(ImkError):
    """Delivery was stopped before the outbox was empty."""
