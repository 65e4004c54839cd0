"""HTTP hygiene of the public web app: security headers on every answer (404, 405, 422, 413, 500
included), HEAD on every GET page, the neutral HTML page instead of JSON, a trusted-host check from
``public_url`` (a spoofed Host never reaches a Location), cross-site sign-up POSTs refused (RFC 8058
one-click unsubscribe still works), and request bodies capped before any work, tried with a 50 MB body
against a real ``imk-outreach serve`` on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import Subscriber
from imk_outreach.services import subscriptions, tokens
from imk_outreach.services.database import engine_for
from imk_outreach.web.app import create_app
from tests.support.smtpserver import SmtpTestServer, free_port
from tests.support.subscribers import PUBLIC_URL, WebClient, subscriber_settings

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
FORM = {"email": "anna@example.org", "name": "Anna", "language": "en", "lists": ["newsletter"]}
MB = 1024 * 1024


@pytest.fixture
def settings(make_settings: Any, smtp_server: SmtpTestServer) -> Settings:
    return subscriber_settings(make_settings, smtp_server)


@pytest.fixture
def client(settings: Settings) -> WebClient:
    return WebClient(create_app(settings, clock=lambda: NOW))


def _find(settings: Settings, email: str) -> Subscriber | None:
    with engine_for(settings).connect() as conn:
        return store.find_subscriber(conn, email)


def _assert_security_headers(response: httpx.Response) -> None:
    headers = response.headers
    where = f"{response.request.method} {response.request.url.path} -> {response.status_code}"
    assert headers.get("x-content-type-options") == "nosniff", where
    assert headers.get("x-frame-options") == "DENY", where
    assert headers.get("referrer-policy") in ("same-origin", "strict-origin", "no-referrer"), where
    policy = headers.get("content-security-policy", "")
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy, where
    assert "camera=()" in headers.get("permissions-policy", ""), where


def _is_neutral_page(response: httpx.Response, title: str) -> bool:
    return response.headers.get("content-type", "").startswith("text/html") and title in response.text


# -- headers on every answer -------------------------------------------------------------------------


def test_every_answer_carries_the_security_headers_errors_included(
    settings: Settings, client: WebClient
) -> None:
    answers = [
        client.get("/subscribe"),
        client.get("/no-such-page"),
        client.request("PUT", "/subscribe"),
        client.post("/subscribe", files={"email": ("a.txt", b"x")}),
        client.get("/", headers={"Host": "evil.example"}),
        client.post("/subscribe", data=FORM, headers={"Origin": "https://evil.example"}),
        client.post("/confirm/garbage", content=b"x" * MB),
        client.get("/media/not-a-picture.jpg"),
        client.get("/healthz"),
    ]

    assert [a.status_code for a in answers] == [200, 404, 405, 422, 400, 403, 413, 404, 503]
    for answer in answers:
        _assert_security_headers(answer)


def test_a_500_is_the_neutral_page_with_the_headers_and_no_traceback(settings: Settings) -> None:
    app = create_app(settings)

    def broken() -> None:
        raise RuntimeError("secret detail of the failure")

    app.add_api_route("/broken", broken, methods=["GET"])

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as http:
            return await http.get("/broken", headers={"Accept-Language": "de"})

    response = asyncio.run(get())

    assert response.status_code == 500
    assert _is_neutral_page(response, "Etwas ist schiefgegangen")
    assert "secret detail" not in response.text and "Traceback" not in response.text
    _assert_security_headers(response)


# -- HEAD, 404, 405, 422 -----------------------------------------------------------------------------


def test_head_is_answered_on_every_get_page_like_get_without_a_body(
    settings: Settings, client: WebClient
) -> None:
    secret = tokens.secret_key(settings)
    ben = subscriptions.add(settings, "ben@example.org", now=NOW).subscriber
    links = subscriptions.links_for(settings, ben)
    paths = [
        "/subscribe",
        "/",
        "/healthz",
        tokens.confirm_url(settings, secret, ben, NOW),
        links.preferences_url,
        links.unsubscribe_url,
        "/confirm/garbage",
    ]
    for path in (p.removeprefix(PUBLIC_URL) for p in paths):
        get = client.get(path)
        head = client.request("HEAD", path)

        assert head.status_code == get.status_code != 405, path
        assert head.headers.get("content-type") == get.headers.get("content-type"), path
        assert head.content == b"", path


def test_unknown_routes_are_the_neutral_404_page_in_the_visitors_language(client: WebClient) -> None:
    for path in ("/no-such-page", "/wp-login.php", "/subscribe/", "/confirm", "/confirm/a/b"):
        english = client.get(path, headers={"Accept-Language": "en"})
        german = client.get(path, headers={"Accept-Language": "de-DE,de;q=0.9"})

        assert english.status_code == german.status_code == 404, path
        assert _is_neutral_page(english, "This link is not valid"), path
        assert _is_neutral_page(german, "Dieser Link ist nicht gültig"), path
        assert "location" not in english.headers and "detail" not in english.text


def test_a_wrong_method_and_a_malformed_form_get_the_neutral_page_not_json(client: WebClient) -> None:
    wrong = client.request("DELETE", "/subscribe?lang=en")
    malformed = client.post("/subscribe?lang=de", files={"email": ("a.txt", b"x")})

    assert wrong.status_code == 405 and set(wrong.headers["allow"].replace(" ", "").split(",")) >= {
        "GET",
        "POST",
    }
    assert _is_neutral_page(wrong, "This request cannot be processed")
    assert malformed.status_code == 422
    assert _is_neutral_page(malformed, "Diese Anfrage können wir nicht bearbeiten")
    assert "a.txt" not in malformed.text and "detail" not in malformed.text  # nothing echoed back


# -- the trusted host ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "news.example.org.evil.example",
        "news.example.org:8443",
        "evil.example:443",
        "203.0.113.9",
    ],
)
def test_a_foreign_host_is_400_and_never_reaches_a_location(client: WebClient, host: str) -> None:
    for path in ("/", "/subscribe", "/subscribe/"):
        response = client.get(path, headers={"Host": host, "Accept-Language": "en"})

        assert response.status_code == 400, (host, path)
        assert "location" not in response.headers and host not in response.text
        assert _is_neutral_page(response, "This request cannot be processed")


@pytest.mark.parametrize(
    "host",
    ["news.example.org", "NEWS.Example.org:443", "127.0.0.1:8000", "localhost", "[::1]:8000", "web:8000"],
)
def test_redirects_come_from_public_url_whatever_host_is_allowed(client: WebClient, host: str) -> None:
    response = client.get("/?lang=de", headers={"Host": host})

    assert response.status_code in (302, 303, 307)
    assert response.headers["location"] == f"{PUBLIC_URL}/subscribe?lang=de"
    assert client.get("/subscribe", headers={"Host": host}).status_code == 200


# -- cross-site posts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "http://news.example.org"},  # the same host without TLS is another origin
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://www.example.org", "Sec-Fetch-Site": "same-site"},
    ],
)
def test_a_cross_site_sign_up_is_403_and_stores_and_sends_nothing(
    settings: Settings, client: WebClient, smtp_server: SmtpTestServer, headers: dict[str, str]
) -> None:
    response = client.post("/subscribe?lang=en", data=FORM, headers=headers)

    assert response.status_code == 403
    assert _is_neutral_page(response, "This request cannot be processed")
    _assert_security_headers(response)
    assert _find(settings, "anna@example.org") is None and smtp_server.messages == []


def test_the_own_page_curl_and_one_click_unsubscribe_still_post(
    settings: Settings, client: WebClient
) -> None:
    own = {"Origin": PUBLIC_URL, "Sec-Fetch-Site": "same-origin"}
    page = client.get("/subscribe")
    assert client.post("/subscribe", data=FORM, headers=own).status_code == 200
    assert client.post("/subscribe", data={**FORM, "email": "carl@example.org"}).status_code == 200  # curl
    for address in ("anna@example.org", "carl@example.org"):
        signed_up = _find(settings, address)
        assert signed_up is not None and signed_up.status == "pending", address

    ben = subscriptions.add(settings, "ben@example.org", now=NOW).subscriber
    link = subscriptions.links_for(settings, ben).unsubscribe_url.removeprefix(PUBLIC_URL)
    webmail = {"Origin": "https://webmail.example.net", "Sec-Fetch-Site": "cross-site"}
    one_click = client.post(link, content=b"List-Unsubscribe=One-Click", headers=webmail)
    assert one_click.status_code == 200 and one_click.text == "Unsubscribed.\n"
    unsubscribed = _find(settings, "ben@example.org")
    assert unsubscribed is not None and unsubscribed.status == "unsubscribed"
    # "no-referrer" would make browsers send "Origin: null" with the page's own form, which is refused
    assert page.headers["referrer-policy"] != "no-referrer"
    assert 'name="referrer" content="no-referrer"' not in page.text


# -- request bodies are capped -----------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_before_the_page_runs(settings: Settings, client: WebClient) -> None:
    response = client.post("/subscribe?lang=en", data={**FORM, "name": "x" * MB})

    assert response.status_code == 413
    assert _is_neutral_page(response, "This request cannot be processed")
    assert response.headers.get("connection") == "close"
    assert _find(settings, "anna@example.org") is None
    assert client.post("/subscribe?lang=en", data={**FORM, "name": "Anna " * 30}).status_code == 200


def test_the_limit_is_counted_in_bytes_of_the_body(client: WebClient) -> None:
    from imk_outreach.web.hygiene import MAX_BODY

    assert 16 * 1024 <= MAX_BODY <= MB  # a form of a few fields fits many times; a flood does not
    prefix = b"email=anna%40example.org&lists=newsletter&name="
    at_limit = prefix + b"x" * (MAX_BODY - len(prefix))
    headers = {"content-type": "application/x-www-form-urlencoded"}

    assert client.post("/subscribe?lang=en", content=at_limit, headers=headers).status_code == 400  # name
    assert client.post("/subscribe?lang=en", content=at_limit + b"x", headers=headers).status_code == 413


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """``imk-outreach serve`` on 127.0.0.1 (a process of its own, so its memory can be read)."""
    port = free_port()
    command = [sys.executable, "-m", "imk_outreach", "serve", "--config", str(settings.config_path)]
    process = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/subscribe", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
        yield port, process
    finally:
        process.terminate()
        process.wait(timeout=10)


def _peak_memory_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc")


def _post_raw(port: int, head: bytes, chunks: Iterable[bytes]) -> tuple[bytes, int]:
    """Send ``head`` and then ``chunks`` over one connection while another thread reads the answer.
    Returns the answer and how many body bytes were sent before the server closed the connection."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    answer = bytearray()
    closed = threading.Event()

    def read() -> None:
        try:
            while data := sock.recv(65536):
                answer.extend(data)
        except OSError:
            pass
        closed.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    sent = 0
    try:
        sock.sendall(head)
        for chunk in chunks:
            if closed.is_set():
                break
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:  # broken pipe or reset: the server stopped reading and closed
        pass
    closed.wait(30)
    sock.close()
    return bytes(answer), sent


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_50_mb_post_is_refused_at_once_without_being_read(
    served: tuple[int, subprocess.Popen[bytes]], framing: str
) -> None:
    port, process = served
    total = 50 * MB
    piece = b"name=" + b"x" * (64 * 1024 - 5)
    count = total // len(piece)
    if framing == "content-length":  # to an invalid link: nothing there reads a body
        head = (
            f"POST /confirm/not-a-token HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {count * len(piece)}\r\n\r\n"
        ).encode()
        chunks: Iterable[bytes] = (piece for _ in range(count))
    else:  # no length announced: the server has to count
        head = (
            f"POST /subscribe HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode()
        chunks = (b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(count))
    before = _peak_memory_kib(process.pid)

    answer, sent = _post_raw(port, head, chunks)

    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"\r\nx-frame-options: deny\r\n" in rest.lower()
    print(f"measured: {framing}, {sent / MB:.1f} MB of 50 sent before the server closed")
    assert sent < total // 2, f"the server read {sent / MB:.1f} MB before it closed"
    assert _peak_memory_kib(process.pid) - before < 10 * 1024  # no MB of the body were kept
    assert httpx.get(f"http://127.0.0.1:{port}/subscribe", timeout=5).status_code == 200
