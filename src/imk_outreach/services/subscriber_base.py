"""Subscribers, shared parts: constants, errors, checks of what people type, and the confirmation mail."""

from __future__ import annotations

import logging
import secrets
import unicodedata
from collections.abc import Iterable
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
from imk_outreach.render.env import render_template
from imk_outreach.render.message import MessageTemplate, format_date
from imk_outreach.services import tokens
from imk_outreach.services.mailserver import sender_domain
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
MAX_ADDRESS = 254  # RFC 5321 4.5.3.1.3: a path is at most 256 octets, angle brackets included
# Trimmed from both ends: ASCII white space and the Unicode spaces (category Zs, such as the no-break
# space that a copy from a web page brings along).
_BLANKS = (
    " \t\n\r\f\v\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u202f\u205f\u3000"
)
_REFUSED_CATEGORIES = {  # Unicode general category -> what the error message calls it
    "Cc": "a control character",
    "Cf": "an invisible formatting character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Cs": "a byte that is not UTF-8 text",
}

# What a sign-up did (the web page is the same for all but the two busy ones, see services/throttle.py).
SignupOutcome = Literal[
    "queued", "already_confirmed", "recently_mailed", "limited_mailbox", "limited_client", "limited_overall"
]


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
    """The address in its normalised form (domain lower-cased, IDNA for the check). Spaces, tabs and
    line breaks around it are dropped; see :func:`check_text` for the characters refused.

    :raises InputError: not a valid address; the reason says why.
    """
    text = check_text("email", "address", email)
    if not text:
        raise InputError("email", email, "empty address")
    if len(text) > MAX_ADDRESS:
        raise InputError("email", email, f"address longer than {MAX_ADDRESS} characters")
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
    """The name as stored: NFC-normalised, runs of spaces made one, at most ``MAX_NAME`` characters
    (counted after normalising). Empty or None is an empty name.

    :raises InputError: a refused character (see :func:`check_text`) or too long.
    """
    value = " ".join(unicodedata.normalize("NFC", check_text("name", "name", name or "")).split())
    if len(value) > MAX_NAME:
        raise InputError("name", value, f"name longer than {MAX_NAME} characters")
    return value


def check_text(field: str, label: str, value: str) -> str:
    """``value`` without the spaces, tabs and line breaks around it, checked for characters that have
    no place in a name or an address: control characters (Unicode category Cc, NUL and ESC
    included), invisible format characters (Cf: zero-width spaces and joiners, soft hyphen, the bidi
    overrides that make a name read backwards), line and paragraph separators (Zl, Zp) and lone
    surrogates (Cs: undecodable bytes from a terminal or a file). They cannot be typed into the form,
    break mail headers and CSV files, and PostgreSQL refuses NUL; no exception is made for any of them.

    :raises InputError: such a character, named with its code point and position.
    """
    text = value.strip(_BLANKS)
    for position, char in enumerate(text, 1):
        kind = _REFUSED_CATEGORIES.get(unicodedata.category(char))
        if kind is not None:
            code = f"U+{ord(char):04X} {unicodedata.name(char, '')}".rstrip()
            hint = "; check the encoding of the file or terminal" if kind == _REFUSED_CATEGORIES["Cs"] else ""
            raise InputError(field, value, f"{label} contains {kind} ({code}) at position {position}{hint}")
    return text


# -- mail ------------------------------------------------------------------------------------------


class Mailer(Protocol):
    """Sends one ready-made message. No sign-up sends inside a request any more (the confirmation mail
    goes through the outbox, see :func:`queue_confirmation`); kept for the web app's signature."""

    def send(self, envelope_from: str, recipient: str, data: bytes) -> None:
        """:raises MailError: the server did not accept it."""
        ...


def _localized(values: dict[str, str], language: str) -> str:
    return values.get(language) or next(iter(values.values()), "")


def list_labels(settings: Settings, language: str) -> dict[str, str]:
    """Configured list name -> its label in ``language``, in config order."""
    return {name: _localized(dict(labels), language) for name, labels in settings.lists.items()}


def labels_of(settings: Settings, language: str, names: Iterable[str]) -> list[str]:
    """The labels of the lists ``names`` in ``language``, in config order."""
    wanted = set(names)
    return [label for name, label in list_labels(settings, language).items() if name in wanted]


def confirmation_message(
    settings: Settings, secret: str, subscriber: Subscriber, now: datetime, message_id: str | None = None
) -> bytes:
    """The confirmation mail of ``subscriber`` in their language: the link, the lists, nothing else.

    Nothing in it was typed by the person who signed up but the address it goes to: no name in the
    greeting nor in ``To:``, since anyone can sign up someone else's address with a "name" that is a
    message to them. (``name`` stays in the templates' context, always empty, so older staff copies of
    the templates still render.)

    :param message_id: the ``Message-ID`` (the outbox row's); default a random one.
    :raises TemplateError: a confirmation template is broken.
    """
    language = subscriber.language
    labels = list_labels(settings, language)
    context = {
        "name": "",
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
        to_name="",
        message_id=message_id or f"<confirm.{subscriber.id}.{secrets.token_hex(8)}@{domain}>",
        date=format_date(now),
        values={},
        unsubscribe_url=tokens.unsubscribe_url(settings, secret, subscriber),
        unsubscribe_mailto=settings.unsubscribe_mailto,
    )


def queue_confirmation(conn: Connection, subscriber: Subscriber, now: datetime) -> None:
    """Queue the confirmation mail of a stored subscriber in the caller's transaction: an outbox row
    without an edition (channel ``confirm``) that the delivery loop of ``deliver``, ``worker`` and
    ``run`` sends, built then, with the retries of ``smtp.retry`` (a waiting one of theirs is replaced).
    Nothing is sent here, so a mail server that is down delays the mail but fails nothing."""
    assert subscriber.id is not None
    store.queue_confirmation(conn, subscriber.id, subscriber.language, now)
    log.info("confirmation mail queued for subscriber %s", subscriber.id)


def mark_unsubscribed(conn: Connection, subscriber: Subscriber, now: datetime) -> Subscriber:
    if subscriber.status == "unsubscribed":
        return subscriber
    return store.save_subscriber(conn, replace(subscriber, status="unsubscribed", unsubscribed_at=now), now)
