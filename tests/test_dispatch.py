"""Enqueue and deliver with a real SMTP server (aiosmtpd) on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import time_machine

from imk_outreach import cli
from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import Subscriber
from imk_outreach.services import compose, dispatch, tokens
from imk_outreach.services.database import engine_for
from tests.conftest import ConfigFactory
from tests.support.items import days_before, store_items
from tests.support.smtpserver import SmtpTestServer

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
CAMPAIGN = """\
name: digest
list: newsletter
languages: [de, en]
min_items: 1
subject: {de: "Digest {{ edition.date|month }}", en: "Digest {{ edition.date|month }}"}
intro: {de: "Hallo.", en: "Hello."}
sections:
  - {id: tech, heading: {de: Technik, en: Tech}, select: {tags: [iot], since: 30d}}
"""


@pytest.fixture(autouse=True)
def _clock_from_now() -> Iterator[None]:
    """The rows here are queued at NOW, and deliver and the CLI read the clock themselves: the clock runs
    from NOW (ticking, for SMTP timeouts and leases), so nothing is due in the future on any day."""
    with time_machine.travel(NOW, tick=True):
        yield


def make(
    settings_factory: ConfigFactory,
    tmp_path: Path,
    server: SmtpTestServer,
    now: datetime = NOW,
    **smtp: Any,
) -> Settings:
    folder = tmp_path / "campaigns"
    folder.mkdir(exist_ok=True)
    (folder / "digest.yaml").write_text(CAMPAIGN, "utf-8")
    smtp_settings = {
        "host": server.host,
        "port": server.port,
        "connections": 2,
        "batch_size": 10,
        "retry": {"base_delay": "0s", "max_delay": "0s", "max_attempts": 3},
        **smtp,
    }
    settings = settings_factory(
        [{"name": "manual", "type": "manual", "url": "manual"}],
        smtp=smtp_settings,
        lists={"newsletter": {"de": "Newsletter", "en": "Newsletter"}, "film": {"de": "Film", "en": "Film"}},
        sender={"name": "Cluster IMK", "email": "news@cluster.example"},
        public_url="https://cluster.example",
    )
    store_items(settings, days_before(now, 3), now)
    return settings


def add_subscribers(
    settings: Settings, count: int, overrides: dict[int, dict[str, Any]] | None = None, now: datetime = NOW
) -> list[Subscriber]:
    overrides = overrides or {}
    added = []
    with engine_for(settings).begin() as conn:
        for n in range(count):
            values: dict[str, Any] = {
                "email": f"person{n}@example.org",
                "name": f"Person {n}",
                "language": "de" if n % 2 else "en",
                "lists": ("newsletter",),
                "status": "confirmed",
            }
            values.update(overrides.get(n, {}))
            added.append(store.save_subscriber(conn, Subscriber(**values), now))
    return added


def approve_and_send(settings: Settings, now: datetime = NOW) -> dispatch.SendReport:
    draft = compose.compose(settings, "digest", now).edition
    assert draft is not None
    compose.approve(settings, draft.id, by="test", now=now)
    return dispatch.send(settings, "digest", now)


def rows(settings: Settings) -> dict[str, int]:
    [status] = dispatch.status(settings)
    return {k: v for k, v in status.counts.items() if v}


def parsed(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def test_send_needs_approval_and_queues_confirmed_list_members_once(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server)
    add_subscribers(
        settings, 6, {3: {"status": "pending"}, 4: {"status": "unsubscribed"}, 5: {"lists": ("film",)}}
    )
    with pytest.raises(compose.EditionError, match="waits for approval"):
        dispatch.send(settings, "digest", NOW)
    report = approve_and_send(settings)
    assert report.queued == 3
    with engine_for(settings).begin() as conn:  # a second enqueue of the same edition adds nothing
        assert store.enqueue_edition(conn, report.edition.id, "newsletter", ["de", "en"], "email", NOW) == 0
    with pytest.raises(compose.EditionError, match="nothing to send"):
        dispatch.send(settings, "digest", NOW)  # its items went out with the queued edition
    assert rows(settings) == {"queued": 3}
    assert smtp_server.messages == []


def test_deliver_sends_each_recipient_one_complete_message(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server)
    people = add_subscribers(settings, 5)
    approve_and_send(settings)
    report = dispatch.deliver(settings, until_empty=True)
    assert (report.sent, report.failed, report.retry) == (5, 0, 0)
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == sorted(p.email for p in people)
    assert rows(settings) == {"sent": 5}
    assert compose.list_editions(settings)[0].state == "sent"
    secret = tokens.secret_key(settings)
    for received in smtp_server.messages:
        message = parsed(received.data)
        person = next(p for p in people if p.email == received.rcpt_tos[0])
        assert message["Content-Language"] == person.language
        assert message["To"].addresses[0].username + "@example.org" == person.email
        assert message["From"].addresses[0].addr_spec == "news@cluster.example"
        assert message["Message-ID"].startswith("<imk.") and message["Date"]
        assert "newsletter.cluster.example" in message["List-Id"]
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url = message["List-Unsubscribe"].strip("<>")
        assert url.startswith("https://cluster.example/unsubscribe/")
        claim = tokens.read_token(secret, "unsubscribe", urlsplit(url).path.rsplit("/", 1)[1])
        assert claim is not None
        assert message.get_content_type() == "multipart/alternative"
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert person.name in text and url in text and url.replace("&", "&amp;") in html
        assert f'lang="{person.language}"' in html and "IMKPH_" not in html + text
    with engine_for(settings).connect() as conn:  # the Message-ID is the one stored on the row
        ids = {m for m in _message_ids(conn)}
    assert ids == {parsed(m.data)["Message-ID"] for m in smtp_server.messages}


def _message_ids(conn: Any) -> list[str]:
    from sqlalchemy import select

    from imk_outreach.db.tables import outbox

    return list(conn.execute(select(outbox.c.message_id)).scalars())


def test_unsubscribe_after_queueing_is_honoured(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server)
    people = add_subscribers(settings, 3)
    approve_and_send(settings)
    with engine_for(settings).begin() as conn:
        from dataclasses import replace

        store.save_subscriber(conn, replace(people[0], status="unsubscribed"), NOW)
        store.save_subscriber(conn, replace(people[1], lists=("film",)), NOW)
    report = dispatch.deliver(settings, until_empty=True)
    assert (report.sent, report.cancelled) == (1, 2)
    assert [m.rcpt_tos[0] for m in smtp_server.messages] == [people[2].email]
    assert rows(settings) == {"sent": 1, "cancelled": 2}


def test_temporary_and_permanent_failures(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server)
    people = add_subscribers(settings, 6)
    smtp_server.respond(people[0].email, "451 4.3.0 try again later", times=2)
    smtp_server.respond(people[1].email, "550 5.1.1 no such user")
    smtp_server.respond(people[2].email, "554 5.7.1 rejected by policy")
    smtp_server.respond(people[3].email, "452 4.2.2 mailbox full")  # never gets better
    approve_and_send(settings)
    report = dispatch.deliver(settings, until_empty=True)
    assert report.sent == 3 and report.failed == 3
    delivered = [m.rcpt_tos[0] for m in smtp_server.messages]
    assert sorted(delivered) == sorted([people[0].email, people[4].email, people[5].email])
    assert len(delivered) == len(set(delivered))
    refused = [address for address, _ in smtp_server.refused]
    assert refused.count(people[1].email) == 1 and refused.count(people[2].email) == 1  # never retried
    assert refused.count(people[3].email) == 3  # max_attempts
    with engine_for(settings).connect() as conn:
        states = {s.email: s.status for s in store.iter_subscribers(conn)}
    assert states[people[1].email] == "bounced" and states[people[2].email] == "confirmed"
    assert rows(settings) == {"sent": 3, "failed": 3}
    [status] = dispatch.status(settings)  # the newest error still on a row, shown by status
    assert status.last_error is not None and status.last_error_at is not None
    assert any(code in status.last_error for code in ("550", "554", "452"))


def test_connection_dropped_after_data_is_retried_with_the_same_message_id(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server)
    add_subscribers(settings, 4)
    smtp_server.drop_after_data(2)
    approve_and_send(settings)
    report = dispatch.deliver(settings, until_empty=True)
    assert report.sent == 4 and report.retry == 2
    assert len(smtp_server.dropped) == 2
    accepted = {parsed(m.data)["Message-ID"]: m.rcpt_tos[0] for m in smtp_server.messages}
    for lost in smtp_server.dropped:  # the copy the server may have kept has the id of the re-sent one
        assert accepted[parsed(lost.data)["Message-ID"]] == lost.rcpt_tos[0]


def test_server_away_for_a_while(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server, retry={"base_delay": "0s", "max_attempts": 5})
    add_subscribers(settings, 3)
    approve_and_send(settings)
    smtp_server.stop()
    away = dispatch.deliver(settings)  # one pass: everything goes to retry
    assert (away.sent, away.retry) == (0, 3)
    assert rows(settings) == {"retry": 3}
    [waiting] = dispatch.status(settings)
    assert waiting.last_error is not None and str(smtp_server.port) in waiting.last_error
    smtp_server.start()
    back = dispatch.deliver(settings, until_empty=True)
    assert back.sent == 3 and len(smtp_server.messages) == 3


def test_header_injection_through_a_name_fails_that_row_only(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server)
    add_subscribers(settings, 3, {0: {"name": "Eve\r\nBcc: victim@example.net"}})
    approve_and_send(settings)
    report = dispatch.deliver(settings, until_empty=True)
    assert (report.sent, report.failed) == (2, 1)
    assert all(b"victim@" not in m.data for m in smtp_server.messages)
    assert all("victim" not in r for m in smtp_server.messages for r in m.rcpt_tos)


def test_cli_send_deliver_status(
    make_settings: ConfigFactory,
    tmp_path: Path,
    smtp_server: SmtpTestServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make(make_settings, tmp_path, smtp_server)
    add_subscribers(settings, 2)
    config = ["--config", str(settings.config_path)]
    assert cli.main(["send", "digest", "--test-to", "staff@cluster.example", *config]) == 0
    assert len(smtp_server.messages) == 2  # one per language, outside the outbox
    assert all(parsed(m.data)["Subject"].startswith("[Test] ") for m in smtp_server.messages)
    assert cli.main(["send", "digest", *config]) == 1
    assert "waits for approval" in capsys.readouterr().err
    edition = compose.list_editions(settings)[0]
    assert cli.main(["approve", str(edition.id), *config]) == 0
    assert cli.main(["send", "digest", "--yes", *config]) == 0
    assert "2 messages queued" in capsys.readouterr().out
    assert cli.main(["deliver", "--until-empty", *config]) == 0
    assert "sent 2" in capsys.readouterr().out
    assert cli.main(["status", "--json", *config]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    [row] = data["editions"]
    assert row["state"] == "sent" and row["counts"]["sent"] == 2 and row["counts"]["failed"] == 0
    assert set(row["counts"]) >= {"queued", "sending", "retry", "sent", "failed", "unknown"}
    assert "sources" in data and "next_runs" in data


def test_two_sends_at_once_queue_each_recipient_once(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    import threading

    settings = make(make_settings, tmp_path, smtp_server)
    add_subscribers(settings, 40)
    draft = compose.compose(settings, "digest", NOW).edition
    assert draft is not None
    compose.approve(settings, draft.id, by="test", now=NOW)
    gate = threading.Barrier(2)
    reports: list[Any] = []

    def send() -> None:
        gate.wait()
        try:
            reports.append(dispatch.send(settings, "digest", NOW))
        except compose.EditionError as exc:  # the other send queued the edition before this one composed
            reports.append(exc)

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(reports) == 2
    sent = [r for r in reports if isinstance(r, dispatch.SendReport)]
    assert sum(r.queued for r in sent) == 40
    # The loser either composed after the winner queued (nothing left to send), or saw the approved
    # edition and then found its items sent meanwhile (below min_items): either way it queued nothing.
    refusals = [str(r) for r in reports if not isinstance(r, dispatch.SendReport)]
    assert all("nothing to send" in r or "min_items" in r for r in refusals), refusals
    assert rows(settings) == {"queued": 40}


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_deliver_refuses_a_bad_process_count(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["deliver", "--processes", value])
    assert info.value.code == 2
    assert "--processes" in capsys.readouterr().err
