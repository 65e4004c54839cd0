"""The public pages through an in-process httpx client, on SQLite and PostgreSQL, with mail going to a
real SMTP server: subscribe, confirm (GET shows, POST confirms), preferences, unsubscribe (RFC 8058
one-click included), neutral 404 for every bad link, and every page in German and English."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from babel.messages.pofile import read_po
from lxml import html as lxml_html

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import Subscriber
from imk_outreach.render.env import catalog_path
from imk_outreach.services import dispatch, pages, subscriptions, tokens
from imk_outreach.services.database import engine_for
from imk_outreach.web.app import SECURITY_HEADERS, create_app
from imk_outreach.web.public import accepted_languages
from tests.support.smtpserver import SmtpTestServer
from tests.support.subscribers import (
    PUBLIC_URL,
    WebClient,
    confirm_url,
    mails_to,
    part,
    subscriber_settings,
)

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
CLIENT_IP = "203.0.113.7"
FORM = {"email": "anna@example.org", "name": "Anna", "language": "de", "lists": ["newsletter", "film"]}


@pytest.fixture
def settings(make_settings: Any, smtp_server: SmtpTestServer) -> Settings:
    return subscriber_settings(make_settings, smtp_server)


def _client(settings: Settings, clock: Callable[[], datetime] = lambda: NOW) -> WebClient:
    return WebClient(create_app(settings, clock=clock), client_ip=CLIENT_IP)


@pytest.fixture
def client(settings: Settings) -> WebClient:
    return _client(settings)


def _find(settings: Settings, email: str) -> Subscriber | None:
    with engine_for(settings).connect() as conn:
        return store.find_subscriber(conn, email)


def _stored(settings: Settings, email: str = "ben@example.org", language: str = "en") -> Subscriber:
    return subscriptions.add(settings, email, "Ben", language, ["newsletter"], now=NOW).subscriber


def _token(settings: Settings, purpose: tokens.Purpose, subscriber: Subscriber) -> str:
    return tokens.make_token(tokens.secret_key(settings), purpose, subscriber, NOW)


def _deliver(settings: Settings) -> dispatch.DeliverReport:
    """Send the confirmation mails the sign-ups queued (the app's clock stands at NOW)."""
    return dispatch.deliver(settings, clock=lambda: NOW)


def _lang_of(page: str) -> str:
    match = re.search(r'<html lang="([a-z]+)">', page)
    assert match, page[:200]
    return match.group(1)


# -- subscribe -------------------------------------------------------------------------------------


def test_the_form_has_every_field_the_consent_text_and_a_honeypot(client: WebClient) -> None:
    response = client.get("/subscribe", headers={"Accept-Language": "en-GB,en;q=0.9"})

    assert response.status_code == 200
    doc = lxml_html.fromstring(response.text)
    form = doc.forms[0]
    assert form.method == "POST"
    assert {"email", "name", "language", "lists", "website"} <= set(form.inputs.keys())
    assert [i.get("value") for i in doc.xpath('//input[@name="language"]')] == ["de", "en"]
    assert [i.get("value") for i in doc.xpath('//input[@name="lists"]')] == ["newsletter", "film"]
    assert doc.xpath('//input[@name="website"]/ancestor::div[@aria-hidden="true"]')
    assert "Consent text version 2026-11" in response.text
    assert doc.xpath('//button[@type="submit"]')
    assert _lang_of(response.text) == "en"


def test_sign_up_queues_the_mail_and_stores_hashed_evidence(
    settings: Settings, client: WebClient, smtp_server: SmtpTestServer
) -> None:
    response = client.post("/subscribe?lang=de", data=FORM)

    assert response.status_code == 200
    assert "Bitte sehen Sie in Ihr Postfach" in response.text
    assert smtp_server.messages == []  # queued in the outbox, not sent by the request
    assert _deliver(settings).sent == 1
    [mail] = mails_to(smtp_server, "anna@example.org")
    assert mail["Content-Language"] == "de"
    assert confirm_url(mail).startswith(f"{PUBLIC_URL}/confirm/")
    assert part(mail, "plain").startswith("Hallo,")  # no name: nothing a stranger typed
    sub = _find(settings, "anna@example.org")
    assert sub is not None and sub.status == "pending" and sub.source == "web:/subscribe"
    assert sub.lists == ("film", "newsletter") and sub.signup_at == NOW and sub.consent_version == "2026-11"
    expected = hmac.new(tokens.secret_key(settings).encode(), f"ip:{CLIENT_IP}".encode(), hashlib.sha256)
    assert sub.ip_hash == expected.hexdigest() and CLIENT_IP not in (sub.ip_hash or "")


def test_the_answer_does_not_tell_whether_an_address_is_known(
    settings: Settings, client: WebClient, smtp_server: SmtpTestServer
) -> None:
    _stored(settings, "known@example.org")
    first = client.post("/subscribe?lang=en", data={**FORM, "email": "new@example.org"})
    known = client.post("/subscribe?lang=en", data={**FORM, "email": "known@example.org"})

    assert first.status_code == known.status_code == 200
    assert first.text == known.text
    _deliver(settings)
    assert smtp_server.recipients() == ["new@example.org"]  # the confirmed address gets no mail


def test_the_honeypot_stores_and_sends_nothing_but_looks_the_same(
    settings: Settings, client: WebClient, smtp_server: SmtpTestServer
) -> None:
    normal = client.post("/subscribe?lang=en", data=FORM)
    bot = client.post(
        "/subscribe?lang=en", data={**FORM, "email": "bot@example.org", "website": "http://spam"}
    )

    assert bot.status_code == 200 and bot.text == normal.text
    assert _find(settings, "bot@example.org") is None
    _deliver(settings)
    assert smtp_server.recipients() == ["anna@example.org"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"email": "bad@"}, "Bitte geben Sie eine gültige E-Mail-Adresse ein."),
        ({"lists": []}, "Bitte wählen Sie mindestens eine Liste aus."),
        ({"lists": ["nope"]}, "Bitte wählen Sie mindestens eine Liste aus."),
        ({"language": "fr"}, "Bitte prüfen Sie Ihre Angaben."),
    ],
)
def test_bad_input_shows_the_form_again_with_the_reason(
    settings: Settings, client: WebClient, smtp_server: SmtpTestServer, data: dict[str, Any], message: str
) -> None:
    response = client.post("/subscribe?lang=de", data={**FORM, **data})

    assert response.status_code == 400
    assert message in response.text
    form = lxml_html.fromstring(response.text).forms[0]
    assert form.inputs["email"].value == {**FORM, **data}["email"]  # what was typed is kept
    assert smtp_server.messages == []


