"""Records a person can read: who got an edition (one row per recipient, with the server's reply) and
everything stored about one subscriber (status, lists, consent evidence, what was sent to them)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.db.records import OutboxRecord
from imk_outreach.errors import ImkError
from imk_outreach.models import Edition, Subscriber
from imk_outreach.services.compose import get_edition
from imk_outreach.services.database import engine_for
from imk_outreach.services.subscriptions import UnknownSubscriberError

__all__ = [
    "OUTBOX_STATES",
    "EditionDeliveries",
    "OutboxRecord",
    "SubscriberRecord",
    "UnknownStateError",
    "UnknownSubscriberError",
    "edition_deliveries",
    "iter_deliveries",
    "subscriber_record",
]

OUTBOX_STATES: tuple[str, ...] = (*store.PENDING_STATES, *store.FINAL_STATES)


class UnknownStateError(ImkError):
    def __init__(self, state: str) -> None:
        self.state = state
        super().__init__(f"no outbox state {state!r} (states: {', '.join(OUTBOX_STATES)})")


@dataclass(frozen=True)
class EditionDeliveries:
    """An edition and how many of its rows are in each state (the rows: :func:`iter_deliveries`)."""

    edition: Edition
    counts: dict[str, int]

    def rows(self, state: str | None = None) -> int:
        return self.counts.get(state, 0) if state else sum(self.counts.values())


def edition_deliveries(settings: Settings, edition_id: int, state: str | None = None) -> EditionDeliveries:
    """The edition with its row counts per state (all of :data:`OUTBOX_STATES`, zeros included).

    :raises EditionError: no edition with that id (the message names ``imk-outreach editions``).
    :raises UnknownStateError: ``state`` is not an outbox state.
    """
    check_state(state)
    edition = get_edition(settings, edition_id)
    with engine_for(settings).connect() as conn:
        found = store.outbox_counts(conn, [edition_id]).get(edition_id, {})
    return EditionDeliveries(edition, {s: found.get(s, 0) for s in OUTBOX_STATES})


def check_state(state: str | None) -> None:
    """:raises UnknownStateError: ``state`` is given and not an outbox state."""
    if state is not None and state not in OUTBOX_STATES:
        raise UnknownStateError(state)


def iter_deliveries(
    settings: Settings, edition_id: int, state: str | None = None, limit: int | None = None
) -> Iterator[OutboxRecord]:
    """The edition's rows (``state`` only, if given) in queue order, streamed: memory stays flat for a
    campaign of 100,000. ``limit`` stops after that many rows. Call :func:`edition_deliveries` first
    to check the edition and the state."""
    check_state(state)
    batch = 1000 if limit is None else max(1, min(limit, 1000))
    with engine_for(settings).connect() as conn:
        for count, record in enumerate(store.iter_edition_deliveries(conn, edition_id, state, batch)):
            if limit is not None and count >= limit:
                return
            yield record


@dataclass(frozen=True)
class SubscriberRecord:
    """A subscriber as stored (status, language, lists, consent evidence) and every outbox row of
    theirs, newest edition first. ``list_labels``: list name -> its label in their language."""

    subscriber: Subscriber
    list_labels: dict[str, str]
    deliveries: list[OutboxRecord]


def subscriber_record(settings: Settings, email: str) -> SubscriberRecord:
    """Everything stored about the subscriber with ``email`` (compared ignoring case).

    :raises UnknownSubscriberError: no subscriber with that address (an erased one left only a hash).
    """
    with engine_for(settings).connect() as conn:
        subscriber = store.find_subscriber(conn, email)
        if subscriber is None or subscriber.id is None:
            raise UnknownSubscriberError(email.strip())
        deliveries = store.subscriber_deliveries(conn, subscriber.id)
    labels = {name: _label(settings, name, subscriber.language) for name in subscriber.lists}
    return SubscriberRecord(subscriber, labels, deliveries)


def _label(settings: Settings, name: str, language: str) -> str:
    labels = dict(settings.lists.get(name, {}))
    return labels.get(language) or next(iter(labels.values()), name)
