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

import csv
import logging
import secrets
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.errors import ImkError
from imk_outreach.models import Subscriber
from imk_outreach.publishers.base import Outcome, PublishError
from imk_outreach.publishers.smtp import SmtpSender
from imk_outreach.render.env import render_template
from imk_outreach.render.message import MessageTemplate, format_date
from imk_outreach.services import tokens
from imk_outreach.services.database import engine_for
from imk_outreach.services.mailserver import sender_domain, smtp_options
from imk_outreach.services.rendering import template_env
from imk_outreach.services.tokens import InvalidTokenError, Purpose

__all__ = [
    "EXPORT_FIELDS",
    "ErasedAddressError",
    "ImportFileError",
    "ImportReport",
    "InputError",
    "InvalidTokenError",
    "MailError",
    "Mailer",
    "Rejection",
    "SubscriberExistsError",
    "UnknownSubscriberError",
]

log = logging.getLogger(__name__)

SOURCE_WEB = "web:/subscribe"
SOURCE_CLI = "cli"
IMPORT_STATUSES = ("confirmed", "pending")
IMPORT_COLUMNS = ("email", "name", "language", "lists")
EXPORT_FIELDS = (
    "email",
    "name",
    "language",
    "lists",
    "status",
    "signup_at",
    "confirmed_at",
    "consent_version",
    "source",
)
RESEND_AFTER = timedelta(minutes=10)  # a pending address gets the confirmation again at most this often
MAX_NAME = 200

SignupOutcome = Literal["mailed", "already_confirmed", "recently_mailed"]


# -- errors ----------------------------------------------------------------------------------------


class SubscriptionError(ImkError):
    """Base of the errors of this service."""


