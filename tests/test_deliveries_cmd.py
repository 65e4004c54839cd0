"""``deliveries EDITION``: one row per recipient (state, attempts, sent time, next try, server reply) as
plain lines, a table on a terminal, or JSON; on SQLite and PostgreSQL with a real SMTP server."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pexpect
import pytest
import time_machine

from imk_outreach import cli
from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import Subscriber
from imk_outreach.services import dispatch, subscriptions
from imk_outreach.services.database import engine_for
from tests.conftest import ConfigFactory
from tests.support.smtpserver import SmtpTestServer
from tests.test_dispatch import add_subscribers, approve_and_send, make

NOW = datetime(2026, 11, 24, 9, 37, tzinfo=UTC)  # 10:37 in Berlin
RETRY = {"base_delay": "5m", "max_delay": "1h", "max_attempts": 5}


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    with time_machine.travel(NOW, tick=True):
        yield


def _delivered(
    make_settings: ConfigFactory, tmp_path: Path, server: SmtpTestServer
) -> tuple[Settings, list[Subscriber], int]:
    """Six recipients: 0 refused (550), 1 deferred (451), 2 erased after the send, 3-5 accepted."""
    settings = make(make_settings, tmp_path, server, NOW, retry=RETRY)
    people = add_subscribers(settings, 6, now=NOW)
    server.respond(people[0].email, f"550 5.1.1 <{people[0].email}>: user unknown")
    server.respond(people[1].email, "451 4.3.0 try again later")
    edition = approve_and_send(settings, NOW).edition.id
    report = dispatch.deliver(settings)
    assert (report.sent, report.failed, report.retry) == (4, 1, 1)
    subscriptions.erase(settings, people[2].email, NOW)
    return settings, people, edition


def _config(settings: Settings) -> list[str]:
    return ["--config", str(settings.config_path)]


def test_plain_lines_one_per_recipient(
    make_settings: ConfigFactory,
    tmp_path: Path,
    smtp_server: SmtpTestServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings, people, edition = _delivered(make_settings, tmp_path, smtp_server)
    assert cli.main(["deliveries", str(edition), *_config(settings)]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split("\t") == [
        "recipient",
        "language",
        "state",
        "attempts",
        "sent",
        "next try",
        "last reply",
    ]
    rows = {cells[0]: cells for cells in (line.split("\t") for line in lines)}
    assert len(lines) == 6 and len(rows) == 6
    assert rows[people[0].email][1:] == [
        "en",
        "failed",
        "1",
        "-",
        "-",
        f"550 5.1.1 <{people[0].email}>: user unknown",
    ]
    assert rows[people[1].email][1:] == [
        "de",
        "retry",
        "1",
        "-",
        "2026-11-24 10:42",
        "451 4.3.0 try again later",
    ]
    assert rows["(erased)"][2:5] == ["sent", "1", "2026-11-24 10:37"]
    for person in people[3:]:
        cells = rows[person.email]
        assert cells[2:6] == ["sent", "1", "2026-11-24 10:37", "-"]
        assert cells[6].startswith("250 ")


def test_state_filter_and_json(
    make_settings: ConfigFactory,
    tmp_path: Path,
    smtp_server: SmtpTestServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings, people, edition = _delivered(make_settings, tmp_path, smtp_server)
    assert cli.main(["deliveries", str(edition), "--state", "failed", *_config(settings)]) == 0
    _, *lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [people[0].email]

    assert cli.main(["deliveries", str(edition), "--json", *_config(settings)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["edition"] == {"id": edition, "campaign": "digest", "state": "queued"}
    assert data["counts"]["sent"] == 4 and data["counts"]["failed"] == 1 and data["counts"]["retry"] == 1
    by_email = {row["email"]: row for row in data["deliveries"]}
    assert len(data["deliveries"]) == 6 and None in by_email  # the erased one
    retry = by_email[people[1].email]
    assert retry["state"] == "retry" and retry["attempts"] == 1 and retry["sent_at"] is None
    assert datetime.fromisoformat(retry["next_attempt_at"]).astimezone(UTC).strftime("%H:%M") == "09:42"
    assert retry["error"] == "451 4.3.0 try again later"
    sent = by_email[people[3].email]
    assert sent["sent_at"] is not None and sent["next_attempt_at"] is None and sent["message_id"]
    assert by_email[people[0].email]["state"] == "failed"

    assert cli.main(["deliveries", str(edition), "--state", "sent", "--json", *_config(settings)]) == 0
    assert {row["state"] for row in json.loads(capsys.readouterr().out)["deliveries"]} == {"sent"}


def test_unknown_edition_and_unknown_state_are_clear_errors(
    make_settings: ConfigFactory,
    tmp_path: Path,
    smtp_server: SmtpTestServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make(make_settings, tmp_path, smtp_server, NOW)
    assert cli.main(["deliveries", "42", *_config(settings)]) == 1
    assert "no edition 42 (see 'imk-outreach editions')" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli.main(["deliveries", "1", "--state", "faild", *_config(settings)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "faild" in err and all(s in err for s in ("queued", "retry", "sent", "failed", "cancelled"))


def test_rows_stream_in_batches_in_queue_order(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server, NOW)
    people = add_subscribers(settings, 7, now=NOW)
    edition = approve_and_send(settings, NOW).edition.id
    with engine_for(settings).connect() as conn:
        streamed = [r.email for r in store.iter_edition_deliveries(conn, edition, batch=2)]
        queued = [r.email for r in store.iter_edition_deliveries(conn, edition, "queued", batch=3)]
        assert list(store.iter_edition_deliveries(conn, edition, "sent", batch=2)) == []
    assert streamed == queued == [p.email for p in people]


def test_terminal_shows_a_table_capped_with_a_note(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server, NOW)
    add_subscribers(settings, 203, now=NOW)
    edition = approve_and_send(settings, NOW).edition.id
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "160"}
    command = ["-m", "imk_outreach", "deliveries", str(edition), *_config(settings)]
    child = pexpect.spawn(sys.executable, command, env=env, timeout=60, encoding="utf-8")
    child.expect(pexpect.EOF)
    child.close()
    output = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", child.before or "")
    assert child.exitstatus == 0, output
    assert f"Edition {edition} (digest, queued): 203 queued" in output
    assert "person199@example.org" in output and "person200@example.org" not in output
    assert "showing the first 200 of 203 rows" in output
    assert "│" in output or "┃" in output  # a rich table, not plain lines
