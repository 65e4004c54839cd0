"""Subscribers for staff in the web app: search, and one subscriber's record by id (status, lists,
consent evidence and what was sent to them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.db import subscriber_search as search_db
from imk_outreach.errors import ImkError
from imk_outreach.models import Subscriber
from imk_outreach.services import consent, records
from imk_outreach.services.database import engine_for
from imk_outreach.services.erasure import Erasure, erase

__all__ = [
    "STATUSES",
    "ErasureNotConfirmedError",
    "NoSuchSubscriberError",
    "SubscriberPage",
    "erase_confirmed",
    "search_subscribers",
    "subscriber_page",
]

STATUSES = ("pending", "confirmed", "unsubscribed", "bounced")
MAX_PAGE = 500


class NoSuchSubscriberError(ImkError):
    def __init__(self, subscriber_id: int) -> None:
        self.subscriber_id = subscriber_id
        super().__init__(f"no subscriber with id {subscriber_id} (erased, or never stored)")


class ErasureNotConfirmedError(ImkError):
    """The address typed to confirm an erasure is not the subscriber's: nothing was erased."""

    def __init__(self, typed: str) -> None:
        self.typed = typed
        super().__init__(f"the address typed ({typed!r}) is not the subscriber's; nothing was erased")


def search_subscribers(
    settings: Settings,
    *,
    text: str | None = None,
    status: str | None = None,
    list_name: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Subscriber], int]:
    """One page of the subscribers that match, in address order, and how many match in all.

    :param text: a part of the address or the name (case ignored).
    :param status: one of :data:`STATUSES` (another value matches no one).
    :param list_name: members of this list.
    """
    query = search_db.SubscriberQuery(
        text=(text or "").strip() or None,
        status=(status or "").strip() or None,
        list_name=(list_name or "").strip() or None,
    )
    with engine_for(settings).connect() as conn:
        return search_db.search_subscribers(conn, query, max(1, min(limit, MAX_PAGE)), max(0, offset))


@dataclass(frozen=True)
class SubscriberPage:
    """What staff see of one subscriber: the record (``subscribers show``) and the consent evidence."""

    record: records.SubscriberRecord
    evidence: consent.Evidence


def subscriber_page(settings: Settings, subscriber_id: int) -> SubscriberPage:
    """The record and consent evidence of the subscriber with this id.

    :raises NoSuchSubscriberError: no such subscriber (or erased).
    """
    found = _subscriber(settings, subscriber_id)
    record = records.subscriber_record(settings, found.email)
    return SubscriberPage(record, consent.history(settings, found.id))


def _subscriber(settings: Settings, subscriber_id: int) -> Subscriber:
    with engine_for(settings).connect() as conn:
        found = store.get_subscriber(conn, subscriber_id)
    if found is None or found.id is None:
        raise NoSuchSubscriberError(subscriber_id)
    return found


def erase_confirmed(
    settings: Settings, subscriber_id: int, typed_address: str, now: datetime | None = None
) -> tuple[str, Erasure]:
    """Erase the subscriber (:func:`erasure.erase`) when ``typed_address`` is their address (case and
    surrounding blanks ignored), typed again by the person erasing as a confirmation.

    :returns: the address erased and what the erasure did.
    :raises NoSuchSubscriberError: no such subscriber.
    :raises ErasureNotConfirmedError: the typed address is another one (nothing is erased).
    """
    found = _subscriber(settings, subscriber_id)
    if store.email_key(typed_address) != store.email_key(found.email):
        raise ErasureNotConfirmedError(typed_address.strip())
    return found.email, erase(settings, found.email, now)
