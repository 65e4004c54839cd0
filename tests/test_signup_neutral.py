"""No one learns who is subscribed: ``POST /subscribe`` answers with the same status and body whether the
address is new, pending, confirmed, unsubscribed or bounced, and whether the mail server is up. The request
only queues the confirmation mail (the outbox, with its retries); the delivery loop sends it. Through the
in-process web app, on SQLite and PostgreSQL, with a real SMTP server (aiosmtpd)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import Subscriber
from imk_outreach.services import dispatch, subscriptions
from imk_outreach.services.database import engine_for
from imk_outreach.web.app import create_app
from tests.support.signups import FORM, confirm_rows, signup_settings, states
from tests.support.smtpserver import SmtpTestServer
from tests.support.subscribers import WebClient, confirm_url, mails_to, token_of

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
KNOWN = {  # address -> (status, signed up how long ago)
    "pending@example.org": ("pending", timedelta(hours=1)),  # due a new mail
    "recent@example.org": ("pending", timedelta(minutes=2)),  # mailed a moment ago
    "confirmed@example.org": ("confirmed", timedelta(days=30)),
    "unsubscribed@example.org": ("unsubscribed", timedelta(days=30)),
    "bounced@example.org": ("bounced", timedelta(days=30)),
}


@pytest.fixture(autouse=True)
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(NOW, tick=True) as traveller:
        yield traveller


@pytest.fixture
def settings(make_settings: Any, smtp_server: SmtpTestServer) -> Settings:
    return signup_settings(make_settings, smtp_server)


def _store_known(settings: Settings) -> None:
    with engine_for(settings).begin() as conn:
        for email, (status, ago) in KNOWN.items():
            person = Subscriber(
                email=email,
                language="en",
                lists=("newsletter",),
                status=status,
                signup_at=NOW - ago,
                confirmed_at=NOW - ago if status == "confirmed" else None,
            )
            store.save_subscriber(conn, person, NOW - ago)


def _find(settings: Settings, email: str) -> Subscriber | None:
    with engine_for(settings).connect() as conn:
        return store.find_subscriber(conn, email)


@pytest.mark.parametrize("server_up", [True, False], ids=["mail server up", "mail server down"])
def test_every_address_gets_the_same_answer_and_no_mail_is_sent_in_the_request(
    settings: Settings, smtp_server: SmtpTestServer, server_up: bool
) -> None:
    _store_known(settings)
    if not server_up:
        smtp_server.stop()
    client = WebClient(create_app(settings))

    answers = {}
    for email in ["new@example.org", *KNOWN]:
        response = client.post("/subscribe?lang=en", data={**FORM, "email": email})
        answers[email] = (response.status_code, response.text)

    reference = answers["new@example.org"]
    assert reference[0] == 200 and "Please check your inbox" in reference[1]
    assert {email: answer for email, answer in answers.items() if answer != reference} == {}
    assert smtp_server.sessions() == []  # nothing was even tried inside the requests
    # what is due a mail is queued: the new address, the pending one, the two signing up again
    due = {"new@example.org", "pending@example.org", "unsubscribed@example.org", "bounced@example.org"}
    for email in due:
        found = _find(settings, email)
        assert found is not None and found.status == "pending", email
    queued = {row.subscriber_id for row in confirm_rows(settings) if row.state == "queued"}
    assert queued == {_find(settings, email).id for email in due}  # type: ignore[union-attr]
    assert _find(settings, "confirmed@example.org").status == "confirmed"  # type: ignore[union-attr]


def test_with_the_mail_server_down_the_sign_up_stays_and_the_mail_follows(
    settings: Settings, smtp_server: SmtpTestServer, clock: time_machine.Coordinates
) -> None:
    smtp_server.stop()
    response = WebClient(create_app(settings)).post("/subscribe?lang=en", data=FORM)
    assert response.status_code == 200 and "Please check your inbox" in response.text

    first = dispatch.deliver(settings)  # the server is away: the mail waits for a retry
    assert (first.sent, first.retry) == (0, 1)
    [row] = confirm_rows(settings)
    assert row.state == "retry" and row.error
    assert row.next_attempt_at > NOW + timedelta(seconds=30)  # the back-off of smtp.retry.base_delay

    smtp_server.start()
    clock.shift(timedelta(minutes=2))
    second = dispatch.deliver(settings)
    assert (second.sent, second.retry) == (1, 0)
    [mail] = mails_to(smtp_server, "anna@example.org")
    confirmed = subscriptions.confirm(settings, token_of(confirm_url(mail)))
    assert confirmed.status == "confirmed"
    assert states(settings) == ["sent"]


def test_a_confirmed_address_is_mailed_nothing_and_a_pending_one_not_too_often(
    settings: Settings, smtp_server: SmtpTestServer, clock: time_machine.Coordinates
) -> None:
    client = WebClient(create_app(settings))
    client.post("/subscribe?lang=en", data=FORM)
    clock.shift(timedelta(minutes=1))
    client.post("/subscribe?lang=en", data=FORM)  # within RESEND_AFTER: no second mail
    assert smtp_server.messages == []  # queued, not sent by the request
    assert dispatch.deliver(settings).sent == 1
    [mail] = mails_to(smtp_server, "anna@example.org")
    subscriptions.confirm(settings, token_of(confirm_url(mail)))

    clock.shift(subscriptions.RESEND_AFTER)
    again = client.post("/subscribe?lang=en", data=FORM)  # confirmed now: the same page, no mail

    assert again.status_code == 200 and "Please check your inbox" in again.text
    assert dispatch.deliver(settings).sent == 0
    assert len(smtp_server.messages) == 1
    assert _find(settings, "anna@example.org").status == "confirmed"  # type: ignore[union-attr]
