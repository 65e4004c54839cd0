"""Helpers for the subscriber tests: a config with two lists and the test SMTP server, and readers for
the confirmation mails the server received."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from imk_outreach.config import Settings
from tests.support.smtpserver import Received, SmtpTestServer

PUBLIC_URL = "https://news.example.org"
LISTS = {
    "newsletter": {"de": "Newsletter", "en": "Newsletter"},
    "film": {"de": "Film-Digest", "en": "Film digest"},
}
_URL = re.compile(r"https?://[^\s<>\"]+")


def subscriber_settings(make_settings: Any, smtp: SmtpTestServer | None = None, **extra: Any) -> Settings:
    """Settings with lists ``newsletter`` and ``film`` whose mail goes to ``smtp`` (None: a port where
    nothing listens, for tests that must not send)."""
    data: dict[str, Any] = {
        "lists": LISTS,
        "public_url": PUBLIC_URL,
        "sender": {"name": "Cluster IMK", "email": "newsletter@example.org"},
        "smtp": {"host": "127.0.0.1", "port": smtp.port if smtp else 9, "timeout": 5},
        "consent_version": "2026-11",
    }
    data.update(extra)
    settings: Settings = make_settings([], **data)
    return settings


def parse(received: Received) -> EmailMessage:
    message = email.message_from_bytes(received.data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def part(message: EmailMessage, subtype: str) -> str:
    body = message.get_body(preferencelist=(subtype,))
    assert body is not None, f"no text/{subtype} part"
    content = body.get_content()
    assert isinstance(content, str)
    return content


def urls(text: str) -> set[str]:
    return set(_URL.findall(text))


def confirm_url(message: EmailMessage) -> str:
    found = [u for u in urls(part(message, "plain")) if u.startswith(f"{PUBLIC_URL}/confirm/")]
    assert len(found) == 1, found
    return found[0]


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def mails_to(server: SmtpTestServer, address: str) -> list[EmailMessage]:
    return [parse(m) for m in server.messages if address in m.rcpt_tos]


class WebClient:
    """The web app through httpx in process (``ASGITransport``), driven synchronously: one request per
    event loop, as a browser would send them one after another. ``client_ip`` is the peer address the
    app sees."""

    def __init__(self, app: Any, client_ip: str = "203.0.113.7") -> None:
        self.app = app
        self.client_ip = client_ip

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=(self.client_ip, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                return await client.request(method, url, **kwargs)

        return asyncio.run(send())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


def run_cli(settings: Settings, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``imk-outreach ARGS --config <settings'>``: the exit code and what it printed."""
    from imk_outreach import cli

    code = cli.main([*args, "--config", str(settings.config_path)])
    out, err = capsys.readouterr()
    return code, out, err
