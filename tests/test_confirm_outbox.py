"""The confirmation mail goes through the outbox: a sign-up (web, ``subscribers add`` or ``import`` with
``--status pending``) queues a row without an edition (channel ``confirm``) and the delivery loop of
``deliver``, ``worker`` and ``run`` sends it, built at send time, with the usual retries, or cancels it
when the person confirmed, left or was erased meanwhile. Views of editions ignore these rows. On SQLite
and PostgreSQL, with a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine

from imk_outreach import cli
from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import Subscriber
from imk_outreach.services import delivery_report, dispatch, records, subscriptions, tokens
from imk_outreach.services.database import engine_for
from tests.conftest import ConfigFactory
from tests.support.signups import confirm_rows, signup_settings, states
from tests.support.smtpserver import SmtpTestServer
from tests.support.subscribers import confirm_url, mails_to, part, token_of
from tests.test_dispatch import add_subscribers, approve_and_send, make

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
IP = "203.0.113.7"


@pytest.fixture(autouse=True)
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(NOW, tick=True) as traveller:
        yield traveller


@pytest.fixture
def settings(make_settings: Any, smtp_server: SmtpTestServer) -> Settings:
    return signup_settings(make_settings, smtp_server)


def _sign_up(settings: Settings, email: str = "anna@example.org", language: str = "de", **kw: Any) -> str:
    lists = kw.pop("lists", ["newsletter"])
    return subscriptions.subscribe(settings, email, "Anna", language, lists, IP, **kw)


def _find(settings: Settings, email: str) -> Subscriber:
    with engine_for(settings).connect() as conn:
        found = store.find_subscriber(conn, email)
    assert found is not None, email
    return found


def test_a_sign_up_queues_one_row_and_deliver_sends_the_mail_built_at_send_time(
    settings: Settings, smtp_server: SmtpTestServer
) -> None:
    assert _sign_up(settings) == "queued"
    anna = _find(settings, "anna@example.org")
    [row] = confirm_rows(settings)
    assert (row.subscriber_id, row.language, row.state, row.attempts) == (anna.id, "de", "queued", 0)
    assert smtp_server.sessions() == []
    with engine_for(settings).begin() as conn:  # changed before it goes out: the mail says what is true then
        store.save_subscriber(conn, replace(anna, language="en", lists=("film", "newsletter")), NOW)

    report = dispatch.deliver(settings)

    assert (report.sent, report.retry, report.failed) == (1, 0, 0)
    [mail] = mails_to(smtp_server, "anna@example.org")
    assert mail["Content-Language"] == "en" and "Film digest" in part(mail, "plain")
    [row] = confirm_rows(settings)
    assert row.state == "sent" and row.message_id == mail["Message-ID"]
    assert row.reply is not None and row.reply.startswith("250")
    assert subscriptions.confirm(settings, token_of(confirm_url(mail))).status == "confirmed"


@pytest.mark.parametrize("change", ["confirm", "remove", "erase"])
def test_a_mail_no_longer_due_is_cancelled_unsent(
    settings: Settings, smtp_server: SmtpTestServer, change: str
) -> None:
    _sign_up(settings)
    anna = _find(settings, "anna@example.org")
    if change == "confirm":  # e.g. with the link of an earlier mail
        subscriptions.confirm(settings, tokens.make_token(tokens.secret_key(settings), "confirm", anna, NOW))
    elif change == "remove":
        subscriptions.remove(settings, "anna@example.org")
    else:
        subscriptions.erase(settings, "anna@example.org")

    report = dispatch.deliver(settings)

    assert report.sent == 0 and smtp_server.messages == []
    rows = confirm_rows(settings)
    assert all(row.state == "cancelled" for row in rows)
    if change != "erase":  # an erasure may take the row with it; otherwise it says why
        expected = {"confirm": "confirmed", "remove": "unsubscribed"}[change]
        assert [row.error for row in rows] == [f"recipient {expected} before sending"]
        assert report.cancelled == 1


def test_a_temporary_refusal_is_retried_after_the_back_off_and_a_permanent_one_fails(
    settings: Settings, smtp_server: SmtpTestServer, clock: time_machine.Coordinates
) -> None:
    smtp_server.respond("slow@example.org", "451 4.3.0 try again later", times=1)
    smtp_server.respond("gone@example.org", "550 5.1.1 no such user")
    _sign_up(settings, "slow@example.org")
    _sign_up(settings, "gone@example.org")

    first = dispatch.deliver(settings)

    assert (first.sent, first.retry, first.failed) == (0, 1, 1)
    slow, gone = confirm_rows(settings)
    assert slow.state == "retry" and "451" in (slow.error or "")
    assert slow.next_attempt_at >= NOW + timedelta(minutes=1)  # smtp.retry.base_delay
    assert gone.state == "failed" and "550" in (gone.error or "")
    assert _find(settings, "gone@example.org").status == "bounced"
    assert dispatch.deliver(settings).sent == 0  # not due yet

    clock.shift(timedelta(minutes=2))
    assert dispatch.deliver(settings).sent == 1
    assert len(mails_to(smtp_server, "slow@example.org")) == 1
    assert states(settings) == ["sent", "failed"]


def test_a_newer_sign_up_replaces_the_mail_still_waiting(
    settings: Settings, smtp_server: SmtpTestServer, clock: time_machine.Coordinates
) -> None:
    smtp_server.stop()
    _sign_up(settings, language="de")
    assert dispatch.deliver(settings).retry == 1
    clock.shift(subscriptions.RESEND_AFTER + timedelta(minutes=1))
    assert _sign_up(settings, language="en", lists=["film"]) == "queued"
    smtp_server.start()
    clock.shift(timedelta(minutes=2))

    assert dispatch.deliver(settings).sent == 1

    [mail] = mails_to(smtp_server, "anna@example.org")  # one mail, as asked for last
    assert mail["Content-Language"] == "en" and "Film digest" in part(mail, "plain")
    older, newer = confirm_rows(settings)
    assert (older.state, older.error, newer.state) == ("cancelled", "superseded by a newer sign-up", "sent")


def test_the_background_loop_of_run_and_worker_sends_it_and_so_does_the_deliver_command(
    settings: Settings, smtp_server: SmtpTestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    engine_for(settings)  # the database is made before the loop's thread opens it too
    handle = dispatch.start_delivery(settings, poll=0.05)
    try:
        _sign_up(settings)
        deadline = time.monotonic() + 15
        while not smtp_server.messages and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        assert handle.stop()
    assert len(mails_to(smtp_server, "anna@example.org")) == 1
    assert states(settings) == ["sent"]

    _sign_up(settings, "ben@example.org")
    assert cli.main(["deliver", "--config", str(settings.config_path)]) == 0
    assert len(mails_to(smtp_server, "ben@example.org")) == 1
    assert "sent 1" in capsys.readouterr().out


def test_staff_add_and_import_with_status_pending_queue_the_mail(
    settings: Settings, smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    added = subscriptions.add(settings, "carl@example.org", language="en", status="pending")
    path = tmp_path / "people.csv"
    path.write_text("email,language\ndora@example.org,de\nemil@example.org,en\n", encoding="utf-8")
    report = subscriptions.import_csv(settings, path, status="pending")

    assert added.mailed and report.mailed == 2 and report.mail_failures == []
    assert smtp_server.sessions() == []
    assert states(settings) == ["queued", "queued", "queued"]
    assert dispatch.deliver(settings).sent == 3
    assert sorted(smtp_server.recipients()) == ["carl@example.org", "dora@example.org", "emil@example.org"]
    assert mails_to(smtp_server, "dora@example.org")[0]["Content-Language"] == "de"


def test_a_confirmation_goes_before_a_campaign_already_waiting(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server, NOW)
    add_subscribers(settings, 12, now=NOW)
    assert approve_and_send(settings, NOW).queued == 12
    _sign_up(settings)  # queued after the campaign's 12 rows

    now = datetime.now(UTC)  # the clock runs on from NOW
    with engine_for(settings).begin() as conn:
        claimed = store.claim_batch(conn, "test-worker", now, now + timedelta(minutes=1), 3)

    assert [(d.edition_id is None, d.channel) for d in claimed] == [
        (True, "confirm"),
        (False, "email"),
        (False, "email"),
    ]


def test_status_and_the_records_of_editions_ignore_confirmation_rows(
    make_settings: ConfigFactory,
    tmp_path: Path,
    smtp_server: SmtpTestServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make(make_settings, tmp_path, smtp_server, NOW)
    add_subscribers(settings, 2, now=NOW)
    sent = approve_and_send(settings, NOW)
    smtp_server.respond("anna@example.org", "451 4.3.0 try again later")
    _sign_up(settings)

    report = dispatch.deliver(settings)

    assert (report.sent, report.retry) == (2, 1)
    assert states(settings) == ["retry"]
    [status] = dispatch.status(settings)
    assert status.edition.id == sent.edition.id
    assert {k: v for k, v in status.counts.items() if v} == {"sent": 2}
    assert status.last_error is None
    with engine_for(settings).connect() as conn:
        assert set(store.outbox_counts(conn)) == {sent.edition.id}
        assert set(store.last_errors(conn)) <= {sent.edition.id}
    assert records.subscriber_record(settings, "anna@example.org").deliveries == []
    summary = delivery_report.summarise(settings, report)
    assert summary.waiting_rows == 1  # the deliver run still reports the mail waiting for its retry
    assert cli.main(["status", "--json", "--config", str(settings.config_path)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [e["id"] for e in shown["editions"]] == [sent.edition.id]
