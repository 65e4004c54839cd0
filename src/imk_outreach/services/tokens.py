"""Everything keyed with the secret key: signed links bound to one purpose, and keyed hashes.

* The secret key is ``settings.secret_key`` when configured, else one generated on first use
  (``secrets.token_urlsafe(32)``) and kept in the database (``app_settings``), so every process that
  shares the database signs alike.
* A confirm token is an itsdangerous ``URLSafeTimedSerializer`` token; unsubscribe and preference
  tokens, made for every recipient of every mail, are a cheaper ``id.digest.signature`` HMAC.
  Each purpose has its own salt or key (``confirm``, ``unsubscribe``, ``preferences``): a token made
  for one purpose never passes as another. Its payload is the subscriber id plus a keyed digest of
  the address and the row's ``token_nonce`` (never the address, which would be readable in the URL), so
  the token dies when the subscriber is erased or the address changes, and stays dead when the same
  address signs up again into a reused row id: the new row has a new random nonce.
* Tokens made before the nonce existed (digest of the address alone) still pass, so links in mails
  already sent keep working, but only for an address that was never erased: a re-used id with a
  returning address is exactly the case the nonce is for.
* Confirm tokens expire after :data:`CONFIRM_MAX_AGE`; unsubscribe and preference links are in every
  mail and do not expire.
* ``ip_hash`` and ``address_hash`` are HMAC-SHA256 with the secret key: the consent evidence keeps no IP
  address and an erased subscriber leaves no readable address. Changing the secret key invalidates all
  links and makes earlier erasures unrecognisable to a re-import.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import Connection

from imk_outreach.config import Settings, reveal
from imk_outreach.db import store
from imk_outreach.errors import ImkError
from imk_outreach.models import Subscriber
from imk_outreach.services.database import engine_for

Purpose = Literal["confirm", "unsubscribe", "preferences"]
PURPOSES: tuple[Purpose, ...] = ("confirm", "unsubscribe", "preferences")
CONFIRM_MAX_AGE = timedelta(days=7)
MAX_AGE: dict[Purpose, timedelta | None] = {
    "confirm": CONFIRM_MAX_AGE,
    "unsubscribe": None,
    "preferences": None,
}
CLOCK_SKEW = timedelta(minutes=5)  # a token "from the future" within this is still accepted
SECRET_SETTING = "secret_key"
_SALT = "imk-outreach.{purpose}"


class InvalidTokenError(ImkError):
    """A link token is tampered, expired, made for another purpose, or its subscriber is gone.

    One error for all of these on purpose: the web layer answers each the same way, so a link tells
    nobody why it fails.
    """

    def __init__(self, purpose: str) -> None:
        self.purpose = purpose
        super().__init__(f"{purpose} link is not valid (tampered, expired, wrong purpose or unknown)")


@dataclass(frozen=True)
class Claim:
    """What a valid token says: the subscriber id and the digest of their address when it was made."""

    subscriber_id: int
    address_digest: str


def secret_key(settings: Settings) -> str:
    """The configured secret key, else the one stored in the database (generated on first use).

    :raises MissingVariableError: ``secret_key`` names an environment variable that is not set.
    :raises DatabaseError: the database cannot be opened.
    """
    configured = reveal(settings.secret_key)
    if configured:
        return configured
    with engine_for(settings).begin() as conn:
        stored = store.get_setting(conn, SECRET_SETTING)
        if stored is not None:
            return stored
        return store.set_setting_once(conn, SECRET_SETTING, secrets.token_urlsafe(32))


def _keyed(secret: str, domain: str, value: str) -> str:
    return hmac.new(secret.encode(), f"{domain}:{value}".encode(), hashlib.sha256).hexdigest()


def ip_hash(secret: str, ip: str) -> str:
    """HMAC-SHA256 of an IP address (64 hex digits); the address itself is never stored."""
    return _keyed(secret, "ip", ip.strip())


def address_hash(secret: str, email: str) -> str:
    """HMAC-SHA256 of an address in its unique form; what an erased subscriber leaves behind."""
    return _keyed(secret, "erased", store.email_key(email))


def _address_digest(secret: str, email: str, nonce: str | None) -> str:
    return _keyed(secret, "token-nonce", f"{nonce or ''}:{store.email_key(email)}")[:16]


def _legacy_digest(secret: str, email: str) -> str:
    """The digest of tokens made before ``token_nonce``: the address alone."""
    return _keyed(secret, "token", store.email_key(email))[:16]


class _ClockSigner(TimestampSigner):
    """A TimestampSigner whose clock can be set, so tokens can be made as of a given time."""

    def __init__(self, *args: Any, now: datetime | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._now = now

    def get_timestamp(self) -> int:
        return int(self._now.timestamp()) if self._now is not None else super().get_timestamp()


@lru_cache(maxsize=64)
def _serializer(secret: str, purpose: Purpose, now: datetime | None = None) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        secret, salt=_SALT.format(purpose=purpose), signer=_ClockSigner, signer_kwargs={"now": now}
    )


def make_token(secret: str, purpose: Purpose, subscriber: Subscriber, now: datetime | None = None) -> str:
    """A token for ``purpose`` naming ``subscriber`` (which must have an id), issued at ``now``."""
    if subscriber.id is None:
        raise ValueError("a token needs a stored subscriber (id is None)")
    digest = _address_digest(secret, subscriber.email, subscriber.token_nonce)
    if MAX_AGE[purpose] is None:
        return _lasting_token(secret, purpose, subscriber.id, digest)
    payload = [subscriber.id, digest]
    return str(_serializer(secret, purpose, now).dumps(payload))


# Links that never expire (unsubscribe, preferences) are in every mail, so they are made for every
# recipient: a plain HMAC token ``id.digest.signature`` is several times cheaper than a serializer token
# and carries the same claim, bound to its purpose by a per-purpose key.
_LASTING = re.compile(r"(\d{1,12})\.([0-9a-f]{16})\.([A-Za-z0-9_-]{22})")


@lru_cache(maxsize=64)
def _purpose_key(secret: str, purpose: Purpose) -> bytes:
    return hmac.new(secret.encode(), _SALT.format(purpose=purpose).encode(), hashlib.sha256).digest()


def _lasting_signature(secret: str, purpose: Purpose, body: str) -> str:
    mac = hmac.new(_purpose_key(secret, purpose), body.encode("ascii"), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")


def _lasting_token(secret: str, purpose: Purpose, subscriber_id: int, digest: str) -> str:
    body = f"{subscriber_id}.{digest}"
    return f"{body}.{_lasting_signature(secret, purpose, body)}"


def _read_lasting(secret: str, purpose: Purpose, token: str) -> Claim:
    match = _LASTING.fullmatch(token)
    if match is None:
        raise InvalidTokenError(purpose)
    body = f"{match.group(1)}.{match.group(2)}"
    if not hmac.compare_digest(match.group(3), _lasting_signature(secret, purpose, body)):
        raise InvalidTokenError(purpose)
    return Claim(int(match.group(1)), match.group(2))


def read_token(secret: str, purpose: Purpose, token: str, now: datetime | None = None) -> Claim:
    """The claim of a token made for ``purpose``, checked for its age as of ``now``.

    :raises InvalidTokenError: bad signature, another purpose, malformed payload or expired.
    """
    if MAX_AGE[purpose] is None:
        return _read_lasting(secret, purpose, token)
    try:
        payload, issued = _serializer(secret, purpose).loads(token, return_timestamp=True)
    except BadData:
        raise InvalidTokenError(purpose) from None
    if not (isinstance(payload, list) and len(payload) == 2 and isinstance(payload[0], int)):
        raise InvalidTokenError(purpose)
    if not isinstance(payload[1], str) or not _fresh(purpose, issued, now or datetime.now(UTC)):
        raise InvalidTokenError(purpose)
    return Claim(payload[0], payload[1])


def _fresh(purpose: Purpose, issued: datetime, now: datetime) -> bool:
    max_age = MAX_AGE[purpose]
    if max_age is None:
        return True
    return -CLOCK_SKEW <= now - issued <= max_age


def holds_for(secret: str, claim: Claim, subscriber: Subscriber | None) -> bool:
    """Whether the claim names this subscriber row (its nonce) with their current address."""
    if subscriber is None or subscriber.id != claim.subscriber_id:
        return False
    expected = _address_digest(secret, subscriber.email, subscriber.token_nonce)
    return hmac.compare_digest(claim.address_digest, expected)


def claim_holds(conn: Connection, secret: str, claim: Claim, subscriber: Subscriber | None) -> bool:
    """:func:`holds_for`, or a token made before ``token_nonce`` for an address never erased (one that
    was may be back under a reused id: its old links must stay dead). The erased addresses' hashes are
    never removed, which this relies on."""
    if holds_for(secret, claim, subscriber):
        return True
    if subscriber is None or subscriber.id != claim.subscriber_id:
        return False
    if not hmac.compare_digest(claim.address_digest, _legacy_digest(secret, subscriber.email)):
        return False
    return not store.is_erased(conn, address_hash(secret, subscriber.email))


def url(
    settings: Settings, secret: str, purpose: Purpose, subscriber: Subscriber, now: datetime | None = None
) -> str:
    """``{public_url}/{purpose}/{token}``."""
    return f"{settings.public_url.rstrip('/')}/{purpose}/{make_token(secret, purpose, subscriber, now)}"


def confirm_url(settings: Settings, secret: str, subscriber: Subscriber, now: datetime | None = None) -> str:
    return url(settings, secret, "confirm", subscriber, now)


def unsubscribe_url(settings: Settings, secret: str, subscriber: Subscriber) -> str:
    """The one-click unsubscribe link of every mail (also the ``List-Unsubscribe`` URL)."""
    return url(settings, secret, "unsubscribe", subscriber)


def preferences_url(settings: Settings, secret: str, subscriber: Subscriber) -> str:
    return url(settings, secret, "preferences", subscriber)


# -- staff preview links (in the mail that tells staff an edition waits) ------------------------------

PREVIEW_MAX_AGE = timedelta(days=31)
_PREVIEW_SALT = "imk-outreach.edition-preview"


def edition_token(secret: str, edition_id: int, now: datetime | None = None) -> str:
    """A signed, expiring token for the read-only preview of one edition."""
    serializer = URLSafeTimedSerializer(
        secret, salt=_PREVIEW_SALT, signer=_ClockSigner, signer_kwargs={"now": now}
    )
    return str(serializer.dumps(edition_id))


def read_edition_token(secret: str, token: str, now: datetime | None = None) -> int:
    """The edition id of a preview token.

    :raises InvalidTokenError: tampered, another purpose or older than ``PREVIEW_MAX_AGE``.
    """
    try:
        edition_id, issued = URLSafeTimedSerializer(secret, salt=_PREVIEW_SALT).loads(
            token, return_timestamp=True
        )
    except BadData:
        raise InvalidTokenError("preview") from None
    age = (now or datetime.now(UTC)) - issued
    if not isinstance(edition_id, int) or not -CLOCK_SKEW <= age <= PREVIEW_MAX_AGE:
        raise InvalidTokenError("preview")
    return edition_id


def edition_preview_url(settings: Settings, secret: str, edition_id: int, now: datetime | None = None) -> str:
    return f"{settings.public_url.rstrip('/')}/preview/{edition_token(secret, edition_id, now)}"
