"""The access log of ``imk-outreach serve`` (uvicorn's) carries no secrets: token paths are cut to
their page (``/confirm/…``) and no client address is written, neither the peer's nor one taken from
``X-Forwarded-For``. Read from the output of a real server process on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from imk_outreach.config import Settings
from imk_outreach.services import subscriptions
from tests.support.smtpserver import free_port
from tests.support.subscribers import PUBLIC_URL, subscriber_settings

FORWARDED_FOR = "198.51.100.23"


@pytest.fixture
def settings(make_settings: Any) -> Settings:
    return subscriber_settings(make_settings)


def _serve_and_log(settings: Settings, paths: list[tuple[str, str]]) -> tuple[list[int], str]:
    """Start ``serve``, send the requests (method, path), stop it; the statuses and all it printed."""
    port = free_port()
    command = [sys.executable, "-m", "imk_outreach", "serve", "--config", str(settings.config_path)]
    process = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    statuses: list[int] = []
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
        headers = {"X-Forwarded-For": FORWARDED_FOR}
        for method, path in paths:
            statuses.append(httpx.request(method, base + path, headers=headers, timeout=10).status_code)
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0].decode()
    return statuses, output


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_access_log_shows_neither_tokens_nor_client_addresses(settings: Settings) -> None:
    ben = subscriptions.add(settings, "ben@example.org", "Ben", "en", ["newsletter"]).subscriber
    links = subscriptions.links_for(settings, ben)
    unsubscribe = links.unsubscribe_url.removeprefix(PUBLIC_URL)
    preferences = links.preferences_url.removeprefix(PUBLIC_URL)
    secrets = [unsubscribe.rsplit("/", 1)[1], preferences.rsplit("/", 1)[1], "not-a-valid-token-4711"]
    requests = [
        ("GET", f"{preferences}?lang=de"),
        ("GET", unsubscribe),
        ("POST", "/confirm/not-a-valid-token-4711"),
        ("GET", "/subscribe?lang=en&email=ben%40example.org"),
    ]

    statuses, output = _serve_and_log(settings, requests)

    assert statuses == [200, 200, 404, 200]
    access = [line for line in output.splitlines() if '"GET ' in line or '"POST ' in line]
    assert len(access) == len(requests) + 1, output  # and the /healthz that waited for the start
    assert any('"GET /preferences/…?… HTTP/1.1" 200' in line for line in access), access
    assert any('"GET /unsubscribe/… HTTP/1.1" 200' in line for line in access), access
    assert any('"POST /confirm/… HTTP/1.1" 404' in line for line in access), access
    assert any('"GET /subscribe?… HTTP/1.1" 200' in line for line in access), access
    for line in access:
        assert "127.0.0.1" not in line and FORWARDED_FOR not in line, line
        assert "ben%40example.org" not in line, line
    for secret in secrets:
        assert secret not in output
