"""Subscribers, shared parts: constants, errors, checks of what people type, and the confirmation mail."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Connection

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.errors import ImkError
from imk_outreach.models import Subscriber
from imk_outreach.publishers.base import Outcome, PublishError
from imk_outreach.publishers.smtp import SmtpSender
from imk_outreach.render.env import render_template
from imk_outreach.render.message import MessageTemplate, format_date
from imk_outreach.services import tokens
from imk_outreach.services.mailserver import sender_domain, smtp_options
from imk_outreach.services.rendering import template_env

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


def _unsubscribed(conn: Connection, subscriber: Subscriber, now: datetime) -> Subscriber:
    if subscriber.status == "unsubscribed":
        return subscriber
    return store.save_subscriber(conn, replace(subscriber, status="unsubscribed", unsubscribed_at=now), now)
