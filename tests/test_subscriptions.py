"""The subscriptions service on SQLite and PostgreSQL, sending through a real SMTP server (aiosmtpd):
double opt-in with its evidence, signed links, CSV import, export and erasure."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from imk_outreach.config import Settings
from imk_outreach.db import store, tables
from imk_outreach.models import Edition
from imk_outreach.services import dispatch, subscriptions, tokens
from imk_outreach.services.database import engine_for
from imk_outreach.services.subscriptions import (
    ErasedAddressError,
    ImportFileError,
    InputError,
    InvalidTokenError,
    Rejection,
    SubscriberExistsError,
    UnknownSubscriberError,
)
from tests.support.smtpserver import SmtpTestServer
from tests.support.subscribers import (
    PUBLIC_URL,
    confirm_url,
    mails_to,
    part,
    subscriber_settings,
    token_of,
    urls,
)

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
CONFIRMED: dict[str, Any] = {"status": "confirmed", "consent_note": "paper forms, cluster day 2026"}
IP = "203.0.113.7"


@pytest.fixture
def settings(make_settings: Any, smtp_server: SmtpTestServer) -> Settings:
    return subscriber_settings(make_settings, smtp_server)


def _engine(settings: Settings) -> Engine:
    return engine_for(settings)


def _find(settings: Settings, email: str) -> Any:
    with _engine(settings).connect() as conn:
        return store.find_subscriber(conn, email)


def _sign_up(settings: Settings, email: str = "anna@example.org", language: str = "de", **kw: Any) -> str:
    args: dict[str, Any] = {
        "name": "Anna",
        "language": language,
        "lists": ["newsletter"],
        "ip": IP,
        "now": NOW,
    }
    args.update(kw)
    return subscriptions.subscribe(settings, email, **args)


def _deliver(settings: Settings, at: datetime = NOW) -> dispatch.DeliverReport:
    """Send what the outbox holds (the confirmation mails a sign-up queued), with the clock at ``at``."""
    return dispatch.deliver(settings, clock=lambda: at)


# -- sign-up, confirmation mail, evidence -----------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "subject", "greeting", "label"),
    [
        ("de", "Bitte bestätigen Sie Ihr Abonnement", "Hallo,", "Film-Digest"),
        ("en", "Please confirm your subscription", "Hello,", "Film digest"),
    ],
)
def test_sign_up_mails_a_confirmation_in_the_subscribers_language(
    settings: Settings, smtp_server: SmtpTestServer, language: str, subject: str, greeting: str, label: str
) -> None:
    outcome = _sign_up(settings, language=language, lists=["newsletter", "film"])

    assert outcome == "queued" and smtp_server.messages == []
    assert _deliver(settings).sent == 1
    [message] = mails_to(smtp_server, "anna@example.org")
    assert message["Subject"].startswith(subject)
    assert message["Content-Language"] == language
    assert message["From"] == "Cluster IMK <newsletter@example.org>"
    assert message["Auto-Submitted"] == "auto-generated"
    text, html = part(message, "plain"), part(message, "html")
    assert text.startswith(greeting) and label in text and label in html
    assert "Anna" not in text and "Anna" not in html  # no name: nothing a stranger typed
    assert f'<html lang="{language}">' in html
    link = confirm_url(message)
    assert link.startswith(f"{PUBLIC_URL}/confirm/")
    assert html.count(link) == 3  # the button, and the written-out link (href and text)
    # no advertising: the only links are the confirmation link; no news, no images, no tracking
    assert urls(text) == {link}
    assert urls(html) == {link}
    assert "<img" not in html
    assert "Read more" not in text and "Weiterlesen" not in text
    unsubscribe = message["List-Unsubscribe"].strip("<>")
    assert unsubscribe.startswith(f"{PUBLIC_URL}/unsubscribe/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_sign_up_stores_consent_evidence_and_never_the_ip(settings: Settings) -> None:
    _sign_up(settings, email="Anna.Schmidt@Example.ORG")

    sub = _find(settings, "anna.schmidt@example.org")
    assert sub.email == "Anna.Schmidt@example.org"  # domain normalised, local part kept
    assert sub.status == "pending" and sub.lists == ("newsletter",) and sub.language == "de"
    assert sub.signup_at == NOW and sub.confirmed_at is None
    assert sub.consent_version == "2026-11"
    assert sub.source == "web:/subscribe"
    secret = tokens.secret_key(settings)
    assert sub.ip_hash == hmac.new(secret.encode(), f"ip:{IP}".encode(), hashlib.sha256).hexdigest()
    assert IP not in sub.ip_hash and len(sub.ip_hash) == 64


def test_confirmation_link_confirms_and_records_the_time(
    settings: Settings, smtp_server: SmtpTestServer
) -> None:
    _sign_up(settings)
    _deliver(settings)
    token = token_of(confirm_url(mails_to(smtp_server, "anna@example.org")[0]))

    confirmed = subscriptions.confirm(settings, token, NOW + timedelta(hours=2))

    assert confirmed.status == "confirmed"
    assert confirmed.confirmed_at == NOW + timedelta(hours=2)
    assert confirmed.signup_at == NOW and confirmed.ip_hash and confirmed.consent_version == "2026-11"
    again = subscriptions.confirm(settings, token, NOW + timedelta(hours=3))  # a second click changes nothing
    assert again.confirmed_at == NOW + timedelta(hours=2)


def test_a_confirmed_address_gets_no_new_mail_and_a_pending_one_not_too_often(
    settings: Settings, smtp_server: SmtpTestServer
) -> None:
    assert _sign_up(settings) == "queued"
    assert _sign_up(settings, now=NOW + timedelta(minutes=1)) == "recently_mailed"
    assert _deliver(settings, NOW + timedelta(minutes=1)).sent == 1
    assert _sign_up(settings, now=NOW + subscriptions.RESEND_AFTER) == "queued"
    assert _deliver(settings, NOW + subscriptions.RESEND_AFTER).sent == 1
    token = token_of(confirm_url(mails_to(smtp_server, "anna@example.org")[-1]))
    subscriptions.confirm(settings, token, NOW + timedelta(hours=1))

    assert _sign_up(settings, now=NOW + timedelta(days=1)) == "already_confirmed"
    assert _deliver(settings, NOW + timedelta(days=1)).sent == 0
    assert len(smtp_server.messages) == 2
    assert _find(settings, "anna@example.org").status == "confirmed"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"email": "bad@"}, "email"),
        ({"email": "a@localhost"}, "email"),
        ({"email": "jürgen@example.org"}, "email"),  # would need SMTPUTF8
        ({"lists": []}, "lists"),
        ({"lists": ["nope"]}, "lists"),
        ({"language": "fr"}, "language"),
        ({"name": "x" * 201}, "name"),
    ],
)
def test_sign_up_rejects_bad_input_and_stores_nothing(
    settings: Settings, smtp_server: SmtpTestServer, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(InputError) as caught:
        _sign_up(settings, **kwargs)
    assert caught.value.field == field
    assert smtp_server.messages == []
    with _engine(settings).connect() as conn:
        assert list(store.iter_subscribers(conn)) == []


def test_a_refused_confirmation_mail_fails_in_the_outbox_and_signing_up_again_works(
    settings: Settings, smtp_server: SmtpTestServer
) -> None:
    smtp_server.respond("anna@example.org", "550 5.1.1 no such user", times=1)

    assert _sign_up(settings) == "queued"  # the sign-up answers before any mail is tried
    assert _deliver(settings).failed == 1
    assert _find(settings, "anna@example.org").status == "bounced"  # a 5.1.x refusal

    assert _sign_up(settings, now=NOW + timedelta(seconds=5)) == "queued"  # trying again works at once
    assert _deliver(settings, NOW + timedelta(seconds=5)).sent == 1
    assert len(mails_to(smtp_server, "anna@example.org")) == 1


def test_unsubscribed_address_can_sign_up_again_on_the_web(
    settings: Settings, smtp_server: SmtpTestServer
) -> None:
    subscriptions.add(settings, "anna@example.org", now=NOW)
    subscriptions.remove(settings, "anna@example.org", now=NOW)

    assert _sign_up(settings, now=NOW + timedelta(days=1)) == "queued"
    sub = _find(settings, "anna@example.org")
    assert sub.status == "pending" and sub.unsubscribed_at is None and sub.source == "web:/subscribe"


# -- tokens ----------------------------------------------------------------------------------------


def test_secret_key_is_generated_once_and_kept_in_the_database(settings: Settings) -> None:
    first = tokens.secret_key(settings)
    assert len(first) >= 40
    assert tokens.secret_key(settings) == first
    with _engine(settings).connect() as conn:
        assert store.get_setting(conn, "secret_key") == first


def test_a_configured_secret_key_is_used(make_settings: Any) -> None:
    settings = subscriber_settings(make_settings, secret_key="configured-secret-key-0123456789")
    assert tokens.secret_key(settings) == "configured-secret-key-0123456789"
    with _engine(settings).connect() as conn:
        assert store.get_setting(conn, "secret_key") is None


def _stored(settings: Settings, email: str = "anna@example.org") -> Any:
    return subscriptions.add(settings, email, name="Anna", now=NOW).subscriber


def test_tokens_are_bound_to_their_purpose(settings: Settings) -> None:
    sub = _stored(settings)
    secret = tokens.secret_key(settings)
    for purpose in tokens.PURPOSES:
        token = tokens.make_token(secret, purpose, sub, NOW)
        assert tokens.read_token(secret, purpose, token, NOW).subscriber_id == sub.id
        for other in set(tokens.PURPOSES) - {purpose}:
            with pytest.raises(InvalidTokenError):
                tokens.read_token(secret, other, token, NOW)


def test_a_tampered_token_is_invalid(settings: Settings) -> None:
    sub = _stored(settings)
    secret = tokens.secret_key(settings)
    token = tokens.make_token(secret, "unsubscribe", sub)
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    for bad in (flipped, token + "x", "", "not-a-token", token.replace(".", "", 1)):
        with pytest.raises(InvalidTokenError):
            tokens.read_token(secret, "unsubscribe", bad)
    with pytest.raises(InvalidTokenError):
        tokens.read_token("another secret key", "unsubscribe", token)


def test_confirm_tokens_expire_and_link_tokens_do_not(settings: Settings) -> None:
    sub = _stored(settings)
    secret = tokens.secret_key(settings)
    confirm = tokens.make_token(secret, "confirm", sub, NOW)
    assert tokens.read_token(secret, "confirm", confirm, NOW + timedelta(days=7))
    with pytest.raises(InvalidTokenError):
        tokens.read_token(secret, "confirm", confirm, NOW + timedelta(days=7, seconds=1))
    with pytest.raises(InvalidTokenError):  # issued "in the future"
        tokens.read_token(secret, "confirm", confirm, NOW - timedelta(hours=1))
    unsubscribe = tokens.make_token(secret, "unsubscribe", sub, NOW)
    assert tokens.read_token(secret, "unsubscribe", unsubscribe, NOW + timedelta(days=3650))


def test_the_token_carries_no_readable_address(settings: Settings) -> None:
    import base64

    sub = _stored(settings)
    for purpose in ("unsubscribe", "preferences", "confirm"):
        token = tokens.make_token(tokens.secret_key(settings), purpose, sub)  # type: ignore[arg-type]
        payload = token.split(".")[0]
        decoded = (
            base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)) if len(payload) % 4 != 1 else b""
        )
        for text in (decoded, token.encode()):
            assert b"anna" not in text.lower() and b"example" not in text.lower()


def test_an_expired_confirmation_link_does_not_confirm(
    settings: Settings, smtp_server: SmtpTestServer
) -> None:
    _sign_up(settings)
    _deliver(settings)
    token = token_of(confirm_url(mails_to(smtp_server, "anna@example.org")[0]))

    with pytest.raises(InvalidTokenError):
        subscriptions.confirm(settings, token, NOW + timedelta(days=8))
    assert _find(settings, "anna@example.org").status == "pending"


def test_a_token_dies_with_its_address(settings: Settings) -> None:
    sub = _stored(settings)
    secret = tokens.secret_key(settings)
    token = tokens.make_token(secret, "preferences", sub)
    assert subscriptions.subscriber_for(settings, "preferences", token).id == sub.id

    with _engine(settings).begin() as conn:  # the address changes (e.g. corrected by staff)
        store.save_subscriber(conn, replace(sub, email="anna.neu@example.org"), NOW)
    with pytest.raises(InvalidTokenError):
        subscriptions.subscriber_for(settings, "preferences", token)

    other = _stored(settings, "ben@example.org")
    token = tokens.make_token(secret, "unsubscribe", other)
    subscriptions.erase(settings, "ben@example.org", NOW)
    with pytest.raises(InvalidTokenError):
        subscriptions.unsubscribe(settings, token, NOW)


def test_an_old_confirmation_link_does_not_resubscribe(
    settings: Settings, smtp_server: SmtpTestServer
) -> None:
    _sign_up(settings)
    _deliver(settings)
    token = token_of(confirm_url(mails_to(smtp_server, "anna@example.org")[0]))
    subscriptions.remove(settings, "anna@example.org", NOW + timedelta(minutes=5))

    with pytest.raises(InvalidTokenError):
        subscriptions.confirm(settings, token, NOW + timedelta(hours=1))
    assert _find(settings, "anna@example.org").status == "unsubscribed"


# -- unsubscribe and preferences -------------------------------------------------------------------


def test_unsubscribe_is_idempotent_and_keeps_the_evidence(settings: Settings) -> None:
    sub = _stored(settings)
    token = tokens.make_token(tokens.secret_key(settings), "unsubscribe", sub)

    first = subscriptions.unsubscribe(settings, token, NOW + timedelta(days=1))
    second = subscriptions.unsubscribe(settings, token, NOW + timedelta(days=2))

    assert first.status == second.status == "unsubscribed"
    assert second.unsubscribed_at == NOW + timedelta(days=1)
    assert second.confirmed_at == NOW and second.lists == ("newsletter",)
    assert (second.consent_version, second.source) == (sub.consent_version, sub.source)  # evidence kept


def test_preferences_change_language_and_lists(settings: Settings) -> None:
    sub = _stored(settings)
    token = tokens.make_token(tokens.secret_key(settings), "preferences", sub)

    changed = subscriptions.update_preferences(settings, token, "en", ["film", "newsletter", "film"], NOW)

    assert (changed.language, changed.lists, changed.status) == ("en", ("film", "newsletter"), "confirmed")
    for language, lists in (("fr", ["film"]), ("en", []), ("en", ["nope"])):
        with pytest.raises(InputError):
            subscriptions.update_preferences(settings, token, language, lists, NOW)
    assert _find(settings, "anna@example.org").lists == ("film", "newsletter")


# -- add, remove, export, erase --------------------------------------------------------------------


def test_add_validates_and_refuses_known_and_erased_addresses(
    settings: Settings, smtp_server: SmtpTestServer
) -> None:
    added = subscriptions.add(settings, "Ben@Example.org", "Ben", "en", ["film"], "confirmed", NOW)
    assert (added.subscriber.status, added.subscriber.source, added.mailed) == ("confirmed", "cli", False)
    assert added.subscriber.confirmed_at == NOW

    with pytest.raises(SubscriberExistsError, match="confirmed"):
        subscriptions.add(settings, "ben@example.org", now=NOW)
    with pytest.raises(InputError, match="unknown list 'nope'"):
        subscriptions.add(settings, "carl@example.org", lists=["nope"], now=NOW)
    with pytest.raises(InputError, match="unknown status"):
        subscriptions.add(settings, "carl@example.org", status="bounced", now=NOW)
    subscriptions.erase(settings, "ben@example.org", NOW)
    with pytest.raises(ErasedAddressError):
        subscriptions.add(settings, "BEN@example.org", now=NOW)
    assert smtp_server.messages == []


def test_add_pending_queues_the_confirmation_and_again_when_repeated(
    settings: Settings, smtp_server: SmtpTestServer
) -> None:
    result = subscriptions.add(settings, "carl@example.org", language="en", status="pending", now=NOW)
    assert result.mailed and result.subscriber.status == "pending"
    assert dispatch.deliver(settings).sent == 1
    subscriptions.add(settings, "carl@example.org", status="pending", now=NOW)
    assert dispatch.deliver(settings).sent == 1
    assert len(mails_to(smtp_server, "carl@example.org")) == 2


def test_remove_unsubscribes_and_an_unknown_address_is_an_error(settings: Settings) -> None:
    _stored(settings)
    assert subscriptions.remove(settings, " ANNA@example.org ", NOW).status == "unsubscribed"
    with pytest.raises(UnknownSubscriberError):
        subscriptions.remove(settings, "nobody@example.org", NOW)


def test_export_has_the_documented_shape(settings: Settings, smtp_server: SmtpTestServer) -> None:
    subscriptions.add(settings, "ben@example.org", "Ben", "en", ["film", "newsletter"], now=NOW)
    _sign_up(settings)

    records = list(subscriptions.export(settings))

    assert [r["email"] for r in records] == ["ben@example.org", "anna@example.org"]
    assert all(list(r) == list(subscriptions.EXPORT_JSON_FIELDS) for r in records)
    assert records[0] == {
        "email": "ben@example.org",
        "name": "Ben",
        "language": "en",
        "lists": ["film", "newsletter"],
        "status": "confirmed",
        "signup_at": NOW.isoformat(),
        "confirmed_at": NOW.isoformat(),
        "consent_version": None,  # staff added them: no consent text of ours was shown
        "source": "cli",
        "unsubscribed_at": None,
        "bounce_reason": None,
        "consent_events": [
            {
                "kind": "add",
                "at": NOW.isoformat(),
                "ip_hash": None,
                "consent_version": None,
                "language": "en",
                "source": "cli",
                "note": None,
                "detail": {"status": "confirmed", "lists": ["film", "newsletter"]},
            }
        ],
    }
    assert records[1]["status"] == "pending" and records[1]["confirmed_at"] is None
    assert [e["kind"] for e in records[1]["consent_events"]] == ["signup"]
    assert records[1]["consent_events"][0]["consent_version"] == "2026-11"
    assert [r["email"] for r in subscriptions.export(settings, "ANNA@example.org")] == ["anna@example.org"]
    with pytest.raises(UnknownSubscriberError):
        subscriptions.export(settings, "nobody@example.org")


def _all_rows(settings: Settings) -> str:
    """Every value in every table, as one string."""
    dump = []
    with _engine(settings).connect() as conn:
        for table in tables.metadata.sorted_tables:
            dump += [repr(tuple(row)) for row in conn.execute(select(table))]
    return "\n".join(dump)


def test_erase_leaves_only_a_keyed_hash(settings: Settings) -> None:
    sub = subscriptions.add(
        settings, "Dora.Secret@example.org", "Dora Geheim", "de", ["film"], now=NOW
    ).subscriber
    _stored(settings, "keep@example.org")
    with _engine(settings).begin() as conn:
        edition = Edition(id=0, campaign="monthly", created_at=NOW, date=NOW, sections=())
        edition_id = store.create_edition(conn, edition)
        conn.execute(
            tables.outbox.insert().values(
                edition_id=edition_id,
                channel="email",
                subscriber_id=sub.id,
                language="de",
                state="sent",
                attempts=1,
                next_attempt_at=NOW,
                created_at=NOW,
                updated_at=NOW,
            )
        )

    subscriptions.erase(settings, "dora.secret@EXAMPLE.org", NOW)

    everything = _all_rows(settings).lower()
    assert "dora" not in everything and "geheim" not in everything
    assert "keep@example.org" in everything
    with _engine(settings).connect() as conn:
        assert conn.execute(select(tables.outbox.c.subscriber_id)).scalars().all() == [None]
        hashes = conn.execute(select(tables.erased_addresses.c.email_hash)).scalars().all()
        assert hashes == [tokens.address_hash(tokens.secret_key(settings), "Dora.Secret@example.org")]
        lists = conn.execute(select(tables.subscriber_lists.c.subscriber_id)).scalars().all()
        assert sub.id not in lists
    with pytest.raises(UnknownSubscriberError):
        subscriptions.erase(settings, "dora.secret@example.org", NOW)


# -- CSV import ------------------------------------------------------------------------------------


def _csv(tmp_path: Path, text: str, name: str = "people.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


MIXED = """email,name,language,lists
erika@example.org,Erika Mustermann,de,newsletter;film
jane@example.com,Jane Doe,en,
bad@,Broken,de,newsletter
kofi@example.com,Kofi,en,newsletter;podcast
li@example.net,Li Wei,fr,newsletter
ERIKA@example.org,Erika again,de,newsletter