def test_the_mail_server_down_changes_nothing_in_the_answer(make_settings: Any) -> None:
    settings = subscriber_settings(make_settings, None)  # nothing listens on the SMTP port
    response = _client(settings).post("/subscribe?lang=en", data=FORM)

    assert response.status_code == 200 and "Please check your inbox" in response.text
    found = _find(settings, "anna@example.org")
    assert found is not None and found.status == "pending"  # the mail waits in the outbox
    assert _deliver(settings).retry == 1


# -- confirm ---------------------------------------------------------------------------------------


def test_get_shows_a_button_and_only_post_confirms(
    settings: Settings, client: WebClient, smtp_server: SmtpTestServer
) -> None:
    client.post("/subscribe", data={**FORM, "language": "en"})
    _deliver(settings)
    path = confirm_url(mails_to(smtp_server, "anna@example.org")[0]).removeprefix(PUBLIC_URL)

    shown = client.get(path)
    assert shown.status_code == 200
    assert _lang_of(shown.text) == "en"  # the subscriber's language
    form = lxml_html.fromstring(shown.text).forms[0]
    assert form.method == "POST"
    assert "anna@example.org" in shown.text and "Film digest" in shown.text
    client.get(path)
    client.request("HEAD", path)
    assert _find(settings, "anna@example.org").status == "pending"  # type: ignore[union-attr]

    confirmed = client.post(path)
    assert confirmed.status_code == 200
    assert "Your subscription is confirmed" in confirmed.text
    sub = _find(settings, "anna@example.org")
    assert sub is not None and sub.status == "confirmed" and sub.confirmed_at == NOW
    link = lxml_html.fromstring(confirmed.text).xpath('//a[contains(@href, "/preferences/")]/@href')
    assert link and link[0].startswith(f"{PUBLIC_URL}/preferences/")
    assert "already confirmed" in client.get(path).text


