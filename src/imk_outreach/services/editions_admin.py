"""Stopping mistakes: ``cancel`` stops an edition being delivered, ``discard`` removes one not queued.

Cancelling is safe while workers deliver: the edition's waiting rows end ``cancelled`` at once (error
``edition cancelled``); rows a worker has already claimed may still go out (it finishes that batch,
and what it gives back unsent ends ``cancelled`` too, never queued again); no worker claims another
row of it. Rows already sent stay ``sent``. A cancelled edition's items count as not sent, so the next
edition of the campaign may pick them again.
"""

from __future__ import annotations

import getpass
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import Edition
from imk_outreach.services.compose import EditionError, get_edition
from imk_outreach.services.database import engine_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CancelReport:
    edition: Edition
    cancelled: int  # rows that were waiting and will not go out
    in_flight: int  # rows a worker holds: they may still go out
    sent: int  # rows that had gone out already (they stay sent)


def cancel(
    settings: Settings, edition_id: int, by: str | None = None, now: datetime | None = None
) -> CancelReport:
    """Stop a queued edition: its unsent rows end ``cancelled``, the edition too.

    :raises EditionError: no such edition, or one that is not being delivered (a draft, sent, ...).
    """
    now = now or datetime.now(UTC)
    who = by or getpass.getuser()
    edition = get_edition(settings, edition_id)
    with engine_for(settings).begin() as conn:
        state = store.lock_edition(conn, edition_id)  # a send or a worker's settle waits for this
        if state not in store.CANCELLABLE_STATES:
            raise EditionError(_not_cancellable(edition, state))
        reason = f"{store.EDITION_CANCELLED} by {who}"
        cancelled = store.cancel_unsent(conn, edition_id, reason, now)
        store.set_edition_state(conn, edition_id, "cancelled", reason=f"{reason} at {now.isoformat()}")
        counts = store.outbox_counts(conn, [edition_id]).get(edition_id, {})
    log.info(
        "edition %d of %s cancelled by %s: %d unsent rows cancelled",
        edition_id,
        edition.campaign,
        who,
        cancelled,
    )
    return CancelReport(edition, cancelled, counts.get("sending", 0), counts.get("sent", 0))


def _not_cancellable(edition: Edition, state: str | None) -> str:
    which = f"edition {edition.id} of {edition.campaign}"
    if state is None:
        return f"no edition {edition.id} (see 'imk-outreach editions')"
    if state in store.OPEN_STATES:
        return (
            f"{which} is {state}, not queued: nothing is being sent. "
            f"'imk-outreach discard {edition.id}' removes it"
        )
    if state == "sent":
        return f"{which} was sent already; a sent edition cannot be cancelled"
    return f"{which} is {state}; only a queued edition can be cancelled"


def discard(settings: Settings, edition_id: int) -> Edition:
    """Remove an edition that was never queued (draft, approved or held) with its selection, so the
    next ``preview`` or run composes afresh.

    :raises EditionError: no such edition, or one that was queued or sent (cancel stops a queued one).
    """
    edition = get_edition(settings, edition_id)
    with engine_for(settings).begin() as conn:
        state = store.lock_edition(conn, edition_id)
        if state not in store.OPEN_STATES:
            raise EditionError(_not_discardable(edition, state))
        store.delete_edition(conn, edition_id)
    log.info("edition %d of %s (%s) discarded", edition_id, edition.campaign, state)
    return edition


def _not_discardable(edition: Edition, state: str | None) -> str:
    which = f"edition {edition.id} of {edition.campaign}"
    if state in store.CANCELLABLE_STATES:
        return f"{which} is {state}: it is being sent; 'imk-outreach cancel {edition.id}' stops it"
    return (
        f"{which} is {state} and is kept as the record of what happened; "
        "only an edition not yet queued (draft, approved or held) can be discarded"
    )


def hold(settings: Settings, edition_id: int, by: str | None = None, now: datetime | None = None) -> Edition:
    """Hold an edition not yet queued (draft or approved): its approval, if any, is withdrawn and
    nothing sends it (neither ``send`` nor the scheduler) until a person approves it again, which
    releases it at once (``approve``).

    :raises EditionError: no such edition, or one that is held, queued or sent already.
    """
    now = now or datetime.now(UTC)
    who = by or getpass.getuser()
    edition = get_edition(settings, edition_id)
    with engine_for(settings).begin() as conn:
        state = store.lock_edition(conn, edition_id)
        if state not in ("draft", "approved"):
            if state == "held":
                raise EditionError(f"edition {edition_id} is held already; approving it releases it")
            raise EditionError(_not_discardable(edition, state).replace("discarded", "held"))
        held = replace(
            edition,
            state="held",
            approved_by=None,
            approved_at=None,
            approved_hash=None,
            skip_reason=f"held by {who} at {now.isoformat()}",
        )
        store.update_edition(conn, held)
    log.info("edition %d of %s held by %s", edition_id, edition.campaign, who)
    return held
