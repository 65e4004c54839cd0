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
  one gets the confirmation again (at most every :data:`RESEND_AFTER`), every case shows the same page,
  and every case does the same work in one transaction: the limits of :mod:`throttle`, the lookup, and
  an outbox row (queued, or cancelled with the reason no mail is owed). No mail is sent in the request:
  it is queued in the outbox with the sign-up and sent by the delivery loop, with its retries, so a
  mail server that is down shows no one anything. An address that unsubscribed, bounced or was erased
  may sign up again: the double opt-in is fresh consent. An import never re-adds such an address.
* Import: ``lists`` empty or absent means the first configured list; ``language`` empty or absent
  means the first configured language. For a subscriber already stored, an import only adds: a given
  name or language replaces the stored one, given lists are added to theirs (an import never removes a
  list someone chose on the preferences page) and a confirmed subscriber stays confirmed. So importing
  the same file twice changes nothing. Columns other than email, name, language and lists (for example
  those of an export) are ignored and reported.
* Confirmation mails are queued in the transaction that stores the sign-up, so a rolled-back sign-up
  never mails anyone and a stored one always gets its mail (see :mod:`confirm_mail`).
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
from imk_outreach.services import consent, throttle, tokens
from imk_outreach.services.database import engine_for
from imk_outreach.services.subscriber_base import *  # noqa: F403  (the facade: every public name)
from imk_outreach.services.subscriber_base import (
    RESEND_AFTER,
    SOURCE_WEB,
    SignupOutcome,
    check_address,
    check_language,
    check_lists,
    check_name,
    mark_unsubscribed,
    queue_confirmation,
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
) -> SignupOutcome:
    """A sign-up: within the limits of ``settings.signup`` (see :mod:`throttle`) the address becomes (or
    stays) pending and its confirmation mail is queued in the outbox, in one transaction. Nothing is
    sent here: ``deliver``, ``worker`` and ``run`` send it.

    The caller shows the same answer, after the same time (``signup.answer_time``: the work for a new
    address takes longer than for a confirmed one), whatever this returns but the two busy outcomes
    ``limited_client`` and ``limited_overall``, which do not depend on the address; so nobody learns
    whether an address is known. ``ip`` is only kept as keyed hashes.

    :raises InputError: a field is not acceptable (nothing is stored, nothing counted).
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
        with engine_for(settings).begin() as conn:
            limited = throttle.admit(conn, settings.signup, secret, address, ip, now)
            if limited is not None:
                return limited
            return _store_signup(conn, settings, secret, wanted, ip, source, now)
    except IntegrityError:  # a staff add or import stored the same new address at the same moment
        return "recently_mailed"


# Why a sign-up is owed no mail, as its outbox row says.
_NOT_SENT = {
    "already_confirmed": "not sent: the address is confirmed already",
    "recently_mailed": (
        f"not sent: a confirmation mail was queued less than {RESEND_AFTER.seconds // 60} minutes before"
    ),
}


def _store_signup(
    conn: Connection,
    settings: Settings,
    secret: str,
    wanted: Subscriber,
    ip: str | None,
    source: str,
    now: datetime,
) -> SignupOutcome:
    """Store the pending subscriber and queue their mail; for an address owed no mail (confirmed, or
    mailed a moment ago) store nothing but the outbox row that says so, at the same place in the work."""
    before = store.find_subscriber(conn, wanted.email)
    owed = _no_mail_owed(before, now)
    if owed is not None:
        assert before is not None and before.id is not None
        store.queue_confirmation(conn, before.id, before.language, now, not_sent=_NOT_SENT[owed])
        return owed
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
    saved = store.save_subscriber(conn, pending, now)
    consent.record(  # the sign-up's evidence; the earlier events of this address stay
        conn,
        saved.id,
        "signup",
        now,
        settings=settings,
        ip_hash=saved.ip_hash,
        language=saved.language,
        source=source,
        detail={"lists": list(saved.lists), "status_before": before.status if before else None},
    )
    queue_confirmation(conn, saved, now)
    return "queued"


def _no_mail_owed(before: Subscriber | None, now: datetime) -> SignupOutcome | None:
    if before is not None and before.status == "confirmed":
        return "already_confirmed"
    if before is not None and before.status == "pending" and _recently_mailed(before, now):
        return "recently_mailed"
    return None


def _recently_mailed(subscriber: Subscriber, now: datetime) -> bool:
    return subscriber.signup_at is not None and now - subscriber.signup_at < RESEND_AFTER


def _by_token(conn: Connection, secret: str, purpose: Purpose, token: str, now: datetime) -> Subscriber:
    claim = tokens.read_token(secret, purpose, token, now)
    subscriber = store.get_subscriber(conn, claim.subscriber_id)
    if subscriber is None or not tokens.claim_holds(conn, secret, claim, subscriber):
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
        confirmed = store.save_subscriber(
            conn, replace(subscriber, status="confirmed", confirmed_at=now), now
        )
        consent.record(
            conn,
            confirmed.id,
            "confirm",
            now,
            consent_version=confirmed.consent_version,
            language=confirmed.language,
            source="web:/confirm",
        )
        return confirmed


def unsubscribe(settings: Settings, token: str, now: datetime | None = None) -> Subscriber:
    """Unsubscribe from every list; the record and its consent evidence stay. Idempotent.

    :raises InvalidTokenError: see :func:`subscriber_for`.
    """
    now = now or datetime.now(UTC)
    secret = tokens.secret_key(settings)
    with engine_for(settings).begin() as conn:
        subscriber = _by_token(conn, secret, "unsubscribe", token, now)
        left = mark_unsubscribed(conn, subscriber, now)
        if left.status != subscriber.status:
            consent.record(
                conn,
                left.id,
                "unsubscribe",
                now,
                language=left.language,
                source="web:/unsubscribe",
                detail={"lists": list(left.lists), "status_before": subscriber.status},
            )
        return left


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
        if changed == subscriber:
            return subscriber
        saved = store.save_subscriber(conn, changed, now)
        before = {"language": subscriber.language, "lists": list(subscriber.lists)}
        consent.record(
            conn,
            saved.id,
            "preferences",
            now,
            language=saved.language,
            source="web:/preferences",
            detail={"lists": list(saved.lists), "before": before},
        )
        return saved


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
