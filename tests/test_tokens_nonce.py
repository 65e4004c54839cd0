"""Link tokens carry the row's random ``token_nonce``: the links of an erased subscriber stay dead when
the same address signs up again and gets the same row id (SQLite reuses the highest id once it is
deleted; on PostgreSQL the sequence is set back, as a restore can do). Links sent before the nonce
existed keep working for addresses never erased. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import Subscriber
from imk_outreach.services import subscriptions, tokens
from imk_outreach.services.database import engine_for
from imk_outreach.services.subscriptions import InvalidTokenError
from imk_outreach.web.app import create_app
from tests.support.smtpserver import SmtpTestServer
from tests.support.subscribers import WebClient, subscriber_settings

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
RETURNING = "returning@example.org"


@pytest.fixture
def settings(make_settings: Any, smtp_server: SmtpTestServer) -> Settings:
    return subscriber_settings(make_settings, smtp_server)


def _add(settings: Settings, email: str) -> Subscriber:
    return subscriptions.add(settings, email, "Rita", "de", ["newsletter"], now=NOW).subscriber


def _find(settings: Settings, email: str) -> Subscriber | None:
    with engine_for(settings).connect() as conn:
        return store.find_subscriber(conn, email)


def _links(settings: Settings, sub: Subscriber) -> dict[str, str]:
    secret = tokens.secret_key(settings)
    return {purpose: tokens.make_token(secret, purpose, sub, NOW) for purpose in tokens.PURPOSES}


def _next_id_is(settings: Settings, subscriber_id: int) -> None:
    """Make the next new subscriber get ``subscriber_id`` again (SQLite does so by itself: the erased
    row had the highest id)."""
    with engine_for(settings).begin() as conn:
        if conn.dialect.name == "postgresql":
            sequence = "pg_get_serial_sequence('subscribers', 'id')"
            conn.execute(text(f"SELECT setval({sequence}, :last)"), {"last": subscriber_id - 1})


def _erase_and_return(settings: Settings, old: Subscriber) -> Subscriber:
    assert old.id is not None
    subscriptions.erase(settings, RETURNING, NOW)
    _next_id_is(settings, old.id)
    later = NOW + timedelta(hours=1)
    subscriptions.subscribe(settings, RETURNING, "Rita", "de", ["newsletter"], "203.0.113.9", now=later)
    new = _find(settings, RETURNING)
    assert new is not None and new.id == old.id  # the same address under the same id: the hard case
    return new


def _dead(settings: Settings, purpose: tokens.Purpose, token: str) -> bool:
    try:
        subscriptions.subscriber_for(settings, purpose, token, NOW + timedelta(hours=2))
    except InvalidTokenError:
        return True
    return False


def test_links_of_an_erased_subscriber_stay_dead_when_the_address_returns_under_its_id(
    settings: Settings,
) -> None:
    _add(settings, "first@example.org")
    old = _add(settings, RETURNING)  # the highest id
    links = _links(settings, old)
    assert not any(_dead(settings, purpose, token) for purpose, token in links.items())

    new = _erase_and_return(settings, old)

    assert all(_dead(settings, purpose, token) for purpose, token in links.items()), links
    assert new.token_nonce and new.token_nonce != old.token_nonce
    later = NOW + timedelta(hours=2)
    with pytest.raises(InvalidTokenError):  # the old confirmation link must not confirm the new sign-up
        subscriptions.confirm(settings, links["confirm"], later)
    with pytest.raises(InvalidTokenError):
        subscriptions.unsubscribe(settings, links["unsubscribe"], later)
    with pytest.raises(InvalidTokenError):
        subscriptions.update_preferences(settings, links["preferences"], "en", ["film"], later)
    client = WebClient(create_app(settings, clock=lambda: later))
    one_click = client.post(f"/unsubscribe/{links['unsubscribe']}", content=b"List-Unsubscribe=One-Click")
    assert one_click.status_code == 404
    assert _find(settings, RETURNING) == new  # nothing changed
    for purpose, token in _links(settings, new).items():  # their new links work
        assert not _dead(settings, purpose, token), purpose


def test_each_row_gets_its_own_nonce_and_a_link_holds_only_with_it(settings: Settings) -> None:
    first, second = _add(settings, "first@example.org"), _add(settings, "second@example.org")
    assert first.token_nonce and second.token_nonce and first.token_nonce != second.token_nonce
    assert re.fullmatch(r"[0-9a-f]{32}", first.token_nonce)

    other_nonce = replace(first, token_nonce="0" * 32)
    for purpose, token in _links(settings, other_nonce).items():
        assert _dead(settings, purpose, token), purpose
    unsubscribe = _links(settings, first)["unsubscribe"]
    subscriptions.unsubscribe(settings, unsubscribe, NOW)
    subscriptions.subscribe(
        settings, "first@example.org", "", "de", ["film"], None, now=NOW + timedelta(hours=1)
    )
    again = _find(settings, "first@example.org")
    assert again is not None and again.token_nonce == first.token_nonce  # the same row: its links stay
    assert not _dead(settings, "unsubscribe", unsubscribe)


def _link_made_before_the_nonce(secret: str, purpose: str, sub: Subscriber) -> str:
    """An unsubscribe or preference token as links in mails sent before ``token_nonce`` carry it:
    ``id.digest.signature``, the digest keyed over the address alone."""
    digest = hmac.new(secret.encode(), f"token:{sub.email.lower()}".encode(), hashlib.sha256).hexdigest()
    body = f"{sub.id}.{digest[:16]}"
    key = hmac.new(secret.encode(), f"imk-outreach.{purpose}".encode(), hashlib.sha256).digest()
    mac = hmac.new(key, body.encode(), hashlib.sha256).digest()[:16]
    return f"{body}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def test_links_sent_before_the_nonce_work_until_the_address_is_erased(settings: Settings) -> None:
    _add(settings, "first@example.org")
    old = _add(settings, RETURNING)
    secret = tokens.secret_key(settings)
    sent = {p: _link_made_before_the_nonce(secret, p, old) for p in ("unsubscribe", "preferences")}
    assert subscriptions.subscriber_for(settings, "preferences", sent["preferences"]).id == old.id

    new = _erase_and_return(settings, old)

    assert _dead(settings, "unsubscribe", sent["unsubscribe"])
    assert _dead(settings, "preferences", sent["preferences"])
    assert _link_made_before_the_nonce(secret, "unsubscribe", new) != tokens.make_token(
        secret, "unsubscribe", new
    )  # the links made now carry the nonce