def _bad_tokens(settings: Settings) -> dict[str, dict[str, str]]:
    """path prefix -> {kind of bad token: token}."""
    secret = tokens.secret_key(settings)
    sub = _stored(settings)
    gone = _stored(settings, "gone@example.org")
    gone_tokens = {p: tokens.make_token(secret, p, gone, NOW) for p in tokens.PURPOSES}
    subscriptions.erase(settings, "gone@example.org", NOW)
    result = {}
    for purpose in tokens.PURPOSES:
        good = tokens.make_token(secret, purpose, sub, NOW)
        other = next(p for p in tokens.PURPOSES if p != purpose)
        result[purpose] = {
            "tampered": good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
            "wrong purpose": tokens.make_token(secret, other, sub, NOW),
            "unknown subscriber": gone_tokens[purpose],
            "garbage": "garbage",
            "other key": tokens.make_token("a different secret key", purpose, sub, NOW),
        }
    return result


def test_every_bad_link_gets_the_same_404(settings: Settings, client: WebClient) -> None:
    reference = client.get("/confirm/garbage?lang=de")
    assert reference.status_code == 404
    assert "Dieser Link ist nicht gültig" in reference.text

    for purpose, bad in _bad_tokens(settings).items():
        for kind, token in bad.items():
            for method in ("GET", "POST"):
                response = client.request(method, f"/{purpose}/{token}?lang=de")
                assert (response.status_code, response.text) == (404, reference.text), (purpose, kind, method)
    ben = _find(settings, "ben@example.org")
    assert ben is not None and ben.status == "confirmed"


def test_an_expired_confirmation_link_is_the_same_404(
    settings: Settings, smtp_server: SmtpTestServer
) -> None:
    _client(settings).post("/subscribe", data=FORM)
    _deliver(settings)
    path = confirm_url(mails_to(smtp_server, "anna@example.org")[0]).removeprefix(PUBLIC_URL)
    later = _client(settings, clock=lambda: NOW + timedelta(days=7, minutes=1))
    reference = later.get("/confirm/garbage", headers={"Accept-Language": "de"})

    for method in ("GET", "POST"):
        response = later.request(method, path, headers={"Accept-Language": "de"})
        assert (response.status_code, response.text) == (404, reference.text)
    assert _find(settings, "anna@example.org").status == "pending"  # type: ignore[union-attr]
    assert _client(settings, clock=lambda: NOW + timedelta(days=6)).post(path).status_code == 200


# -- unsubscribe -----------------------------------------------------------------------------------


