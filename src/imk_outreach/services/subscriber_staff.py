"""Subscribers, for staff: add, remove, erase, export."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import Subscriber
from imk_outreach.services import consent, tokens
from imk_outreach.services.consent import ConsentEvent
from imk_outreach.services.csv_cells import neutralised
from imk_outreach.services.database import engine_for
from imk_outreach.services.erasure import ERASED_MARKER as ERASED_MARKER
from imk_outreach.services.erasure import Erasure as Erasure
from imk_outreach.services.erasure import erase as erase  # the erasure has its own module
from imk_outreach.services.subscriber_base import (
    EXPORT_FIELDS,
    IMPORT_STATUSES,
    SOURCE_CLI,
    ErasedAddressError,
    InputError,
    Mailer,
    SubscriberExistsError,
    UnknownSubscriberError,
    check_address,
    check_language,
    check_lists,
    check_name,
    mark_unsubscribed,
    queue_confirmation,
)

log = logging.getLogger(__name__)

# -- staff: add, remove, export, erase -------------------------------------------------------------


@dataclass(frozen=True)
class AddResult:
    subscriber: Subscriber
    mailed: bool


def add(
    settings: Settings,
    email: str,
    name: str | None = None,
    language: str | None = None,
    lists: Iterable[str] = (),
    status: str = "confirmed",
    now: datetime | None = None,
    mailer: Mailer | None = None,
    consent_note: str | None = None,
) -> AddResult:
    """Add one subscriber (source ``cli``) with an ``add`` consent event (``consent_note``: where the
    consent comes from). ``pending`` queues the confirmation mail (in the outbox, sent by ``deliver``,
    ``worker`` or ``run``); for an address that is already pending it queues it again.

    :raises InputError: a field is not acceptable.
    :raises SubscriberExistsError: the address is stored already (and not both pending).
    :raises ErasedAddressError: the address was erased.
    """
    now = now or datetime.now(UTC)
    status = _import_status(status)
    address = check_address(email)
    subscriber = Subscriber(
        email=address,
        name=check_name(name),
        language=check_language(settings, language),
        lists=check_lists(settings, lists, default=True),
    )
    secret = tokens.secret_key(settings)
    with engine_for(settings).begin() as conn:
        existing = store.find_subscriber(conn, address)
        if existing is not None and not (existing.status == status == "pending"):
            raise SubscriberExistsError(existing.email, existing.status)
        if existing is None and store.is_erased(conn, tokens.address_hash(secret, address)):
            raise ErasedAddressError(address)
        saved = existing or store.save_subscriber(
            conn, _new(settings, subscriber, status, SOURCE_CLI, now), now
        )
        if existing is None:
            note = " ".join((consent_note or "").split()) or None
            detail = {"status": status, "lists": list(saved.lists)}
            consent.record(
                conn,
                saved.id,
                "add",
                now,
                language=saved.language,
                source=SOURCE_CLI,
                note=note,
                detail=detail,
            )
        if status == "pending":  # queued with the row: the outbox sends it (deliver, worker, run)
            queue_confirmation(conn, saved, now)
    return AddResult(saved, status == "pending")


def _import_status(status: str) -> str:
    if status not in IMPORT_STATUSES:
        raise InputError("status", status, f"unknown status {status!r} (use {' or '.join(IMPORT_STATUSES)})")
    return status


def _new(settings: Settings, subscriber: Subscriber, status: str, source: str, now: datetime) -> Subscriber:
    return replace(
        subscriber,
        status=status,
        signup_at=now,
        confirmed_at=now if status == "confirmed" else None,
        consent_version=None,  # only a sign-up on the web shows a consent text (the event keeps the note)
        source=source,
    )


def remove(settings: Settings, email: str, now: datetime | None = None) -> Subscriber:
    """Unsubscribe an address (the record and its evidence stay; see :func:`erase` to delete).

    :raises UnknownSubscriberError: no such subscriber.
    """
    now = now or datetime.now(UTC)
    with engine_for(settings).begin() as conn:
        subscriber = store.find_subscriber(conn, email)
        if subscriber is None:
            raise UnknownSubscriberError(email.strip())
        left = mark_unsubscribed(conn, subscriber, now)
        if left.status != subscriber.status:
            detail = {"lists": list(left.lists), "status_before": subscriber.status}
            consent.record(
                conn, left.id, "unsubscribe", now, language=left.language, source=SOURCE_CLI, detail=detail
            )
        return left


# The export: the subscriber row and the consent evidence. The JSON has every event; the CSV the events
# in one compact cell, since one row per person is what staff open in a spreadsheet.
EXPORT_JSON_FIELDS = (*EXPORT_FIELDS, "unsubscribed_at", "bounce_reason", "consent_events")
EXPORT_CSV_COLUMNS = (*EXPORT_FIELDS, "unsubscribed_at", "bounce_reason", "consent_history")
_EXPORT_BATCH = 500


def export(settings: Settings, email: str | None = None) -> Iterator[dict[str, Any]]:
    """Every subscriber (or the one with ``email``) as a dict with :data:`EXPORT_JSON_FIELDS`, streamed
    in id order in batches (memory stays flat); times are ISO 8601 with offset, ``lists`` a list,
    ``consent_events`` every event oldest first (see :func:`consent.event_json`).

    :raises UnknownSubscriberError: ``email`` is given and not stored (raised at once, not when iterated).
    """
    if email is None:
        return _export_all(settings)
    with engine_for(settings).connect() as conn:
        found = store.find_subscriber(conn, email)
        if found is None or found.id is None:
            raise UnknownSubscriberError(email.strip())
        events = store.consent_events_of(conn, found.id)
    return iter([export_record(found, events)])


def _export_all(settings: Settings) -> Iterator[dict[str, Any]]:
    with engine_for(settings).connect() as conn:
        batch: list[Subscriber] = []
        for subscriber in store.iter_subscribers(conn):
            batch.append(subscriber)
            if len(batch) == _EXPORT_BATCH:
                yield from _with_events(conn, batch)
                batch = []
        yield from _with_events(conn, batch)


def _with_events(conn: Connection, batch: list[Subscriber]) -> Iterator[dict[str, Any]]:
    events = store.consent_events_by_subscriber(conn, [s.id for s in batch if s.id is not None])
    for subscriber in batch:
        yield export_record(subscriber, events.get(subscriber.id or 0, []))


def export_record(subscriber: Subscriber, events: Sequence[ConsentEvent] = ()) -> dict[str, Any]:
    return {
        "email": subscriber.email,
        "name": subscriber.name,
        "language": subscriber.language,
        "lists": list(subscriber.lists),
        "status": subscriber.status,
        "signup_at": _iso(subscriber.signup_at),
        "confirmed_at": _iso(subscriber.confirmed_at),
        "consent_version": subscriber.consent_version,
        "source": subscriber.source,
        "unsubscribed_at": _iso(subscriber.unsubscribed_at),
        "bounce_reason": subscriber.bounce_reason,
        "consent_events": [consent.event_json(event) for event in events],
    }


def csv_cells(record: dict[str, Any]) -> dict[str, str]:
    """An export record as the cells of a CSV row (:data:`EXPORT_CSV_COLUMNS`): lists joined by ``;``,
    the events in one ``consent_history`` cell, and every cell a spreadsheet would run as a formula
    neutralised (see :mod:`csv_cells`; the import reads it back unchanged)."""
    cells = {name: record.get(name) for name in EXPORT_CSV_COLUMNS}
    cells["lists"] = ";".join(record["lists"])
    cells["consent_history"] = consent.compact(record["consent_events"])
    return {name: neutralised("" if value is None else str(value)) for name, value in cells.items()}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
