"""The staff app's access rules through an in-process httpx client (cookies kept, as a browser does), on
SQLite and PostgreSQL: every /admin page turns anonymous requests away to the sign-in, sign-in right and
wrong, the throttle after 10 failures, the cookie's flags, CSRF on every POST, a foreign Origin, the
admin CSP, and the language (Accept-Language before sign-in, the user's choice after)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from imk_outreach.config import Settings
from imk_outreach.services import staff
from imk_outreach.web.admin.common import ADMIN_CSP
from imk_outreach.web.app import create_app
from tests.conftest import ConfigFactory

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
PUBLIC_URL = "https://cluster.example"
PASSWORD = "Kastanien-Allee 42"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]*)"')


class AdminClient:
    """The app through httpx in process, keeping cookies between requests like a browser (over
    https, so Secure cookies come back). ``headers`` go with every request."""

    def __init__(self, app: FastAPI, client_ip: str = "203.0.113.7", **headers: str) -> None:
        self.app = app
        self.client_ip = client_ip
        self.cookies = httpx.Cookies()
        self.headers = headers

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=(self.client_ip, 40000))
            async with httpx.AsyncClient(
                transport=transport, base_url="https://testserver", cookies=self.cookies, headers=self.headers
            ) as client:
                response = await client.request(method, url, **kwargs)
                self.cookies = httpx.Cookies(client.cookies)
                return response

        return asyncio.run(send())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def csrf(self, url: str = "/admin") -> str:
        """The CSRF token of the forms on the page ``url``."""
        page = self.get(url)
        assert page.status_code == 200, page.text
        found = CSRF_FIELD.search(page.text)
        assert found is not None, "no CSRF token on the page"
        return found.group(1)

    def sign_in(
        self, name: str = "anna", password: str = PASSWORD, next_path: str = "/admin"
    ) -> httpx.Response:
        token = self.csrf("/admin/login")
        form = {"username": name, "password": password, "csrf_token": token, "next": next_path}
        return self.post("/admin/login", data=form)

    def post_form(self, url: str, data: dict[str, str], page: str = "/admin") -> httpx.Response:
        """POST ``data`` with the CSRF token of ``page`` (as the form on that page would)."""
        return self.post(url, data={**data, "csrf_token": self.csrf(page)})


def admin_settings(make_settings: ConfigFactory, tmp_path: Path, **extra: Any) -> Settings:
    """A config with one manual source and ``public_url`` https (``extra`` adds or overrides keys)."""
    (tmp_path / "campaigns").mkdir(exist_ok=True)
    values: dict[str, Any] = {"public_url": PUBLIC_URL, **extra}
    return make_settings([{"name": "manual", "type": "manual", "url": "manual"}], **values)


def add_staff(settings: Settings, name: str = "anna", **options: Any) -> staff.StaffUser:
    return staff.add_user(settings, name, PASSWORD, now=NOW, **options)


def client_for(
    settings: Settings, clock: Callable[[], datetime] = lambda: NOW, **headers: str
) -> AdminClient:
    return AdminClient(create_app(settings, clock=clock), **headers)


def set_cookie_headers(response: httpx.Response, name: str) -> list[str]:
    return [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]


@pytest.fixture
def settings(make_settings: ConfigFactory, tmp_path: Path) -> Settings:
    made = admin_settings(make_settings, tmp_path)
    add_staff(made, email="anna@example.org", language="de")
    return made


# -- anonymous requests ------------------------------------------------------------------------------


def _example_path(path: str) -> str:
    """``path`` with each parameter filled (``{edition_id}`` -> 1, ``{language}`` -> de)."""
    values = {"language": "de", "lang": "de", "name": "digest"}
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values.get(m.group(1), "1"), path)


def admin_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, example path) of every route under /admin but the sign-in (the routes of the OpenAPI
    schema: every page of the app's routers; the app does not publish it)."""
    found = []
    for path, methods in app.openapi()["paths"].items():
        if (path == "/admin" or path.startswith("/admin/")) and path != "/admin/login":
            found.extend((method.upper(), _example_path(path)) for method in sorted(methods))
    return found


