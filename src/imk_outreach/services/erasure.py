"""Erasure of a subscriber (``subscribers erase``): afterwards neither the address nor the name is in
the database, only a keyed hash of the address (``erased_addresses``, so no import adds it again; a
sign-up on the web may, as fresh consent).

What goes where:

* The subscriber's row goes, with their lists and consent events (ON DELETE CASCADE). No tombstone row
  is kept: the hash is all suppression needs, and links die with the row (see ``tokens``: a returning
  address gets a new row with a new ``token_nonce``, so old links stay dead even under a reused id).
* Their outbox rows stay, so the delivery counts of past editions do not change, but they lose the
  reference (``subscriber_id`` NULL) and the mail server's replies and errors are cleaned: servers echo
  the address ("550 5.1.1 <x@y>: user unknown"), so every form of the address, its local part and the
  name (whole and each word of three letters or more) become :data:`ERASED_MARKER`. Rows a worker holds
  at that moment are taken back, so its outcome (with the echo) is not written after the erasure; the
  next claim cancels them ("recipient erased before sending"), as for rows still queued.
* Then the database files: SQLite runs with ``secure_delete`` (deleted content is zeroed) and the ``-wal``
  file is checkpointed and emptied; PostgreSQL vacuums the people tables (docs/subscribers.md says what
  stays on PostgreSQL until the outbox is vacuumed, and in WAL archives and backups).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from email_validator import EmailNotValidError, validate_email

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import Subscriber
from imk_outreach.services import tokens
from imk_outreach.services.database import engine_for
from imk_outreach.services.subscriber_base import UnknownSubscriberError

log = logging.getLogger(__name__)

ERASED_MARKER = "(erased)"
_SHORTEST_PART = 3  # shorter local parts and name words are not replaced on their own


@dataclass(frozen=True)
class Erasure:
    """What an erasure did. ``outbox_rows``: rows kept for the counts (their replies cleaned);
    ``files_cleared``: False when the database could not clear its files now (SQLite: another process
    was reading, the ``-wal`` file keeps old pages until the next checkpoint)."""

    subscriber_id: int
    outbox_rows: int
    files_cleared: bool


def erase(settings: Settings, email: str, now: datetime | None = None) -> Erasure:
    """Delete a subscriber for good; only a keyed hash of the address stays (see the module docstring).

    :raises UnknownSubscriberError: no such subscriber.
    """
    now = now or datetime.now(UTC)
    secret = tokens.secret_key(settings)
    engine = engine_for(settings)
    with engine.begin() as conn:
        subscriber = store.find_subscriber(conn, email)
        if subscriber is None or subscriber.id is None:
            raise UnknownSubscriberError(email.strip())
        store.take_back_in_flight(conn, subscriber.id, now)
        texts = store.outbox_texts_of(conn, subscriber.id)
        scrub = scrubber(subscriber)
        cleaned = [(row_id, _clean(scrub, reply), _clean(scrub, error)) for row_id, reply, error in texts]
        store.rewrite_outbox_texts(
            conn, [new for new, old in zip(cleaned, texts, strict=True) if new != old], now
        )
        store.delete_subscriber(conn, subscriber.id)
        store.remember_erased(conn, tokens.address_hash(secret, subscriber.email), now)
    cleared = store.purge_deleted(engine)
    log.info("subscriber %s erased (%d outbox rows kept, replies cleaned)", subscriber.id, len(texts))
    if not cleared:
        log.warning(
            "subscriber %s erased, but the database files could not be cleared now; "
            "see 'Erasure' in docs/subscribers.md",
            subscriber.id,
        )
    return Erasure(subscriber.id, len(texts), cleared)


def _clean(scrub: Callable[[str], str], text: str | None) -> str | None:
    return scrub(text) if text else text


def scrubber(subscriber: Subscriber) -> Callable[[str], str]:
    """A function that replaces the subscriber's address (as stored, lower-cased, with an ASCII domain),
    its local part, and their name (whole and word by word) with :data:`ERASED_MARKER`, ignoring case."""
    whole = {subscriber.email, store.email_key(subscriber.email), _ascii_form(subscriber.email)}
    name = " ".join(subscriber.name.split())
    if name:
        whole.add(name)
    words = {subscriber.email.rpartition("@")[0], *re.findall(r"\w+", name)}
    bounded = {word for word in words if len(word) >= _SHORTEST_PART} - whole
    alternatives = [(text, False) for text in whole if text] + [(text, True) for text in bounded]
    alternatives.sort(key=lambda pair: len(pair[0]), reverse=True)  # the longest form wins
    pattern = re.compile(
        "|".join(rf"(?<!\w){re.escape(t)}(?!\w)" if alone else re.escape(t) for t, alone in alternatives),
        re.IGNORECASE,
    )
    return lambda text: pattern.sub(ERASED_MARKER, text)


def _ascii_form(address: str) -> str:
    """The address as a mail server writes it back: the domain in IDNA (``xn--``) form."""
    try:
        return (
            validate_email(address, check_deliverability=False, allow_smtputf8=False).ascii_email or address
        )
    except EmailNotValidError:
        return address