max@example.org,,,
"""


def test_import_takes_good_rows_and_names_each_rejected_line(settings: Settings, tmp_path: Path) -> None:
    report = subscriptions.import_csv(settings, _csv(tmp_path, MIXED), now=NOW, **CONFIRMED)

    assert (report.imported, report.updated, report.unchanged) == (3, 0, 0)
    assert report.rejected == [
        Rejection(4, "bad@", "invalid address (There must be something after the @-sign.)"),
        Rejection(5, "kofi@example.com", "unknown list 'podcast' (known: newsletter, film)"),
        Rejection(6, "li@example.net", "unknown language 'fr' (known: de, en)"),
        Rejection(7, "ERIKA@example.org", "duplicate of line 2"),
    ]
    assert (
        str(report.rejected[0]) == "line 4: bad@: invalid address (There must be something after the @-sign.)"
    )
    erika, jane, max_ = (
        _find(settings, e) for e in ("erika@example.org", "jane@example.com", "max@example.org")
    )
    assert (erika.name, erika.language, erika.lists) == ("Erika Mustermann", "de", ("film", "newsletter"))
    assert (jane.language, jane.lists) == ("en", ("newsletter",))  # empty lists: the first configured list
    assert (max_.name, max_.language, max_.lists) == ("", "de", ("newsletter",))  # defaults
    assert erika.status == "confirmed" and erika.confirmed_at == NOW and erika.source == "import:people.csv"
    assert erika.consent_version is None and erika.ip_hash is None  # they saw no consent text of ours


def test_reimporting_the_same_file_changes_nothing(settings: Settings, tmp_path: Path) -> None:
    path = _csv(tmp_path, MIXED)
    subscriptions.import_csv(settings, path, now=NOW, **CONFIRMED)
    before = _all_rows(settings)

    report = subscriptions.import_csv(settings, path, now=NOW + timedelta(days=1), **CONFIRMED)

    assert (report.imported, report.updated, report.unchanged, len(report.rejected)) == (0, 0, 3, 4)
    assert _all_rows(settings) == before


def test_import_adds_to_existing_subscribers_and_never_removes(settings: Settings, tmp_path: Path) -> None:
    subscriptions.add(settings, "erika@example.org", "Erika", "en", ["film"], now=NOW)
    path = _csv(tmp_path, "email,lists\nerika@example.org,newsletter\n")

    report = subscriptions.import_csv(settings, path, now=NOW, **CONFIRMED)

    assert (report.imported, report.updated) == (0, 1)
    erika = _find(settings, "erika@example.org")
    assert (erika.name, erika.language, erika.lists) == ("Erika", "en", ("film", "newsletter"))


def test_import_refuses_erased_and_unsubscribed_addresses(settings: Settings, tmp_path: Path) -> None:
    _stored(settings, "gone@example.org")
    subscriptions.erase(settings, "gone@example.org", NOW)
    _stored(settings, "left@example.org")
    subscriptions.remove(settings, "left@example.org", NOW)
    path = _csv(tmp_path, "email\nGone@Example.org\nleft@example.org\n")

    report = subscriptions.import_csv(settings, path, now=NOW, **CONFIRMED)

    assert report.imported == 0
    assert [(r.line, r.reason) for r in report.rejected] == [
        (2, "was erased; not re-imported"),
        (3, "unsubscribed earlier; not re-subscribed by an import"),
    ]
    assert _find(settings, "gone@example.org") is None
    assert _find(settings, "left@example.org").status == "unsubscribed"


def test_pending_import_mails_each_new_subscriber_and_never_downgrades(
    settings: Settings, smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    subscriptions.add(settings, "old@example.org", now=NOW)
    path = _csv(
        tmp_path, "email,language\nnew.de@example.org,de\nnew.en@example.org,en\nold@example.org,de\n"
    )

    report = subscriptions.import_csv(settings, path, status="pending", now=NOW)

    assert (report.imported, report.unchanged, report.mailed, report.mail_failures) == (2, 1, 2, [])
    assert _find(settings, "old@example.org").status == "confirmed"
    assert _find(settings, "new.de@example.org").status == "pending"
    assert dispatch.deliver(settings).sent == 2  # the outbox sends the queued mails
    assert sorted(smtp_server.recipients()) == ["new.de@example.org", "new.en@example.org"]
    assert mails_to(smtp_server, "new.de@example.org")[0]["Content-Language"] == "de"
    assert mails_to(smtp_server, "new.en@example.org")[0]["Content-Language"] == "en"
    again = subscriptions.import_csv(settings, path, status="pending", now=NOW + timedelta(hours=1))
    assert (again.imported, again.unchanged, again.mailed) == (0, 3, 0)
    assert len(smtp_server.messages) == 2


def test_a_confirmed_import_never_confirms_a_pending_subscriber(settings: Settings, tmp_path: Path) -> None:
    _sign_up(settings)
    path = _csv(tmp_path, "email\nanna@example.org\n")
    report = subscriptions.import_csv(settings, path, now=NOW, **CONFIRMED)
    assert report.unchanged == 1
    assert "stays pending, not confirmed" in str(report.lines[0])
    anna = _find(settings, "anna@example.org")
    assert anna.status == "pending" and anna.confirmed_at is None and anna.source == "web:/subscribe"


def test_a_pending_import_whose_mail_is_refused_leaves_a_bounce_in_the_evidence(
    settings: Settings, smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    smtp_server.respond("nobody@example.org", "550 5.1.1 no such user")
    path = _csv(tmp_path, "email\nnobody@example.org\nsomebody@example.org\n")

    report = subscriptions.import_csv(settings, path, status="pending", now=NOW)
    delivered = dispatch.deliver(settings)

    assert (report.mailed, report.mail_failures, delivered.sent, delivered.failed) == (2, [], 1, 1)
    nobody = _find(settings, "nobody@example.org")
    assert nobody.status == "bounced"
    [record] = subscriptions.export(settings, "nobody@example.org")
    assert [e["kind"] for e in record["consent_events"]] == ["import", "bounce"]


def test_import_reads_excel_style_files_and_reports_ignored_columns(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffE-Mail;x\n".encode() + b"")
    with pytest.raises(ImportFileError, match="no 'email' column"):
        subscriptions.import_csv(settings, path, now=NOW, **CONFIRMED)
    path.write_bytes(
        '\ufeffEmail;Name;Lists;Notiz\r\nerika@example.org;Erika;"newsletter;film";x\r\n'.encode()
    )

    report = subscriptions.import_csv(settings, path, now=NOW, **CONFIRMED)

    assert report.imported == 1 and report.ignored_columns == ("notiz",)
    assert _find(settings, "erika@example.org").lists == ("film", "newsletter")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"name,language\nErika,de\n", "people.csv:1: the header row has no 'email' column"),
        (b"", "no 'email' column (found: empty)"),
        (b"email,email\na@example.org,b@example.org\n", "column 'email' appears twice"),
        (b"email,name\na@example.org,M\xc3\xbcller\nb@example.org,M\xfcller\n", "mixes UTF-8 with another"),
    ],
)
def test_an_unreadable_import_file_is_one_clear_error(
    settings: Settings, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(content)
    with pytest.raises(ImportFileError, match=re.escape(message)):
        subscriptions.import_csv(settings, path, now=NOW)
    with _engine(settings).connect() as conn:
        assert list(store.iter_subscribers(conn)) == []


def test_import_of_a_missing_file_or_with_a_wrong_status_fails(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match="file not found"):
        subscriptions.import_csv(settings, tmp_path / "missing.csv", now=NOW)
    with pytest.raises(InputError, match="unknown status"):
        subscriptions.import_csv(settings, _csv(tmp_path, "email\n"), status="unsubscribed", now=NOW)
