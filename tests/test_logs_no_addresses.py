"""No log record carries a subscriber's address or name, at any level: a subscriber's life from the web
sign-up (whose confirmation mail the server first defers, echoing the address), confirmation, a
newsletter the server defers and then refuses (echoing address and name), a pending import whose mail is
refused, the one-click unsubscribe, to the erasure; all of it logged at DEBUG. A database error shows
no values either (it may end up in a log). On SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from sqlalchemy.exc import IntegrityError

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import Subscriber
from imk_outreach.services import dispatch, subscriptions
from imk_outreach.services.database import engine_for
from imk_outreach.web.app import create_app
from tests.conftest import ConfigFactory
from tests.support.smtpserver import SmtpTestServer
from tests.support.subscribers import WebClient, parse, part
from tests.test_dispatch import approve_and_send, make

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
ADDRESS = "Lena.Leck@example.org"
NAME = "Lena Leckmann-Ausplauder"
IMPORTED = "ivo.import@example.org"
NEEDLES = ("lena.leck", "leckmann", "ausplauder", "ivo.import")
SERVER_LOGGER = "mail.log"  # the test SMTP server's own (aiosmtpd), not the product's


@pytest.fixture
def traveller() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(NOW, tick=True) as coordinates:
        yield coordinates


def _text(record: logging.LogRecord) -> str:
    shown = record.getMessage()
    if record.exc_info:
        shown += "\n" + logging.Formatter().formatException(record.exc_info)
    return shown.lower()


def _confirm_token(server: SmtpTestServer) -> str:
    mails = [parse(m) for m in server.messages if ADDRESS in m.rcpt_tos]
    assert mails, "no confirmation mail arrived"
    found = re.findall(r"https://cluster\.example/confirm/(\S+)", part(mails[-1], "plain"))
    assert found
    return str(found[0])


def _sign_up_and_confirm(
    settings: Settings, client: WebClient, server: SmtpTestServer, traveller: time_machine.Coordinates
) -> None:
    server.respond(ADDRESS, f"451 4.7.1 <{ADDRESS}>: greylisted, come back later", times=1)
    form = {"email": ADDRESS, "name": NAME, "language": "de", "lists": "newsletter"}
    client.post("/subscribe", data=form)  # the mail is deferred: a 503, or queued for a retry
    dispatch.deliver(settings)
    traveller.shift(timedelta(minutes=11))  # past the time a sign-up waits before mailing again
    client.post("/subscribe", data=form)
    dispatch.deliver(settings)
    assert client.post(f"/confirm/{_confirm_token(server)}").status_code == 200


def test_a_subscribers_life_leaves_their_address_and_name_in_no_log_record(
    make_settings: ConfigFactory,
    tmp_path: Path,
    smtp_server: SmtpTestServer,
    traveller: time_machine.Coordinates,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make(make_settings, tmp_path, smtp_server)
    client = WebClient(create_app(settings))
    _sign_up_and_confirm(settings, client, smtp_server, traveller)

    smtp_server.respond(ADDRESS, f"452 4.2.2 <{ADDRESS}>: mailbox full", times=1)
    smtp_server.respond(ADDRESS, f"550 5.1.1 <{ADDRESS}> ({NAME}): user unknown")
    approve_and_send(settings, NOW)
    dispatch.deliver(settings)
    dispatch.deliver(settings)  # the retry, refused for good

    smtp_server.respond(IMPORTED, f"550 5.7.1 <{IMPORTED}>: relaying denied")
    csv = tmp_path / "people.csv"
    csv.write_text(f"email,name\n{IMPORTED},Ivo Import\n", encoding="utf-8")
    subscriptions.import_csv(settings, csv, "pending")
    dispatch.deliver(settings)

    with engine_for(settings).connect() as conn:
        lena = store.find_subscriber(conn, ADDRESS)
    assert lena is not None and lena.status == "bounced"
    unsubscribe = subscriptions.links_for(settings, lena).unsubscribe_url.removeprefix(
        "https://cluster.example"
    )
    assert client.post(unsubscribe, content=b"List-Unsubscribe=One-Click").status_code == 200
    subscriptions.erase(settings, ADDRESS)

    refused = " ".join(reply for _, reply in smtp_server.refused).lower()
    assert "lena.leck@example.org" in refused and "ivo.import@example.org" in refused  # echoes were sent
    product = [r for r in caplog.records if r.name.startswith("imk_outreach")]
    assert any(f"subscriber {lena.id} erased" in r.getMessage() for r in product)  # captured to the end
    leaks = [
        f"{r.levelname} {r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.name != SERVER_LOGGER and any(needle in _text(r) for needle in NEEDLES)
    ]
    assert leaks == []


def test_a_database_error_shows_no_values(make_settings: ConfigFactory) -> None:
    settings = make_settings([])
    person = Subscriber(email=ADDRESS, language="de", name=NAME, status="confirmed")
    with engine_for(settings).begin() as conn:
        store.save_subscriber(conn, person, NOW)
    with pytest.raises(IntegrityError) as caught, engine_for(settings).begin() as conn:
        store.save_subscriber(conn, person, NOW)  # the same address again: the unique key refuses it
    assert "subscribers" in str(caught.value)  # the statement is named
    assert not any(needle in str(caught.value).lower() for needle in NEEDLES)