def test_every_admin_page_sends_anonymous_requests_to_the_sign_in(settings: Settings) -> None:
    client = client_for(settings)
    routes = admin_routes(client.app)
    paths = {path for _method, path in routes}
    assert {"/admin", "/admin/editions/1", "/admin/editions/1/html/de", "/admin/logout"} <= paths
    for method, path in routes:
        response = client.request(method, path, data={"csrf_token": "x"} if method == "POST" else None)
        assert response.status_code == 303, (method, path, response.status_code)
        location = urlsplit(response.headers["location"])
        assert location.path == "/admin/login", (method, path)
        if method == "GET" and path != "/admin":
            assert parse_qs(location.query)["next"] == [path]
    # an unknown page under /admin does not tell an anonymous visitor it does not exist
    assert client.get("/admin/no/such/page").status_code == 303
    # the sign-in page and the style sheet need no session
    assert client.get("/admin/login").status_code == 200
    css = client.get("/admin/static/admin.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]


def test_an_expired_session_goes_back_to_the_sign_in(settings: Settings) -> None:
    moments = [NOW]
    client = client_for(settings, clock=lambda: moments[0])
    assert client.sign_in().status_code == 303
    assert client.get("/admin").status_code == 200
    moments[0] = NOW + timedelta(hours=8, minutes=1)  # idle timeout
    response = client.get("/admin/editions/3?width=mobile")
    assert response.status_code == 303
    assert parse_qs(urlsplit(response.headers["location"]).query)["next"] == [
        "/admin/editions/3?width=mobile"
    ]


# -- sign-in -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "message"),
    [("de-DE,de;q=0.9", "Anmeldung fehlgeschlagen"), ("en-GB,en;q=0.8", "Sign-in failed")],
)
def test_a_wrong_sign_in_shows_the_form_again_with_a_neutral_message(
    settings: Settings, accept: str, message: str
) -> None:
    client = client_for(settings, **{"Accept-Language": accept})
    for name, password in (("anna", "wrong password here"), ("nobody", PASSWORD)):
        response = client.sign_in(name, password)
        assert response.status_code == 401
        assert message in response.text
        assert 'name="username"' in response.text and 'name="password"' in response.text
        assert not set_cookie_headers(response, "imk_admin")
    assert client.get("/admin").status_code == 303


def test_a_right_sign_in_sets_a_strict_http_only_secure_cookie(settings: Settings) -> None:
    client = client_for(settings)
    response = client.sign_in()
    assert response.status_code == 303 and response.headers["location"] == "/admin"
    [cookie] = set_cookie_headers(response, "imk_admin")
    flags = [part.strip().lower() for part in cookie.split(";")[1:]]
    assert {"httponly", "secure", "samesite=strict", "path=/admin"} <= set(flags)
    page = client.get("/admin")
    assert page.status_code == 200 and "anna" in page.text


def test_the_cookie_is_not_secure_when_public_url_is_http(
    make_settings: ConfigFactory, tmp_path: Path
) -> None:
    made = admin_settings(make_settings, tmp_path, public_url="http://127.0.0.1:8000")
    add_staff(made)
    response = client_for(made).sign_in()
    assert response.status_code == 303
    [cookie] = set_cookie_headers(response, "imk_admin")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert "secure" not in flags and {"httponly", "samesite=strict", "path=/admin"} <= flags


@pytest.mark.parametrize(
    ("wanted", "landed"),
    [
        ("/admin/editions/7?width=mobile", "/admin/editions/7?width=mobile"),
        ("https://evil.example/admin", "/admin"),
        ("//evil.example/admin", "/admin"),
        ("/\\evil.example", "/admin"),
        ("/adminx", "/admin"),
        ("/admin/../subscribe", "/admin"),
        ("/subscribe", "/admin"),
    ],
)
def test_sign_in_goes_on_only_to_admin_pages(settings: Settings, wanted: str, landed: str) -> None:
    response = client_for(settings).sign_in(next_path=wanted)
    assert response.status_code == 303
    assert response.headers["location"] == landed


def test_ten_failures_from_one_address_are_throttled(settings: Settings) -> None:
    client = client_for(settings)
    for _ in range(10):
        assert client.sign_in("anna", "not the password!").status_code == 401
    refused = client.sign_in()  # even the right password now
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    assert "Zu viele fehlgeschlagene Anmeldungen" in refused.text
    assert not set_cookie_headers(refused, "imk_admin")
    # another address is not affected
    other = AdminClient(client.app, client_ip="198.51.100.20")
    assert other.sign_in().status_code == 303


def test_sign_out_ends_the_session(settings: Settings) -> None:
    client = client_for(settings)
    client.sign_in()
    token = client.cookies["imk_admin"]
    response = client.post_form("/admin/logout", {})
    assert response.status_code == 303 and response.headers["location"] == "/admin/login"
    assert staff.session_for(settings, token, NOW) is None
    assert client.get("/admin").status_code == 303


# -- CSRF and Origin -----------------------------------------------------------------------------------


def test_a_post_without_or_with_a_wrong_csrf_token_is_refused_and_changes_nothing(settings: Settings) -> None:
    client = client_for(settings)
    client.sign_in()
    token = client.cookies["imk_admin"]
    for data in ({}, {"csrf_token": ""}, {"csrf_token": "forged-token"}):
        response = client.post("/admin/logout", data=data)
        assert response.status_code == 403
        assert "nichts geändert" in response.text
        response = client.post("/admin/language", data={**data, "language": "en"})
        assert response.status_code == 403
    assert staff.session_for(settings, token, NOW) is not None  # still signed in
    [user] = staff.list_users(settings)
    assert user.language == "de"
    assert client.get("/admin").status_code == 200


