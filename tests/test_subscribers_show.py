"""``subscribers show EMAIL``: status, language, lists, consent evidence and what was sent to the person,
after a real double opt-in and a real delivery (aiosmtpd), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine

from imk_outreach import cli
from imk_outreach.config import Settings
from imk_outreach.services import dispatch, subscriptions
from tests.conftest import ConfigFactory
from tests.support.smtpserver import SmtpTestServer
from tests.support.subscribers import mails_to, part, urls
from tests.test_dispatch import add_subscribers, approve_and_send, make

NOW = datetime(2026, 11, 24, 9, 37, tzinfo=UTC)  # 10:37 in Berlin
SIGNUP = NOW - timedelta(days=2)  # 2026-11-22 10:37 in Berlin
CONFIRMED = NOW - timedelta(days=1, hours=1)  # 2026-11-23 09:37
ANNA = "Anna@example.org"  # as stored: the domain lower-cased, the local part as given


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    with time_machine.travel(NOW, tick=True):
        yield


def _config(settings: Settings) -> list[str]:
    return ["--config", str(settings.config_path)]


def _signed_up_and_sent(make_settings: ConfigFactory, tmp_path: Path, server: SmtpTestServer) -> Settings:
    """Anna signs up on the web (double opt-in) for both lists and gets the digest with two others;
    person1 is refused for good (550 5.1.1: bounced)."""
    settings = make(make_settings, tmp_path, server, NOW)
    subscriptions.subscribe(
        settings, "Anna@Example.org", "Anna", "de", ["newsletter", "film"], "203.0.113.7", now=SIGNUP
    )
    assert dispatch.deliver(settings, clock=lambda: SIGNUP).sent == 1  # the queued confirmation mail
    [mail] = mails_to(server, ANNA)
    [link] = [u for u in urls(part(mail, "plain")) if u.startswith("https://cluster.example/confirm/")]
    subscriptions.confirm(settings, link.rsplit("/", 1)[1], CONFIRMED)
    people = add_subscribers(settings, 2, now=NOW)
    server.respond(people[1].email, f"550 5.1.1 <{people[1].email}>: user unknown")
    approve_and_send(settings, NOW)
    report = dispatch.deliver(settings)
    assert (report.sent, report.failed) == (2, 1)
    return settings


def test_show_status_lists_consent_and_what_was_sent(
    make_settings: ConfigFactory,
    tmp_path: Path,
    smtp_server: SmtpTestServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = _signed_up_and_sent(make_settings, tmp_path, smtp_server)
    assert cli.main(["subscribers", "show", "anna@EXAMPLE.org", *_config(settings)]) == 0
    out = capsys.readouterr().out
    fields = dict(re.findall(r"^  (\S[^:]*):\s+(.*)$", out, re.M))
    assert out.startswith(f"{ANNA} (Anna)")
    assert fields["status"] == "confirmed"
    assert fields["language"] == "de"
    assert fields["lists"] == "film (Film), newsletter (Newsletter)"
    assert fields["signed up"] == "2026-11-22 10:37 via web:/subscribe"
    assert fields["confirmed"] == "2026-11-23 09:37"
    assert fields["consent text"] == settings.consent_version
    assert re.fullmatch(r"[0-9a-f]{64}", fields["IP hash"]) and "203.0.113.7" not in out  # never the IP
    [sent] = [line for line in out.splitlines() if line.strip().startswith("edition ")]
    assert re.fullmatch(r"    edition \d+ \(digest, de\): sent, 2026-11-24 10:37: 250 .*", sent)


def test_show_json_and_a_bounced_person(
    make_settings: ConfigFactory,
    tmp_path: Path,
    smtp_server: SmtpTestServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = _signed_up_and_sent(make_settings, tmp_path, smtp_server)
    assert cli.main(["subscribers", "show", ANNA, "--json", *_config(settings)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["email"], data["status"], data["language"]) == (ANNA, "confirmed", "de")
    assert data["lists"] == ["film", "newsletter"]
    consent = data["consent"]
    assert datetime.fromisoformat(consent["signup_at"]) == SIGNUP
    assert datetime.fromisoformat(consent["confirmed_at"]) == CONFIRMED
    assert consent["source"] == "web:/subscribe" and consent["consent_version"] == settings.consent_version
    assert re.fullmatch(r"[0-9a-f]{64}", consent["ip_hash"])
    [delivery] = data["deliveries"]
    assert (delivery["campaign"], delivery["state"], delivery["language"]) == ("digest", "sent", "de")
    assert delivery["sent_at"] is not None and delivery["reply"].startswith("250 ")

    assert cli.main(["subscribers", "show", "person1@example.org", *_config(settings)]) == 0
    out = capsys.readouterr().out
    assert "status:         bounced (permanent delivery failure (5.1.x))" in out
    assert "signed up:      not recorded" in out  # stored by a test helper, without evidence
    assert re.search(r"edition \d+ \(digest, de\): failed, updated 2026-11-24 10:37: 550 5\.1\.1 ", out), out


def test_nothing_sent_yet_and_unknown_address(
    make_settings: ConfigFactory,
    tmp_path: Path,
    smtp_server: SmtpTestServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make(make_settings, tmp_path, smtp_server, NOW)
    subscriptions.add(settings, "new@example.org", "", "en", ["film"], "confirmed", now=NOW)
    assert cli.main(["subscribers", "show", "new@example.org", *_config(settings)]) == 0
    out = capsys.readouterr().out
    assert "lists:          film (Film)" in out and "via cli" in out
    assert "IP hash:        - (none stored)" in out
    assert "nothing sent to this address yet" in out
    assert cli.main(["subscribers", "show", "nobody@example.org", *_config(settings)]) == 1
    assert "no subscriber with the address 'nobody@example.org'" in capsys.readouterr().err