class InputError(SubscriptionError):
    """A field given by a person or a file is not acceptable. ``field`` is ``email``, ``name``,
    ``language``, ``lists`` or ``status``."""

    def __init__(self, field: str, value: str, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(reason)


class UnknownSubscriberError(SubscriptionError):
    def __init__(self, email: str) -> None:
        self.email = email
        super().__init__(f"no subscriber with the address {email!r}")


class SubscriberExistsError(SubscriptionError):
    def __init__(self, email: str, status: str) -> None:
        self.email = email
        self.status = status
        super().__init__(f"{email} is already a subscriber ({status})")


class ErasedAddressError(SubscriptionError):
    def __init__(self, email: str) -> None:
        self.email = email
        super().__init__(f"{email} was erased; it is only added again by its own sign-up on the web")


class ImportFileError(SubscriptionError):
    """The import file as a whole cannot be read (missing, not UTF-8, no email column)."""

    def __init__(self, path: Path, message: str, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


class MailError(SubscriptionError):
    """A confirmation mail was not accepted by the mail server."""

    def __init__(self, recipient: str, reason: str) -> None:
        self.recipient = recipient
        self.reason = reason
        super().__init__(f"confirmation mail to {recipient} not sent: {reason}")


# -- validation ------------------------------------------------------------------------------------


def check_address(email: str) -> str:
    """The address in its normalised form (domain lower-cased, IDNA for the check).

    :raises InputError: not a valid address; the reason says why.
    """
    text = email.strip()
    if not text:
        raise InputError("email", email, "empty address")
    try:
        return validate_email(text, check_deliverability=False, allow_smtputf8=False).normalized
    except EmailNotValidError as exc:
        raise InputError("email", email, f"invalid address ({exc})") from None


def check_language(settings: Settings, language: str | None) -> str:
    """A configured language; empty or None means the first configured one.

    :raises InputError: not a configured language.
    """
    value = (language or "").strip().lower()
    if not value:
        return settings.default_language
    if value not in settings.languages:
        known = ", ".join(settings.languages)
        raise InputError("language", value, f"unknown language {value!r} (known: {known})")
    return value


def check_lists(settings: Settings, lists: Iterable[str], default: bool) -> tuple[str, ...]:
    """Configured list names, sorted and unique. None given: the first configured list when
    ``default``, else an error.

    :raises InputError: an unknown list, or none given and no default wanted.
    """
    names = sorted({name.strip() for name in lists if name.strip()})
    for name in names:
        if name not in settings.lists:
            raise InputError("lists", name, f"unknown list {name!r} (known: {', '.join(settings.lists)})")
    if names:
        return tuple(names)
    if default:
        return (next(iter(settings.lists)),)
    raise InputError("lists", "", "choose at least one list")


def check_name(name: str | None) -> str:
    value = " ".join((name or "").split())
    if len(value) > MAX_NAME:
        raise InputError("name", value, f"name longer than {MAX_NAME} characters")
    return value


# -- mail ------------------------------------------------------------------------------------------


class Mailer(Protocol):
    """Sends one ready-made message."""

    def send(self, envelope_from: str, recipient: str, data: bytes) -> None:
        """:raises MailError: the server did not accept it."""
        ...


class SmtpMailer:
    """The default mailer: ``publishers.smtp.SmtpSender`` configured from ``settings.smtp`` (DKIM
    included), connected on the first mail and kept for the rest of a batch."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._sender: SmtpSender | None = None

    def send(self, envelope_from: str, recipient: str, data: bytes) -> None:
        try:
            if self._sender is None:
                self._sender = SmtpSender(smtp_options(self._settings))
            result = self._sender.send(envelope_from, recipient, data)
        except PublishError as exc:
            raise MailError(recipient, str(exc)) from exc
        if result.outcome != Outcome.SENT:
            raise MailError(recipient, result.reply)

    def close(self) -> None:
        if self._sender is not None:
            self._sender.close()
            self._sender = None


@contextmanager
def _mailing(settings: Settings, mailer: Mailer | None) -> Iterator[Mailer]:
    if mailer is not None:
        yield mailer
        return
    default = SmtpMailer(settings)
    try:
        yield default
    finally:
        default.close()


def _localized(values: dict[str, str], language: str) -> str:
    return values.get(language) or next(iter(values.values()), "")


def list_labels(settings: Settings, language: str) -> dict[str, str]:
    """Configured list name -> its label in ``language``, in config order."""
    return {name: _localized(dict(labels), language) for name, labels in settings.lists.items()}


def labels_of(settings: Settings, language: str, names: Iterable[str]) -> list[str]:
    """The labels of the lists ``names`` in ``language``, in config order."""
    wanted = set(names)
    return [label for name, label in list_labels(settings, language).items() if name in wanted]


def confirmation_message(settings: Settings, secret: str, subscriber: Subscriber, now: datetime) -> bytes:
    """The confirmation mail of ``subscriber`` in their language: the link, the lists, nothing else.

    :raises TemplateError: a confirmation template is broken.
    """
    language = subscriber.language
    labels = list_labels(settings, language)
    context = {
        "name": subscriber.name,
        "email": subscriber.email,
        "confirm_url": tokens.confirm_url(settings, secret, subscriber, now),
        "lists": labels_of(settings, language, subscriber.lists),
        "valid_days": tokens.CONFIRM_MAX_AGE.days,
        "brand_name": _localized(dict(settings.name), language),
        "imprint": _localized(dict(settings.imprint), language),
        "imprint_lines": _localized(dict(settings.imprint), language).splitlines(),
    }
    env = template_env(settings)
    subject = " ".join(render_template(env, "email/confirm_subject.txt.j2", language, context).split())
    first_list = subscriber.lists[0] if subscriber.lists else next(iter(settings.lists))
    domain = sender_domain(settings)
    template = MessageTemplate.build(
        html=render_template(env, "email/confirm.html.j2", language, context),
        text=render_template(env, "email/confirm.txt.j2", language, context),
        subject=subject,
        from_name=settings.sender.name,
        from_email=settings.sender.email,
        reply_to=settings.sender.reply_to,
        list_id=f"{first_list}.{domain}",
        list_name=labels.get(first_list),
        language=language,
        placeholders={},
        extra_headers={"Auto-Submitted": "auto-generated"},
    )
    return template.render(
        to_email=subscriber.email,
        to_name=subscriber.name,
        message_id=f"<confirm.{subscriber.id}.{secrets.token_hex(8)}@{domain}>",
        date=format_date(now),
        values={},
        unsubscribe_url=tokens.unsubscribe_url(settings, secret, subscriber),
        unsubscribe_mailto=settings.unsubscribe_mailto,
    )


def _send_confirmation(
    settings: Settings, mailer: Mailer, secret: str, subscriber: Subscriber, now: datetime
) -> None:
    """Build and send the confirmation mail.

    :raises MailError: the server did not accept it.
    """
    data = confirmation_message(settings, secret, subscriber, now)
    mailer.send(settings.sender.email, subscriber.email, data)
    log.info("confirmation mail sent to subscriber %s", subscriber.id)


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


def _unsubscribed(conn: Connection, subscriber: Subscriber, now: datetime) -> Subscriber:
    if subscriber.status == "unsubscribed":
        return subscriber
    return store.save_subscriber(conn, replace(subscriber, status="unsubscribed", unsubscribed_at=now), now)


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


# -- import ----------------------------------------------------------------------------------------


class Rejection(NamedTuple):
    """A row not imported: its line in the file, the address as written, and why."""

    line: int
    email: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.email or '(no address)'}: {self.reason}"


@dataclass
class ImportReport:
    """What an import did. ``mail_failures`` are (address, reason) of confirmation mails not sent."""

    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    mailed: int = 0
    mail_failures: list[tuple[str, str]] = field(default_factory=list)
    ignored_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Row:
    line: int
    email: str
    name: str | None
    language: str | None
    lists: tuple[str, ...]


def import_csv(
    settings: Settings,
    path: str | Path,
    status: str = "confirmed",
    now: datetime | None = None,
    mailer: Mailer | None = None,
) -> ImportReport:
    """Import subscribers from a CSV file: a header row, ``email`` required, optional ``name``,
    ``language`` and ``lists`` (names separated by ``;``). Bad rows are rejected one by one, naming the
    line; the rest are imported in one transaction. With ``status="pending"`` every new subscriber gets
    the confirmation mail (after the commit).

    :raises InputError: ``status`` is neither confirmed nor pending.
    :raises ImportFileError: the file cannot be read, is not UTF-8 or has no ``email`` column.
    """
    now = now or datetime.now(UTC)
    status = _import_status(status)
    file = Path(path)
    if not file.is_file():  # before the database is opened (or made): a typo is one clear line
        raise ImportFileError(file, "file not found")
    report = ImportReport()
    secret = tokens.secret_key(settings)
    fresh: list[Subscriber] = []
    seen: dict[str, int] = {}
    with engine_for(settings).begin() as conn:
        for row in _parsed_rows(settings, file, report):
            if isinstance(row, Rejection):
                report.rejected.append(row)
                continue
            outcome = _import_row(conn, settings, secret, row, status, f"import:{file.name}", now, seen)
            if isinstance(outcome, Rejection):
                report.rejected.append(outcome)
            elif isinstance(outcome, Subscriber):
                report.imported += 1
                fresh.append(outcome)
            elif outcome == "updated":
                report.updated += 1
            else:
                report.unchanged += 1
    if status == "pending" and fresh:
        _mail_all(settings, secret, fresh, now, mailer, report)
    return report


def _import_row(
    conn: Connection,
    settings: Settings,
    secret: str,
    row: _Row,
    status: str,
    source: str,
    now: datetime,
    seen: dict[str, int],
) -> Rejection | Subscriber | Literal["updated", "unchanged"]:
    key = store.email_key(row.email)
    if key in seen:
        return Rejection(row.line, row.email, f"duplicate of line {seen[key]}")
    seen[key] = row.line
    existing = store.find_subscriber(conn, row.email)
    if existing is None:
        if store.is_erased(conn, tokens.address_hash(secret, row.email)):
            return Rejection(row.line, row.email, "was erased; not re-imported")
        new = Subscriber(
            email=row.email,
            name=row.name or "",
            language=row.language or settings.default_language,
            lists=row.lists or check_lists(settings, (), default=True),
        )
        return store.save_subscriber(conn, _new(settings, new, status, source, now), now)
    if existing.status in ("unsubscribed", "bounced"):
        return Rejection(row.line, row.email, f"{existing.status} earlier; not re-subscribed by an import")
    merged = _merged(settings, existing, row, status, now)
    if merged == existing:
        return "unchanged"
    store.save_subscriber(conn, merged, now)
    return "updated"


def _merged(settings: Settings, existing: Subscriber, row: _Row, status: str, now: datetime) -> Subscriber:
    """The stored subscriber with what the row adds (never a removal, never a downgrade)."""
    merged = replace(
        existing,
        name=row.name or existing.name,
        language=row.language or existing.language,
        lists=tuple(sorted(set(existing.lists) | set(row.lists))),
    )
    if status == "confirmed" and existing.status == "pending":
        merged = replace(
            merged,
            status="confirmed",
            confirmed_at=now,
            consent_version=existing.consent_version or settings.consent_version,
        )
    return merged


def _mail_all(
    settings: Settings,
    secret: str,
    subscribers: Sequence[Subscriber],
    now: datetime,
    mailer: Mailer | None,
    report: ImportReport,
) -> None:
    with _mailing(settings, mailer) as active:
        for subscriber in subscribers:
            try:
                _send_confirmation(settings, active, secret, subscriber, now)
                report.mailed += 1
            except MailError as exc:
                log.warning("subscriber %s: %s", subscriber.id, exc)
                report.mail_failures.append((subscriber.email, exc.reason))


def _parsed_rows(settings: Settings, path: Path, report: ImportReport) -> Iterator[_Row | Rejection]:
    for line, values in _csv_records(path, report):
        if not any(value.strip() for value in values.values()):
            continue  # a blank line
        email = values.get("email", "").strip()
        language = values.get("language", "").strip()
        lists = values.get("lists", "").split(";")
        try:
            yield _Row(
                line=line,
                email=check_address(email),
                name=check_name(values.get("name")) or None,
                language=check_language(settings, language) if language else None,
                lists=check_lists(settings, lists, default=False) if any(n.strip() for n in lists) else (),
            )
        except InputError as exc:
            yield Rejection(line, email, exc.reason)


def _csv_records(path: Path, report: ImportReport) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, column -> value) per record; the header names are trimmed and lower-cased."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            header_line = handle.readline()
            delimiter = ";" if ";" in header_line and "," not in header_line else ","
            handle.seek(0)
            reader = csv.reader(handle, delimiter=delimiter)
            header = [name.strip().lower() for name in next(reader, [])]
            _check_header(path, header, report)
            for record in reader:
                padded = record + [""] * (len(header) - len(record))
                yield reader.line_num, dict(zip(header, padded, strict=False))
    except FileNotFoundError:
        raise ImportFileError(path, "file not found") from None
    except UnicodeDecodeError as exc:
        raise ImportFileError(path, f"not UTF-8 text (byte {exc.start}); save it as CSV UTF-8") from None
    except csv.Error as exc:
        raise ImportFileError(path, f"not valid CSV: {exc}") from None
    except IsADirectoryError:
        raise ImportFileError(path, "is a folder, not a CSV file") from None


def _check_header(path: Path, header: list[str], report: ImportReport) -> None:
    if "email" not in header:
        shown = ", ".join(header) or "empty"
        raise ImportFileError(path, f"the header row has no 'email' column (found: {shown})", line=1)
    duplicates = sorted({name for name in header if header.count(name) > 1 and name})
    if duplicates:
        raise ImportFileError(path, f"column {duplicates[0]!r} appears twice in the header row", line=1)
    report.ignored_columns = tuple(name for name in header if name not in IMPORT_COLUMNS)
