"""Subscribers, for staff: add, remove, erase, export."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import Subscriber
from imk_outreach.services import tokens
from imk_outreach.services.database import engine_for
from imk_outreach.services.subscriber_base import (
    IMPORT_STATUSES,
    SOURCE_CLI,
    ErasedAddressError,
    InputError,
    Mailer,
    SubscriberExistsError,
    UnknownSubscriberError,
    _mailing,
    _send_confirmation,
    _unsubscribed,
    check_address,
    check_language,
    check_lists,
    check_name,
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
) -> AddResult:
    """Add one subscriber (source ``cli``). ``pending`` sends the confirmation mail; for an address
    that is already pending it sends it again.

    :raises InputError: a field is not acceptable.
    :raises SubscriberExistsError: the address is stored already (and not both pending).
    :raises ErasedAddressError: the address was erased.
    :raises MailError: the confirmation mail was not accepted (the subscriber stays pending).
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
    if status == "pending":
        with _mailing(settings, mailer) as active:
            _send_confirmation(settings, active, secret, saved, now)
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
        consent_version=settings.consent_version,
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
        return _unsubscribed(conn, subscriber, now)


def erase(settings: Settings, email: str, now: datetime | None = None) -> None:
    """Delete a subscriber and their lists for good. Only a keyed hash of the address stays (in
    ``erased_addresses``), so an import cannot add them again; outbox rows keep no reference (the
    foreign key sets it NULL).

    :raises UnknownSubscriberError: no such subscriber.
    """
    now = now or datetime.now(UTC)
    secret = tokens.secret_key(settings)
    with engine_for(settings).begin() as conn:
        subscriber = store.find_subscriber(conn, email)
        if subscriber is None or subscriber.id is None:
            raise UnknownSubscriberError(email.strip())
        store.delete_subscriber(conn, subscriber.id)
        store.remember_erased(conn, tokens.address_hash(secret, subscriber.email), now)


def export(settings: Settings, email: str | None = None) -> Iterator[dict[str, Any]]:
    """Every subscriber (or the one with ``email``) as a dict with :data:`EXPORT_FIELDS`, streamed in
    id order in batches (memory stays flat); times are ISO 8601 with offset, ``lists`` a list.

    :raises UnknownSubscriberError: ``email`` is given and not stored (raised at once, not when iterated).
    """
    if email is None:
        return _export_all(settings)
    with engine_for(settings).connect() as conn:
        found = store.find_subscriber(conn, email)
    if found is None:
        raise UnknownSubscriberError(email.strip())
    return iter([export_record(found)])


def _export_all(settings: Settings) -> Iterator[dict[str, Any]]:
    with engine_for(settings).connect() as conn:
        for subscriber in store.iter_subscribers(conn):
            yield export_record(subscriber)


def export_record(subscriber: Subscriber) -> dict[str, Any]:
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
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
