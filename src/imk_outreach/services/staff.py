"""Staff users of the web app: accounts, sign-in with a throttle, server-side sessions.

* Passwords are hashed with argon2id (argon2-cffi's ``PasswordHasher`` defaults, which carry their
  parameters in the hash); a hash made with older parameters is replaced at the next sign-in. A new
  password is refused when shorter than :data:`MIN_PASSWORD` characters, on the list of common
  passwords (``common_passwords.txt``; case ignored, also with digits or symbols added before or
  after), the user name, or made of fewer than :data:`MIN_DISTINCT` different characters.
* Sign-in: :func:`authenticate`. A wrong password and an unknown user take the same time (an unknown
  user is checked against a dummy hash) and give the same answer (None). Failed sign-ins are counted per
  client (an IPv4 address, an IPv6 /64 network; stored as a keyed hash, never the address): after
  :data:`MAX_FAILURES` within :data:`FAILURE_WINDOW` the client is refused (:class:`LoginThrottled`),
  also with the right password, until the oldest of those failures is older than the window. A
  successful sign-in clears nothing (it would let a guesser reset its own count with a second account).
  Each attempt is written before the password is checked, so attempts at once count each other.
* Sessions: the cookie carries a random token (``secrets.token_urlsafe(32)``); the database keeps only
  its SHA-256, so a copy of the database signs nobody in. Each session has its own random CSRF token.
  A session ends after :data:`IDLE_TIMEOUT` without use or :data:`ABSOLUTE_TIMEOUT` after sign-in,
  whichever comes first; its last use is written at most once per :data:`TOUCH_EVERY`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import secrets
import string
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from importlib.resources import files

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.exc import IntegrityError

from imk_outreach.config import Settings
from imk_outreach.db import staff as staff_store
from imk_outreach.errors import ImkError
from imk_outreach.services.database import engine_for
from imk_outreach.services.throttle import client_of
from imk_outreach.services.tokens import secret_key

log = logging.getLogger(__name__)

LANGUAGES = ("de", "en")  # the languages of the web app
NAME_PATTERN = re.compile(r"[a-z0-9._-]{1,64}")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # longer is refused (and never hashed at sign-in): no work for a megabyte "password"
MIN_DISTINCT = 4
MAX_FAILURES = 10
FAILURE_WINDOW = timedelta(minutes=15)
IDLE_TIMEOUT = timedelta(hours=8)
ABSOLUTE_TIMEOUT = timedelta(hours=12)
TOUCH_EVERY = timedelta(minutes=1)
MAX_TOKEN = 200  # a longer cookie value is no token of ours
COMMON_PASSWORDS = "common_passwords.txt"
_AFFIXES = string.digits + string.punctuation + " "  # what people add to a common password
_SHOWN_KEY = 12

_hasher = PasswordHasher()  # argon2id, with the library's current recommended parameters


# -- what callers get ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaffUser:
    id: int
    name: str
    email: str | None
    language: str | None  # None: not chosen; the browser's Accept-Language decides
    created_at: datetime


@dataclass(frozen=True)
class StaffSession:
    """A signed-in session. ``token`` goes into the cookie; ``csrf`` into every form of the session."""

    token: str
    user: StaffUser
    csrf: str
    expires_at: datetime


class PasswordPolicyError(ImkError):
    """A new password is refused; the message says why in one line."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class StaffInputError(ImkError):
    """A user name, email address or language that cannot be used; the message says why."""


class UserExistsError(ImkError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"a staff user named {name!r} exists already")


