"""Subscribers: web sign-up with double opt-in, confirmation, preferences, unsubscribe, CSV import,
export and erasure.

Decisions:

* An address is checked with ``email-validator`` (syntax only, no DNS; no non-ASCII local part, since
  the mails go out without SMTPUTF8) and stored in its normalised form (domain lower-cased). It is
  unique ignoring case.
* Consent evidence: ``signup_at``, ``confirmed_at``, ``consent_version`` (``settings.consent_version``
  at sign-up), ``ip_hash`` (HMAC of the IP with the secret key; the IP is never stored) and ``source``
  (``web:/subscribe``, ``import:FILE.csv``, ``cli``).
* A web sign-up never tells whether an address is known: a confirmed address gets no mail, a pending
  one gets the confirmation again (at most every :data:`RESEND_AFTER`), every case shows the same page.
  An address that unsubscribed, bounced or was erased may sign up again: the double opt-in is fresh
  consent. An import never re-adds such an address.
* Import: ``lists`` empty or absent means the first configured list; ``language`` empty or absent
  means the first configured language. For a subscriber already stored, an import only adds: a given
  name or language replaces the stored one, given lists are added to theirs (an import never removes a
  list someone chose on the preferences page) and a confirmed subscriber stays confirmed. So importing
  the same file twice changes nothing. Columns other than email, name, language and lists (for example
  those of an export) are ignored and reported.
* Mails are sent after the transaction commits, so a rolled-back sign-up never mails anyone. A web
  sign-up whose confirmation mail fails is undone (a new address leaves nothing behind) and reported,
  so the person can simply try again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import Subscriber
from imk_outreach.services import tokens
from imk_outreach.services.database import engine_for
from imk_outreach.services.subscriber_base import *  # noqa: F403  (the facade: every public name)
from imk_outreach.services.subscriber_base import (
    RESEND_AFTER,
    SOURCE_WEB,
    Mailer,
    MailError,
    SignupOutcome,
    _mailing,
    _send_confirmation,
    _unsubscribed,
    check_address,
    check_language,
    check_lists,
    check_name,
)
from imk_outreach.services.subscriber_import import *  # noqa: F403  (the facade: every public name)
from imk_outreach.services.subscriber_staff import *  # noqa: F403  (the facade: every public name)
from imk_outreach.services.tokens import InvalidTokenError as InvalidTokenError
from imk_outreach.services.tokens import Purpose

log = logging.getLogger(__name__)

# -- web sign-up, confirmation, preferences, unsubscribe -------------------------------------------


def subscribe(
    settings: Settings,
    email: str,
    name: str | None,
    language: str | None,
    lists: Iterable[str],
    ip: str | None,
    source: str = SOURCE_WEB,
    now: datetime | None = None,
    mailer: Mailer | None = None,
) -> SignupOutcome:
    """A sign-up: the address becomes (or stays) pending and gets the confirmation mail.

    The caller shows the same answer whatever this returns, so nobody learns whether an address is
    known. ``ip`` is only kept as a keyed hash.

    :raises InputError: a field is not acceptable (nothing is stored).
    :raises MailError: the confirmation mail was not accepted (the sign-up is undone).
    """
    now = now or datetime.now(UTC)
    address = check_address(email)
    wanted = Subscriber(
        email=address,
        name=check_name(name),
        language=check_language(settings, language),
        lists=check_lists(settings, lists, default=False),
    )
    secret = tokens.secret_key(settings)
    try:
        before, saved = _store_signup(settings, secret, wanted, ip, source, now)
    except IntegrityError:  # the same new address signed up at the same moment: that one mails
        return "recently_mailed"
    if saved is None:
        return (
            "already_confirmed" if before is not None and before.status == "confirmed" else "recently_mailed"
        )
    try:
        with _mailing(settings, mailer) as active:
            _send_confirmation(settings, active, secret, saved, now)
    except MailError:
        _undo_signup(settings, before, saved, now)
        raise
    return "mailed"


def _store_signup(
    settings: Settings, secret: str, wanted: Subscriber, ip: str | None, source: str, now: datetime
) -> tuple[Subscriber | None, Subscriber | None]:
    """(the subscriber before, the pending subscriber saved), or (before, None) when no mail is due."""
    with engine_for(settings).begin() as conn:
        before = store.find_subscriber(conn, wanted.email)
        if before is not None and before.status == "confirmed":
            return before, None
        if before is not None and before.status == "pending" and _recently_mailed(before, now):
            return before, None
        base = before or wanted
        pending = replace(
            base,
            name=wanted.name or base.name,
            language=wanted.language,
            lists=wanted.lists,
            status="pending",
            confirmed_at=None,
            unsubscribed_at=None,
            bounce_reason=None,
            signup_at=now,
            consent_version=settings.consent_version,
            ip_hash=tokens.ip_hash(secret, ip) if ip else None,
            source=source,
        )
        return before, store.save_subscriber(conn, pending, now)


def _recently_mailed(subscriber: Subscriber, now: datetime) -> bool:
    return subscriber.signup_at is not None and now - subscriber.signup_at < RESEND_AFTER


def _undo_signup(settings: Settings, before: Subscriber | None, saved: Subscriber, now: datetime) -> None:
    """Put back what a sign-up changed, after its confirmation mail failed."""
    with engine_for(settings).begin() as conn:
        if before is None:
            assert saved.id is not None
            store.delete_subscriber(conn, saved.id)
        else:
            store.save_subscriber(conn, before, now)


def _by_token(conn: Connection, secret: str, purpose: Purpose, token: str, now: datetime) -> Subscriber:
    claim = tokens.read_token(secret, purpose, token, now)
    subscriber = store.get_subscriber(conn, claim.subscriber_id)
    if subscriber is None or not tokens.holds_for(secret, claim, subscriber):
        raise InvalidTokenError(purpose)
    if purpose == "confirm" and subscriber.status not in ("pending", "confirmed"):
        raise InvalidTokenError(purpose)  # unsubscribed or bounced since: this old link must not re-add
    return subscriber


def subscriber_for(
    settings: Settings, purpose: Purpose, token: str, now: datetime | None = None
) -> Subscriber:
    """The subscriber a link names (for the page that shows the button; nothing changes).

    :raises InvalidTokenError: tampered, expired, another purpose, or the subscriber is gone.
    """
    secret = tokens.secret_key(settings)
    with engine_for(settings).connect() as conn:
        return _by_token(conn, secret, purpose, token, now or datetime.now(UTC))


def confirm(settings: Settings, token: str, now: datetime | None = None) -> Subscriber:
    """Confirm a pending subscription (a second confirmation changes nothing).

    :raises InvalidTokenError: see :func:`subscriber_for`; also when the subscriber unsubscribed since.
    """
    now = now or datetime.now(UTC)
    secret = tokens.secret_key(settings)
    with engine_for(settings).begin() as conn:
        subscriber = _by_token(conn, secret, "confirm", token, now)
        if subscriber.status == "confirmed":
            return subscriber
        return store.save_subscriber(conn, replace(subscriber, status="confirmed", confirmed_at=now), now)


def unsubscribe(settings: Settings, token: str, now: datetime | None = None) -> Subscriber:
    """Unsubscribe from every list; the record and its consent evidence stay. Idempotent.

    :raises InvalidTokenError: see :func:`subscriber_for`.
    """
    now = now or datetime.now(UTC)
    secret = tokens.secret_key(settings)
    with engine_for(settings).begin() as conn:
        return _unsubscribed(conn, _by_token(conn, secret, "unsubscribe", token, now), now)


def update_preferences(
    settings: Settings, token: str, language: str | None, lists: Iterable[str], now: datetime | None = None
) -> Subscriber:
    """Change the language and lists of the subscriber a preferences link names.

    :raises InvalidTokenError: see :func:`subscriber_for`.
    :raises InputError: unknown language or list, or no list chosen.
    """
    now = now or datetime.now(UTC)
    chosen_language = check_language(settings, language)
    chosen_lists = check_lists(settings, lists, default=False)
    secret = tokens.secret_key(settings)
    with engine_for(settings).begin() as conn:
        subscriber = _by_token(conn, secret, "preferences", token, now)
        changed = replace(subscriber, language=chosen_language, lists=chosen_lists)
        return subscriber if changed == subscriber else store.save_subscriber(conn, changed, now)


@dataclass(frozen=True)
class Links:
    preferences_url: str
    unsubscribe_url: str


def links_for(settings: Settings, subscriber: Subscriber) -> Links:
    """The subscriber's own preference and unsubscribe links."""
    secret = tokens.secret_key(settings)
    return Links(
        tokens.preferences_url(settings, secret, subscriber),
        tokens.unsubscribe_url(settings, secret, subscriber),
    )