def test_another_sessions_token_does_not_pass(settings: Settings) -> None:
    add_staff(settings, "ben")
    ben = client_for(settings)
    ben.sign_in("ben")
    bens_token = ben.csrf()
    anna = client_for(settings)
    anna.sign_in()
    assert anna.post("/admin/language", data={"csrf_token": bens_token, "language": "en"}).status_code == 403


def test_the_sign_in_form_needs_its_csrf_cookie(settings: Settings) -> None:
    client = client_for(settings)
    token = client.csrf("/admin/login")
    fresh = AdminClient(client.app)  # a cross-site form: the token maybe, but not the cookie
    form = {"username": "anna", "password": PASSWORD, "csrf_token": token}
    assert fresh.post("/admin/login", data=form).status_code == 403
    assert client.post("/admin/login", data={**form, "csrf_token": "forged"}).status_code == 403
    assert client.post("/admin/login", data=form).status_code == 303


def test_a_post_from_another_site_is_refused(settings: Settings) -> None:
    client = client_for(settings)
    client.sign_in()
    token = client.csrf()
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        response = client.post(
            "/admin/language", data={"csrf_token": token, "language": "en"}, headers=headers
        )
        assert response.status_code == 403, headers
    assert staff.list_users(settings)[0].language == "de"
    same_site = client.post(
        "/admin/language", data={"csrf_token": token, "language": "en"}, headers={"Origin": PUBLIC_URL}
    )
    assert same_site.status_code == 303
    assert staff.list_users(settings)[0].language == "en"


# -- headers and language ------------------------------------------------------------------------------


def test_admin_pages_send_the_restrictive_csp(settings: Settings) -> None:
    client = client_for(settings)
    assert client.get("/admin/login").headers["content-security-policy"] == ADMIN_CSP
    client.sign_in()
    page = client.get("/admin")
    assert page.headers["content-security-policy"] == ADMIN_CSP
    assert "script-src" not in ADMIN_CSP and "default-src 'none'" in ADMIN_CSP
    assert "frame-ancestors 'none'" in ADMIN_CSP
    assert page.headers["x-frame-options"] == "DENY"
    assert "<script" not in page.text.lower()


def test_the_language_follows_accept_language_then_the_users_choice(settings: Settings) -> None:
    english_browser = client_for(settings, **{"Accept-Language": "en-US,en;q=0.9,de;q=0.5"})
    assert '<html lang="en"' in english_browser.get("/admin/login").text
    assert "Sign in" in english_browser.get("/admin/login").text
    german_browser = client_for(settings, **{"Accept-Language": "de"})
    assert "Anmelden" in german_browser.get("/admin/login").text

    english_browser.sign_in()  # anna chose German (stored): her choice wins over the browser
    page = english_browser.get("/admin")
    assert '<html lang="de"' in page.text and "Übersicht" in page.text
    response = english_browser.post_form("/admin/language", {"language": "en", "next": "/admin"})
    assert response.status_code == 303
    assert urlsplit(response.headers["location"]).path == "/admin"
    assert staff.list_users(settings)[0].language == "en"
    page = english_browser.get(response.headers["location"])
    assert '<html lang="en"' in page.text and "Dashboard" in page.text and "Language saved." in page.text
    # the choice is the user's, not the browser's: a German browser signed in as anna shows English
    german_browser.sign_in()
    assert '<html lang="en"' in german_browser.get("/admin").text


def test_a_user_who_never_chose_a_language_gets_the_browsers(settings: Settings) -> None:
    add_staff(settings, name="ben", email=None, language=None)
    english = client_for(settings, **{"Accept-Language": "en-GB,en;q=0.9"})
    english.sign_in("ben")
    assert '<html lang="en"' in english.get("/admin").text
    german = client_for(settings, **{"Accept-Language": "de-AT,de;q=0.9"})
    german.sign_in("ben")
    assert '<html lang="de"' in german.get("/admin").text


def test_a_refused_foreign_origin_says_where_to_open_the_app(settings: Settings) -> None:
    client = client_for(settings, **{"Accept-Language": "en"})
    response = client.post(
        "/admin/login", data={"username": "anna"}, headers={"Origin": "http://localhost:9"}
    )
    assert response.status_code == 403
    assert "Request refused" in response.text and f"{PUBLIC_URL}/admin" in response.text
    assert response.headers["content-security-policy"] == ADMIN_CSP