class UnknownUserError(ImkError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no staff user named {name!r} (see 'imk-outreach users list')")


class LoginThrottled(ImkError):
    """Too many failed sign-ins from this client lately; ``retry_after``: seconds until it may try again."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        minutes = max(1, math.ceil(retry_after / 60))
        super().__init__(
            f"too many failed sign-ins from this address: try again in {minutes} minute"
            + ("s" if minutes != 1 else "")
        )


# -- users -----------------------------------------------------------------------------------------


def add_user(
    settings: Settings,
    name: str,
    password: str,
    *,
    email: str | None = None,
    language: str | None = None,
    now: datetime | None = None,
) -> StaffUser:
    """Add a staff user.

    :param name: 1 to 64 lower-case letters, digits, ``.``, ``-``, ``_`` (upper case is lowered).
    :raises StaffInputError: the name, email address or language cannot be used.
    :raises PasswordPolicyError: the password is refused (see :func:`check_password`).
    :raises UserExistsError: a user of that name exists.
    """
    name = check_name(name)
    address = _check_email(email)
    if language is not None:
        _check_language(language)
    check_password(password, name)
    password_hash = _hasher.hash(_normal(password))
    try:
        with engine_for(settings).begin() as conn:
            if staff_store.user_by_name(conn, name) is not None:
                raise UserExistsError(name)
            row = staff_store.insert_user(conn, name, address, language, password_hash, _now(now))
    except IntegrityError:  # added by someone else at the same moment
        raise UserExistsError(name) from None
    log.info("staff user %s added", name)
    return _user(row)


def list_users(settings: Settings) -> list[StaffUser]:
    """Every staff user, by name."""
    with engine_for(settings).connect() as conn:
        return [_user(row) for row in staff_store.list_users(conn)]


def remove_user(settings: Settings, name: str) -> StaffUser:
    """Delete a staff user; their sessions end at once.

    :raises UnknownUserError: there is no user of that name.
    """
    wanted = name.strip().lower()
    with engine_for(settings).begin() as conn:
        row = staff_store.user_by_name(conn, wanted)
        if row is None:
            raise UnknownUserError(name.strip())
        staff_store.delete_user(conn, row.id)
    log.info("staff user %s removed", row.name)
    return _user(row)


def set_language(settings: Settings, user_id: int, language: str) -> None:
    """Store the language a user chose for the web app.

    :raises StaffInputError: not one of :data:`LANGUAGES`.
    :raises UnknownUserError: there is no such user (removed meanwhile).
    """
    _check_language(language)
    with engine_for(settings).begin() as conn:
        if not staff_store.set_user_language(conn, user_id, language, _now(None)):
            raise UnknownUserError(f"#{user_id}")


def check_name(name: str) -> str:
    """The user name in its stored form (trimmed, lower case).

    :raises StaffInputError: not 1 to 64 lower-case letters, digits, ``.``, ``-`` or ``_``.
    """
    text = name.strip().lower()
    if not NAME_PATTERN.fullmatch(text):
        raise StaffInputError(
            f"user name {name!r} is not valid: use 1 to 64 lower-case letters, digits, '.', '-' or '_'"
        )
    return text


def _check_email(email: str | None) -> str | None:
    if email is None or not email.strip():
        return None
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise StaffInputError(f"email address {email!r} is not valid ({exc})") from None


def _check_language(language: str) -> None:
    if language not in LANGUAGES:
        raise StaffInputError(f"language {language!r} is not offered: choose {' or '.join(LANGUAGES)}")


def _user(row: staff_store.UserRow) -> StaffUser:
    return StaffUser(row.id, row.name, row.email, row.language, row.created_at)


# -- passwords -------------------------------------------------------------------------------------


def check_password(password: str, name: str = "") -> None:
    """Refuse a password that is easy to guess.

    :raises PasswordPolicyError: shorter than :data:`MIN_PASSWORD` characters, longer than
        :data:`MAX_PASSWORD`, on the list of common passwords (case ignored, also with digits or
        symbols added), the user name, or fewer than :data:`MIN_DISTINCT` different characters.
    """
    text = _normal(password)
    if len(text) < MIN_PASSWORD:
        raise PasswordPolicyError(f"password too short: at least {MIN_PASSWORD} characters")
    if len(text) > MAX_PASSWORD:
        raise PasswordPolicyError(f"password too long: at most {MAX_PASSWORD} characters")
    lowered = text.lower()
    cores = {lowered, lowered.strip(_AFFIXES)}
    if name and name.strip().lower() in cores:
        raise PasswordPolicyError("password is too easy to guess: it is the user name")
    if cores & common_passwords():
        raise PasswordPolicyError("password is too common: it is on the list of common passwords")
    if len(set(lowered)) < MIN_DISTINCT:
        raise PasswordPolicyError(
            f"password is too easy to guess: it has fewer than {MIN_DISTINCT} different characters"
        )


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The list of common passwords (lower case), read once from the package's ``common_passwords.txt``."""
    text = files("imk_outreach.services").joinpath(COMMON_PASSWORDS).read_text(encoding="utf-8")
    lines = (line.strip().lower() for line in text.splitlines())
    return frozenset(line for line in lines if line and not line.startswith("#"))


def _normal(password: str) -> str:
    """One form for the same characters however the keyboard typed them (NFC)."""
    return unicodedata.normalize("NFC", password)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """What an unknown user's password is checked against, so that takes as long as a wrong one."""
    return _hasher.hash(secrets.token_urlsafe(16))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# -- sign-in ---------------------------------------------------------------------------------------


def authenticate(
    settings: Settings, name: str, password: str, client: str, now: datetime | None = None
) -> StaffUser | None:
    """The user when name and password are right, else None (the same for an unknown user).

    :param client: the peer's IP address (counted per IPv4 address or IPv6 /64 network).
    :raises LoginThrottled: :data:`MAX_FAILURES` failed sign-ins from this client within
        :data:`FAILURE_WINDOW`; the password is not checked then.
    """
    at = _now(now)
    key = _client_key(settings, client)
    engine = engine_for(settings)
    with engine.begin() as conn:
        staff_store.forget_login_attempts(conn, at - FAILURE_WINDOW)
        attempt = staff_store.record_login_attempt(conn, key, at)
    with engine.connect() as conn:
        earlier = staff_store.earlier_login_attempts(conn, key, at - FAILURE_WINDOW, attempt)
    if len(earlier) >= MAX_FAILURES:
        _forget_attempt(settings, attempt)
        wait = _retry_after(earlier, at)
        log.warning("sign-in refused: too many failures from client key %s (%d s)", key[:_SHOWN_KEY], wait)
        raise LoginThrottled(wait)
    user = _check_credentials(settings, name, password, at)
    if user is None:
        log.warning("failed sign-in as %r from client key %s", name[:64], key[:_SHOWN_KEY])
        return None
    _forget_attempt(settings, attempt)
    log.info("staff user %s signed in", user.name)
    return user


def _check_credentials(settings: Settings, name: str, password: str, now: datetime) -> StaffUser | None:
    with engine_for(settings).connect() as conn:
        row = staff_store.user_by_name(conn, name.strip().lower())
    text = _normal(password)
    if len(text) > MAX_PASSWORD:
        _verify(_dummy_hash(), "")
        return None
    if not _verify(row.password_hash if row else _dummy_hash(), text) or row is None:
        return None
    if _hasher.check_needs_rehash(row.password_hash):
        with engine_for(settings).begin() as conn:
            staff_store.set_password_hash(conn, row.id, _hasher.hash(text), now)
    return _user(row)


def _forget_attempt(settings: Settings, attempt: int) -> None:
    with engine_for(settings).begin() as conn:
        staff_store.delete_login_attempt(conn, attempt)


def _retry_after(earlier: list[datetime], now: datetime) -> int:
    """Seconds until so many of these failures are out of the window that the client may try again."""
    freed_by = earlier[len(earlier) - MAX_FAILURES]
    return max(1, math.ceil((freed_by + FAILURE_WINDOW - now).total_seconds()))


def _client_key(settings: Settings, client: str) -> str:
    """A keyed hash of the client's address or network: the same client gets the same key, and the
    stored key tells nobody the address."""
    counted = client_of(client) or "unknown"
    digest = hmac.new(secret_key(settings).encode(), f"staff-login:{counted}".encode(), hashlib.sha256)
    return digest.hexdigest()


# -- sessions --------------------------------------------------------------------------------------


def start_session(settings: Settings, user: StaffUser, now: datetime | None = None) -> StaffSession:
    """A new session for a signed-in user (sessions over their time are deleted on the way)."""
    at = _now(now)
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with engine_for(settings).begin() as conn:
        staff_store.forget_sessions(conn, at - IDLE_TIMEOUT, at - ABSOLUTE_TIMEOUT)
        staff_store.insert_session(conn, _token_hash(token), user.id, csrf, at)
    return StaffSession(token, user, csrf, _expires(at, at))


def session_for(settings: Settings, token: str, now: datetime | None = None) -> StaffSession | None:
    """The session of a cookie's token; None when unknown, ended or over its time (then it is deleted).
    Each use moves the idle timeout on (written at most once per :data:`TOUCH_EVERY`)."""
    if not token or len(token) > MAX_TOKEN:
        return None
    at, token_hash = _now(now), _token_hash(token)
    with engine_for(settings).connect() as conn:
        found = staff_store.session_by_hash(conn, token_hash)
    if found is None:
        return None
    session, row = found
    if at >= _expires(session.created_at, session.last_seen_at):
        end_session(settings, token)
        return None
    last_seen = session.last_seen_at
    if at - last_seen >= TOUCH_EVERY:
        with engine_for(settings).begin() as conn:
            staff_store.touch_session(conn, token_hash, at)
        last_seen = at
    return StaffSession(token, _user(row), session.csrf, _expires(session.created_at, last_seen))


def end_session(settings: Settings, token: str) -> None:
    """Sign out: the session is deleted (nothing happens for an unknown token)."""
    if not token or len(token) > MAX_TOKEN:
        return
    with engine_for(settings).begin() as conn:
        staff_store.delete_session(conn, _token_hash(token))


def _expires(created_at: datetime, last_seen_at: datetime) -> datetime:
    return min(last_seen_at + IDLE_TIMEOUT, created_at + ABSOLUTE_TIMEOUT)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)
