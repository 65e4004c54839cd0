"""Confirmation mails in the outbox: the delivery loop's part for rows without an edition (channel
``confirm``, queued by a sign-up, see :func:`~imk_outreach.services.subscriber_base.queue_confirmation`).

Such a row is sent like any other (same SMTP sessions, leases, retries and back-off of ``smtp.retry``;
a permanent refusal of the address marks the person bounced), but its message is built when it is sent,
for the subscriber as they are then (language, lists, a fresh link). It is cancelled unsent when the
person is no longer waiting for it: confirmed (with an earlier link), unsubscribed, bounced or erased.
The ``Message-ID`` derives from the row, so a re-send after a crash carries the same id.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from datetime import datetime

from imk_outreach.config import Settings
from imk_outreach.errors import ImkError
from imk_outreach.models import Delivery, Subscriber
from imk_outreach.services.mailserver import sender_domain
from imk_outreach.services.subscriber_base import confirmation_message

log = logging.getLogger(__name__)


def not_due(subscriber: Subscriber | None) -> str | None:
    """Why a confirmation mail must not go out now (kept as the row's error), None when it is due."""
    if subscriber is None:
        return "recipient erased before sending"
    if subscriber.status != "pending":
        return f"recipient {subscriber.status} before sending"
    return None


def message_id(secret: str, settings: Settings, delivery: Delivery) -> str:
    """Derived from the outbox row alone (as a newsletter's is)."""
    tag = hmac.new(secret.encode(), f"confirm:{delivery.id}".encode(), hashlib.sha256).hexdigest()
    return f"<confirm.{delivery.id}.{tag[:16]}@{sender_domain(settings)}>"


def builder(
    settings: Settings, secret: str, subscriber: Subscriber, message_id: str, now: datetime
) -> Callable[[], bytes]:
    """What the SMTP session calls right before sending: the message as of ``now``. A broken confirmation
    template fails this row with the reason (the sender reports a ValueError as "cannot build the
    message"), not the whole delivery loop (``imk-outreach check`` finds syntax errors before)."""

    def build() -> bytes:
        try:
            return confirmation_message(settings, secret, subscriber, now, message_id)
        except ImkError as exc:
            log.error("confirmation mail of subscriber %s cannot be built: %s", subscriber.id, exc)
            raise ValueError(str(exc)) from exc

    return build
