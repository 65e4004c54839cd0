"""No mail bombing: web sign-ups are limited per client address, overall and per target mailbox (plus-
addresses count as their mailbox), counted in the database (shared by every process); the rest get a
neutral answer and are logged without address or IP. The confirmation mail carries nothing a stranger
typed. Through the in-process web app, on SQLite and PostgreSQL, with a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.errors import ConfigErrors
from imk_outreach.services import dispatch, subscriptions
from imk_outreach.services.database import engine_for
from imk_outreach.web.app import create_app
from tests.support.signups import FORM, confirm_rows, signup_settings
from tests.support.smtpserver import SmtpTestServer
from tests.support.subscribers import WebClient, parse, part

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
THROTTLE_LOG = "imk_outreach.services.throttle"


@pytest.fixture(autouse=True)
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(NOW, tick=True) as traveller:
        yield traveller


def _settings(make_settings: Any, smtp: SmtpTestServer, **limits: str) -> Settings:
    """Only the limits given; the others off; answered at once (answer times are for bench/)."""
    signup = {"per_client": "off", "overall": "off", "per_mailbox": "off", "answer_time": 0, **limits}
    return signup_settings(make_settings, smtp, signup=signup)


def _post(client: WebClient, email: str) -> tuple[int, str]:
    response = client.post("/subscribe?lang=en", data={**FORM, "email": email})
    return response.status_code, response.text


def _stored(settings: Settings, email: str) -> bool:
    with engine_for(settings).connect() as conn:
        return store.find_subscriber(conn, email) is not None


def _throttle_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == THROTTLE_LOG]


def test_one_client_gets_a_few_sign_ups_then_a_neutral_429(
    make_settings: Any,
    smtp_server: SmtpTestServer,
    clock: time_machine.Coordinates,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _settings(make_settings, smtp_server, per_client="3/1h")
    app = create_app(settings)
    here, other = WebClient(app, "198.51.100.20"), WebClient(app, "198.51.100.21")
    caplog.set_level(logging.INFO, logger=THROTTLE_LOG)

    answers = [_post(here, f"p{n}@example.org") for n in range(4)]
    refused = here.post("/subscribe?lang=en", data={**FORM, "email": "p5@example.org"})

    assert [code for code, _ in answers] == [200, 200, 200, 429]
    assert "Please check your inbox" in answers[0][1]
    assert "Please try again later" in answers[3][1] and answers[3][1] == refused.text
    assert int(refused.headers["retry-after"]) > 0
    assert not _stored(settings, "p3@example.org") and len(confirm_rows(settings)) == 3
    assert _post(other, "q@example.org")[0] == 200  # another client is not held up
    [line, _] = _throttle_lines(caplog)
    assert "per_client" in line and "198.51.100" not in line and "@" not in line

    clock.shift(timedelta(hours=1, seconds=1))
    assert _post(here, "p6@example.org")[0] == 200


def test_an_ipv6_client_counts_per_64_network(make_settings: Any, smtp_server: SmtpTestServer) -> None:
    settings = _settings(make_settings, smtp_server, per_client="2/1h")
    app = create_app(settings)

    codes = [
        _post(WebClient(app, ip), f"p{n}@example.org")[0]
        for n, ip in enumerate(
            ["2001:db8:1:2::10", "2001:db8:1:2::20", "2001:db8:1:2:ffff::1", "2001:db8:1:3::1"]
        )
    ]

    assert codes == [200, 200, 429, 200]


def test_the_overall_limit_holds_across_clients(make_settings: Any, smtp_server: SmtpTestServer) -> None:
    settings = _settings(make_settings, smtp_server, overall="3/1h")
    app = create_app(settings)

    codes = [_post(WebClient(app, f"198.51.100.{n}"), f"p{n}@example.org")[0] for n in range(1, 6)]

    assert codes == [200, 200, 200, 429, 429]
    assert len(confirm_rows(settings)) == 3


def test_plus_addresses_count_as_one_mailbox_and_the_answer_stays_the_same(
    make_settings: Any,
    smtp_server: SmtpTestServer,
    clock: time_machine.Coordinates,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _settings(make_settings, smtp_server, per_mailbox="2/1d")
    client = WebClient(create_app(settings))
    caplog.set_level(logging.INFO, logger=THROTTLE_LOG)

    first = _post(client, "anna@example.org")
    second = _post(client, "anna+news@example.org")
    third = _post(client, "Anna+Other@Example.org")  # the same mailbox: no mail, the same answer

    assert first == second == third and first[0] == 200
    assert not _stored(settings, "anna+other@example.org")
    assert len(confirm_rows(settings)) == 2
    assert _post(client, "bob@example.org") == first and len(confirm_rows(settings)) == 3
    [line] = _throttle_lines(caplog)
    assert "per_mailbox" in line and "anna" not in line.lower() and "example" not in line

    dispatch.deliver(settings)
    assert sorted(smtp_server.recipients()) == [
        "anna+news@example.org",
        "anna@example.org",
        "bob@example.org",
    ]
    clock.shift(timedelta(days=1, seconds=1))
    assert _post(client, "anna+later@example.org") == first and len(confirm_rows(settings)) == 4


def test_every_sign_up_counts_whatever_the_state_of_the_address(
    make_settings: Any, smtp_server: SmtpTestServer
) -> None:
    settings = _settings(make_settings, smtp_server, per_mailbox="2/1d")
    subscriptions.add(settings, "anna@example.org")  # confirmed: a sign-up mails nothing

    outcomes = [
        subscriptions.subscribe(settings, email, "", "en", ["newsletter"], "203.0.113.7")
        for email in ("anna@example.org", "anna+x@example.org", "anna+y@example.org")
    ]

    assert outcomes == ["already_confirmed", "queued", "limited_mailbox"]


def test_a_client_that_keeps_trying_a_full_mailbox_runs_into_its_own_limit(
    make_settings: Any, smtp_server: SmtpTestServer
) -> None:
    settings = _settings(make_settings, smtp_server, per_client="3/1h", per_mailbox="1/1d")

    outcomes = [
        subscriptions.subscribe(settings, email, "", "en", ["newsletter"], "198.51.100.9")
        for email in ("anna@example.org", "anna+x@example.org", "anna+y@example.org", "bob@example.org")
    ]

    assert outcomes == ["queued", "limited_mailbox", "limited_mailbox", "limited_client"]
    assert subscriptions.subscribe(
        settings, "bob@example.org", "", "en", ["newsletter"], "198.51.100.10"
    ) == ("queued")


def test_the_counts_are_kept_in_the_database_for_every_process(
    make_settings: Any, smtp_server: SmtpTestServer
) -> None:
    settings = _settings(make_settings, smtp_server, per_client="2/1h")
    child = (
        "import sys; from datetime import datetime; from imk_outreach.config import load_settings; "
        "from imk_outreach.services import subscriptions; "
        "print(subscriptions.subscribe(load_settings(sys.argv[1]), 'p0@example.org', '', 'en', "
        "['newsletter'], '198.51.100.7', now=datetime.fromisoformat(sys.argv[2])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", child, str(settings.config_path), NOW.isoformat()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "queued"

    again = [
        subscriptions.subscribe(settings, f"p{n}@example.org", "", "en", ["newsletter"], "198.51.100.7")
        for n in (1, 2)
    ]

    assert again == ["queued", "limited_client"]


def test_the_confirmation_mail_carries_nothing_a_stranger_typed(
    make_settings: Any, smtp_server: SmtpTestServer
) -> None:
    settings = signup_settings(make_settings, smtp_server)
    typed = "Your account is locked, call 0301234567 or visit evil.example"
    client = WebClient(create_app(settings))
    client.post("/subscribe?lang=en", data={**FORM, "email": "victim@example.org", "name": typed})
    dispatch.deliver(settings)

    [received] = smtp_server.messages
    mail = parse(received)
    texts = [
        received.data.decode("ascii", "replace"),
        part(mail, "plain"),
        part(mail, "html"),
        str(mail["To"]),
    ]
    for text in texts:
        for word in ("locked", "0301234567", "evil"):
            assert word not in text
    assert part(mail, "plain").startswith("Hello,")
    assert str(mail["To"]) == "victim@example.org"


def test_limits_are_read_from_config_and_a_bad_one_names_its_key(make_settings: Any) -> None:
    default = make_settings([]).signup
    assert (default.per_client, default.overall, default.per_mailbox, default.answer_time) == (
        (10, timedelta(hours=1)),
        (200, timedelta(hours=1)),
        (3, timedelta(days=1)),
        0.25,
    )
    chosen = make_settings(
        [], signup={"per_client": "5/h", "overall": "off", "per_mailbox": "2/12h", "answer_time": "0.5s"}
    ).signup
    assert (chosen.per_client, chosen.overall, chosen.per_mailbox, chosen.answer_time) == (
        (5, timedelta(hours=1)),
        None,
        (2, timedelta(hours=12)),
        0.5,
    )
    for bad in ("many", "0/1h", "5/fortnight", 5):
        with pytest.raises(ConfigErrors) as caught:
            make_settings([], signup={"per_client": bad})
        assert "signup.per_client" in str(caught.value), bad
