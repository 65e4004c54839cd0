"""Limits on web sign-ups, so the form cannot be used to flood someone's inbox (config ``signup``).

Three limits, each ``COUNT per DURATION`` over a sliding window, checked in this order:

* ``per_client``: sign-ups from one client address. An IPv6 client counts per /64 network (one host is
  usually given a whole /64, so counting single addresses would limit nothing); an IPv4-mapped IPv6
  address counts as its IPv4 address.
* ``overall``: sign-ups from everyone together (a flood from many addresses).
* ``per_mailbox``: sign-ups for one mailbox, whatever the address's state, so the answer never depends
  on who is subscribed. Plus-addresses count as their mailbox (``anna+x@example.org`` is
  ``anna@example.org``, case ignored); dots (as Gmail ignores them) and other separators are not folded.

A sign-up over a limit stores and mails nothing and is logged with a short keyed hash of the client or
the mailbox (never the IP or the address). One over the client or the overall limit is not counted (a
flood from one address adds no rows); one over the mailbox limit is, so a client that keeps trying one
mailbox runs into its own limit. Counted in the database (``signup_attempts``: the time and the two
keyed hashes, deleted once older than the longest window), so every web process shares the counts; one
sign-up at a time counts and records (:func:`~imk_outreach.db.signups.lock_signups`), so two at once
cannot both slip under a limit.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Connection

from imk_outreach.config import Settings, SignupSettings
from imk_outreach.db import store

log = logging.getLogger(__name__)

# What the visitor is told: a busy page (429) when the client or everyone is over the limit (see
# :func:`retry_after`); for one mailbox the usual "check your inbox" page, since that answer must not
# depend on the address.
Limited = Literal["limited_client", "limited_overall", "limited_mailbox"]
_OUTCOME: dict[str, Limited] = {
    "per_client": "limited_client",
    "overall": "limited_overall",
    "per_mailbox": "limited_mailbox",
}
_SHOWN_KEY = 12  # hex digits of a keyed hash in the log: enough to tell clients apart, nothing more


def mailbox_of(address: str) -> str:
    """The mailbox an address reaches: the local part up to its first ``+``, lower-cased, at the
    lower-cased domain."""
    local, _, domain = address.strip().rpartition("@")
    return f"{local.split('+', 1)[0].lower()}@{domain.lower()}"


def client_of(ip: str | None) -> str | None:
    """What ``per_client`` counts for a peer address: the IPv4 address, or the /64 network of an IPv6
    one; anything else as given; None when the peer is unknown (then only the other limits apply)."""
    text = (ip or "").strip()
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _keyed(secret: str, purpose: str, text: str) -> str:
    return hmac.new(secret.encode(), f"{purpose}:{text}".encode(), hashlib.sha256).hexdigest()


def admit(
    conn: Connection, limits: SignupSettings, secret: str, address: str, ip: str | None, now: datetime
) -> Limited | None:
    """Count this sign-up against the limits: None when it is within all of them, else the first limit
    it is over. Call it first in the sign-up's transaction.

    :param address: the checked address (see ``check_address``).
    """
    store.lock_signups(conn)
    client = client_of(ip)
    client_key = _keyed(secret, "signup-client", client) if client is not None else None
    mailbox_key = _keyed(secret, "signup-mailbox", mailbox_of(address))
    windows = [limit[1] for limit in (limits.per_client, limits.overall, limits.per_mailbox) if limit]
    if windows:
        store.forget_signups(conn, now - max(windows))
    busy = (
        ("per_client", limits.per_client if client_key else None, client_key, None),
        ("overall", limits.overall, None, None),
    )
    for scope, limit, by_client, by_mailbox in busy:
        if _over(conn, scope, limit, now, by_client, by_mailbox):
            return _OUTCOME[scope]
    # Counted from here on, also when the mailbox has had enough: a client that keeps trying one
    # mailbox runs into its own limit.
    over = _over(conn, "per_mailbox", limits.per_mailbox, now, None, mailbox_key)
    store.record_signup(conn, now, client_key, mailbox_key)
    return _OUTCOME["per_mailbox"] if over else None


def _over(
    conn: Connection,
    scope: str,
    limit: tuple[int, timedelta] | None,
    now: datetime,
    client_key: str | None,
    mailbox_key: str | None,
) -> bool:
    """Whether the sign-ups counted for this limit fill it already (logged when they do)."""
    if limit is None:
        return False
    count, per = limit
    if store.count_signups(conn, now - per, client_key=client_key, mailbox_key=mailbox_key) < count:
        return False
    log.warning(
        "sign-up not taken: the %s limit of %d per %s is reached (%s)",
        scope,
        count,
        _duration(per),
        _whose(client_key, mailbox_key),
    )
    return True


def _whose(client_key: str | None, mailbox_key: str | None) -> str:
    """Which count is full, as the log shows it: a short keyed hash, never the IP or the address."""
    if client_key:
        return f"client key {client_key[:_SHOWN_KEY]}"
    if mailbox_key:
        return f"mailbox key {mailbox_key[:_SHOWN_KEY]}"
    return "all clients"


def retry_after(settings: Settings, outcome: str) -> timedelta | None:
    """How long a visitor over the client or the overall limit should wait at most (the window of
    that limit); None for any other outcome."""
    limit = {"limited_client": settings.signup.per_client, "limited_overall": settings.signup.overall}.get(
        outcome
    )
    return limit[1] if limit else None


def _duration(delta: timedelta) -> str:
    """``timedelta(hours=1)`` -> ``1h``, as config.yaml writes it."""
    seconds, text = int(delta.total_seconds()), ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            text += f"{seconds // size}{unit}"
            seconds %= size
    return text or "0s"