def test_one_click_unsubscribe_answers_200_without_cookie_or_redirect(
    settings: Settings, client: WebClient
) -> None:
    sub = _stored(settings)
    path = f"/unsubscribe/{_token(settings, 'unsubscribe', sub)}"

    response = client.post(
        path,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 200
    assert "set-cookie" not in response.headers and "location" not in response.headers
    assert response.headers["content-type"].startswith("text/plain")
    assert len(response.text) < 100
    after = _find(settings, "ben@example.org")
    assert after is not None and after.status == "unsubscribed" and after.unsubscribed_at == NOW
    again = client.post(path, content=b"List-Unsubscribe=One-Click")  # mail clients may retry
    assert again.status_code == 200


def test_one_click_as_multipart_form_data_also_works(settings: Settings, client: WebClient) -> None:
    sub = _stored(settings)
    response = client.post(
        f"/unsubscribe/{_token(settings, 'unsubscribe', sub)}",
        files={"List-Unsubscribe": (None, "One-Click")},
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert _find(settings, "ben@example.org").status == "unsubscribed"  # type: ignore[union-attr]


def test_unsubscribe_page_has_a_button_and_the_form_post_shows_a_resubscribe_hint(
    settings: Settings, client: WebClient
) -> None:
    sub = _stored(settings, language="de")
    path = f"/unsubscribe/{_token(settings, 'unsubscribe', sub)}"

    shown = client.get(path)
    assert shown.status_code == 200 and _lang_of(shown.text) == "de"
    assert lxml_html.fromstring(shown.text).forms[0].method == "POST"
    assert _find(settings, "ben@example.org").status == "confirmed"  # type: ignore[union-attr]

    done = client.post(path, data={})
    assert done.status_code == 200
    assert "Sie sind abgemeldet" in done.text
    hint = lxml_html.fromstring(done.text).xpath('//a[contains(@href, "/subscribe")]/@href')
    assert hint == [f"{PUBLIC_URL}/subscribe?lang=de"]
    assert _find(settings, "ben@example.org").status == "unsubscribed"  # type: ignore[union-attr]


# -- preferences -----------------------------------------------------------------------------------


def test_preferences_show_and_change_language_and_lists(settings: Settings, client: WebClient) -> None:
    sub = _stored(settings, language="de")
    path = f"/preferences/{_token(settings, 'preferences', sub)}"

    shown = client.get(path)
    assert shown.status_code == 200 and _lang_of(shown.text) == "de"
    doc = lxml_html.fromstring(shown.text)
    assert doc.xpath('//input[@name="language" and @checked]/@value') == ["de"]
    assert doc.xpath('//input[@name="lists" and @checked]/@value') == ["newsletter"]

    saved = client.post(path, data={"language": "en", "lists": ["film", "newsletter"]})
    assert saved.status_code == 200
    assert _lang_of(saved.text) == "en" and "Your preferences have been saved." in saved.text
    after = _find(settings, "ben@example.org")
    assert after is not None and (after.language, after.lists) == ("en", ("film", "newsletter"))

    refused = client.post(path, data={"language": "en"})
    assert refused.status_code == 400 and "Please choose at least one list." in refused.text
    assert _find(settings, "ben@example.org").lists == ("film", "newsletter")  # type: ignore[union-attr]


# -- language and headers --------------------------------------------------------------------------


def test_the_page_language_follows_query_then_subscriber_then_browser(
    settings: Settings, client: WebClient
) -> None:
    assert _lang_of(client.get("/subscribe").text) == "de"  # the first configured language
    assert _lang_of(client.get("/subscribe", headers={"Accept-Language": "fr, en;q=0.5"}).text) == "en"
    assert _lang_of(client.get("/subscribe?lang=en", headers={"Accept-Language": "de"}).text) == "en"
    assert _lang_of(client.get("/subscribe?lang=xx").text) == "de"
    sub = _stored(settings, language="en")
    path = f"/unsubscribe/{_token(settings, 'unsubscribe', sub)}"
    assert _lang_of(client.get(path, headers={"Accept-Language": "de"}).text) == "en"
    assert _lang_of(client.get(f"{path}?lang=de").text) == "de"


def test_accept_language_parsing() -> None:
    assert accepted_languages("de-DE,de;q=0.9,en;q=0.8") == ["de", "de", "en"]
    assert accepted_languages("en;q=0.2, de;q=0.7, *;q=0.1") == ["de", "en"]
    assert accepted_languages("de;q=0, en") == ["en"]
    assert accepted_languages("") == [] and accepted_languages("de;q=abc") == []


def test_pages_carry_security_headers_and_never_a_cookie(settings: Settings, client: WebClient) -> None:
    sub = _stored(settings)
    responses = [
        client.get("/subscribe"),
        client.post("/subscribe", data=FORM),
        client.get("/confirm/garbage"),
        client.get(f"/unsubscribe/{_token(settings, 'unsubscribe', sub)}"),
    ]
    for response in responses:
        assert "set-cookie" not in response.headers
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value
    assert client.get("/").headers["location"].endswith("/subscribe")


# -- every page in both languages, nothing untranslated -------------------------------------------


def _texts(page: str) -> list[str]:
    """The visible text of a page (text nodes, button labels, titles), one entry per node."""
    doc = lxml_html.fromstring(page)
    for node in doc.xpath("//style|//script"):
        node.drop_tree()
    texts = [" ".join(t.split()) for t in doc.xpath("//text()")]
    texts += doc.xpath("//@aria-label|//@placeholder|//@title")
    return [t for t in texts if t.strip()]


def _same_in_both_languages() -> set[str]:
    """Texts that are the same in German and English by nature: msgids translated to themselves."""
    with catalog_path("de").open("rb") as handle:
        catalog = read_po(handle, locale="de")
    return {str(m.id) for m in catalog if m.id and m.string == m.id}


def _all_pages(settings: Settings, client: WebClient, smtp_server: SmtpTestServer) -> dict[str, list[str]]:
    """Each page (name -> [German, English] HTML), reached through the app where it can be."""
    client.post("/subscribe", data=FORM)
    _deliver(settings)
    confirm = confirm_url(mails_to(smtp_server, "anna@example.org")[0]).removeprefix(PUBLIC_URL)
    ben = _stored(settings)
    preferences = f"/preferences/{_token(settings, 'preferences', ben)}"
    unsubscribe = f"/unsubscribe/{_token(settings, 'unsubscribe', ben)}"
    requests: dict[str, tuple[str, str, dict[str, Any]]] = {
        "subscribe form": ("GET", "/subscribe", {}),
        "subscribe error": ("POST", "/subscribe", {"data": {**FORM, "email": "bad@"}}),
        "check inbox": ("POST", "/subscribe", {"data": {**FORM, "email": "carl@example.org"}}),
        "confirm button": ("GET", confirm, {}),
        "confirmed": ("POST", confirm, {}),
        "already confirmed": ("GET", confirm, {}),
        "preferences": ("GET", preferences, {}),
        "preferences error": ("POST", preferences, {"data": {"language": "de"}}),
        "unsubscribe button": ("GET", unsubscribe, {}),
        "unsubscribed": ("POST", unsubscribe, {"data": {}}),
        "preferences when unsubscribed": ("GET", preferences, {}),
        "invalid link": ("GET", "/confirm/garbage", {}),
    }
    found: dict[str, list[str]] = {}
    for name, (method, path, kwargs) in requests.items():
        for language in ("de", "en"):
            response = client.request(method, f"{path}?lang={language}", **kwargs)
            assert response.status_code in (200, 400, 404), (name, response.status_code)
            found.setdefault(name, []).append(response.text)
    for kind in pages.MESSAGE_KINDS:  # "unavailable" and "error" are hard to provoke over HTTP
        found[f"message {kind}"] = [
            pages.render_page(
                settings, "message", lang, {"kind": kind, "preferences_url": "https://x.example/p"}
            )
            for lang in ("de", "en")
        ]
    return found


def test_every_page_renders_in_german_and_english_with_nothing_untranslated(
    settings: Settings, client: WebClient, smtp_server: SmtpTestServer
) -> None:
    allowed = _same_in_both_languages() | {
        "anna@example.org",
        "ben@example.org",
        "Deutsch",
        "English",
        "Newsletter",
        "·",
    }
    for name, (german, english) in _all_pages(settings, client, smtp_server).items():
        assert _lang_of(german) == "de" and _lang_of(english) == "en", name
        assert german != english, name
        same = set(_texts(german)) & set(_texts(english))
        untranslated = {text for text in same if text not in allowed and not text.startswith("http")}
        assert not untranslated, (name, untranslated)


def test_no_english_template_text_shows_on_a_german_page(
    settings: Settings, client: WebClient, smtp_server: SmtpTestServer
) -> None:
    with catalog_path("de").open("rb") as handle:
        catalog = read_po(handle, locale="de")
    english_only = [
        str(m.id) for m in catalog if m.id and isinstance(m.id, str) and m.string != m.id and "%(" not in m.id
    ]
    for name, (german, _english) in _all_pages(settings, client, smtp_server).items():
        text = " ".join(_texts(german))
        leaked = [msgid for msgid in english_only if len(msgid) > 12 and msgid in text]
        assert not leaked, (name, leaked)
