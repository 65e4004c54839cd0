"""What deliver says when things go wrong: each distinct error with its count and the next try, exit
codes 0/1/3, and a progress bar whose total is what the run really attempts. Real SMTP (aiosmtpd) on
loopback, a real dead port, SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pexpect
import pytest
import time_machine

from imk_outreach import cli
from imk_outreach.cli.delivery import next_try
from imk_outreach.config import Settings, load_settings
from imk_outreach.services import dispatch
from imk_outreach.services.delivery_report import DeliverReport, ProgressTotals, normalise_error
from tests.conftest import ConfigFactory
from tests.support.items import days_before, store_items
from tests.support.smtpserver import PASSWORD, USER, SmtpTestServer, free_port
from tests.test_dispatch import add_subscribers, approve_and_send, make

NOW = datetime(2026, 11, 24, 9, 37, tzinfo=UTC)  # 10:37 in Berlin
RETRY = {"base_delay": "5m", "max_delay": "1h", "max_attempts": 5}  # next try: 10:42 Berlin time


@pytest.fixture
def clock() -> Iterator[None]:
    """The clock runs from NOW (ticking, for SMTP timeouts and leases): the next try is NOW + 5 min."""
    with time_machine.travel(NOW, tick=True):
        yield


def _config(settings: Settings) -> list[str]:
    return ["--config", str(settings.config_path)]


def _settings(make_settings: ConfigFactory, tmp_path: Path, server: Any, **smtp: Any) -> Settings:
    settings = make(make_settings, tmp_path, server, NOW, retry=RETRY, **smtp)
    assert str(settings.tz) == "Europe/Berlin"  # the default zone the expected times are written in
    return settings


class _DeadServer:
    """Where nothing listens: a port that was free a moment ago."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self.port = free_port()


# -- the one function that makes errors group --------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("550 5.1.1 <anna@example.org>: user unknown", "550 5.1.1 user unknown"),
        ("550 5.1.1 <Bert.Z+news@mail.example.com>: user unknown", "550 5.1.1 user unknown"),
        ("550 5.1.1 user 'carl@example.net' unknown", "550 5.1.1 user unknown"),
        ("550 5.1.1 mailbox unavailable (dora@example.org)", "550 5.1.1 mailbox unavailable"),
        (
            "550 5.1.1 The email account does not exist. 5b1f17b1804b1-43b3si1234567f8.123 - gsmtp",
            "550 5.1.1 The email account does not exist. - gsmtp",
        ),
        (
            "cannot connect to smtp server 127.0.0.1:1025: "
            "[Errno 111] Connect call failed ('127.0.0.1', 1025)",
            "connection refused by 127.0.0.1:1025",
        ),
        (
            "gave up after 5 attempts: cannot connect to smtp server mx.example.org:25: TimeoutError",
            "gave up after 5 attempts: no answer from mx.example.org:25 (timed out)",
        ),
        (
            "cannot connect to smtp server nohost.invalid:25: [Errno -2] Name or service not known",
            "cannot connect to nohost.invalid:25: Name or service not known",
        ),
        ("451   4.3.0\ttry again later", "451 4.3.0 try again later"),
        (None, "no reply recorded"),
        ("", "no reply recorded"),
    ],
)
def test_normalise_error(raw: str | None, expected: str) -> None:
    assert normalise_error(raw) == expected


def test_replies_about_different_recipients_group_and_different_causes_do_not() -> None:
    replies = [f"550 5.1.1 <person{n}@example.org>: Recipient address rejected" for n in range(50)]
    replies += ["550 5.7.1 <person1@example.org>: rejected by policy"]
    assert len({normalise_error(r) for r in replies}) == 2


def test_next_try_is_local_time_with_the_date_when_not_today(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"database_url: sqlite:///{tmp_path / 'x.db'}\ntimezone: Europe/Berlin\nsources: []\n")
    settings = load_settings(path)
    assert next_try(settings, NOW + timedelta(minutes=5), NOW) == "10:42"
    assert next_try(settings, NOW + timedelta(hours=14), NOW) == "2026-11-25 00:37"  # midnight in Berlin
    assert next_try(settings, NOW - timedelta(minutes=1), NOW) == "now"
    assert next_try(settings, None, NOW) == "now"


def test_progress_totals_grow_with_rows_coming_due() -> None:
    counts = ProgressTotals()
    assert counts.update(DeliverReport(), 10) == (0, 10)
    assert counts.update(DeliverReport(sent=4), 6) == (4, 10)
    assert counts.update(DeliverReport(sent=6, retry=2), 5) == (8, 13)  # 3 queued meanwhile, 2 retried
    # another process settled 3 rows this one never saw: they count as done, the total stays
    assert counts.update(DeliverReport(sent=8, retry=2), 0) == (13, 13)


def test_report_merges_failures_of_several_processes() -> None:
    one, two = DeliverReport(), DeliverReport()
    one.failed_with("550 5.1.1 <a@example.org>: user unknown")
    two.failed_with("550 5.1.1 <b@example.org>: user unknown")
    two.failed_with("554 5.7.1 policy")
    one.add(two)
    assert one.failures == {"550 5.1.1 user unknown": 2, "554 5.7.1 policy": 1}


# -- deliver on the command line ---------------------------------------------------------------


def test_dead_port_exits_1_and_says_connection_refused_with_the_next_try(
    make_settings: ConfigFactory, tmp_path: Path, clock: None, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = _DeadServer()
    settings = _settings(make_settings, tmp_path, dead, timeout=5)
    add_subscribers(settings, 4, now=NOW)
    approve_and_send(settings, NOW)
    assert cli.main(["deliver", *_config(settings)]) == 1
    out = capsys.readouterr().out
    assert "sent 0, retry later 4" in out
    assert f"4 waiting: connection refused by 127.0.0.1:{dead.port}, next try 10:42\n" in out
    assert "failed:" not in out


def test_some_refused_some_deferred_exits_3_with_grouped_lines(
    make_settings: ConfigFactory,
    tmp_path: Path,
    smtp_server: SmtpTestServer,
    clock: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = _settings(make_settings, tmp_path, smtp_server)
    people = add_subscribers(settings, 7, now=NOW)
    for person in people[:3]:
        smtp_server.respond(
            person.email, f"550 5.1.1 <{person.email}>: Recipient address rejected: user unknown"
        )
    for person in people[3:5]:
        smtp_server.respond(person.email, f"451 4.2.0 <{person.email}>: greylisted, come back later")
    approve_and_send(settings, NOW)
    assert cli.main(["deliver", *_config(settings)]) == 3
    out = capsys.readouterr().out
    assert "sent 2, retry later 2, failed 3" in out
    lines = out.splitlines()
    assert "2 waiting: 451 4.2.0 greylisted, come back later, next try 10:42" in lines
    assert "3 failed: 550 5.1.1 Recipient address rejected: user unknown" in lines
    assert not any("@" in line for line in lines)  # grouped: no per-recipient line
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == sorted(p.email for p in people[5:])

    # a later run with nothing due says what still waits, and that nothing went out
    assert cli.main(["deliver", *_config(settings)]) == 1
    out = capsys.readouterr().out
    assert "sent 0, retry later 0, failed 0" in out
    assert "2 waiting: 451 4.2.0 greylisted, come back later, next try 10:42" in out.splitlines()
    assert "failed:" not in out  # failures of an earlier run are not reported again


def test_every_recipient_refused_exits_1_and_all_going_out_exits_0(
    make_settings: ConfigFactory,
    tmp_path: Path,
    smtp_server: SmtpTestServer,
    clock: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = _settings(make_settings, tmp_path, smtp_server)
    add_subscribers(settings, 3, now=NOW)
    smtp_server.respond("*@example.org", "554 5.7.1 <x@example.org>: relay access denied", times=3)
    approve_and_send(settings, NOW)
    assert cli.main(["deliver", *_config(settings)]) == 1
    assert "3 failed: 554 5.7.1 relay access denied" in capsys.readouterr().out.splitlines()
    store_items(settings, days_before(NOW, 2), NOW, prefix="j")  # news for a second edition
    approve_and_send(settings, NOW)
    assert cli.main(["deliver", *_config(settings)]) == 0
    out = capsys.readouterr().out
    assert "sent 3, retry later 0, failed 0" in out
    assert "waiting" not in out and "failed:" not in out


def test_login_refused_exits_1_naming_the_server_and_leaves_the_rows_queued(
    make_settings: ConfigFactory,
    tmp_path: Path,
    smtp_server_factory: Callable[..., SmtpTestServer],
    clock: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = smtp_server_factory(auth=True)
    settings = _settings(make_settings, tmp_path, server, username=USER, password=PASSWORD + "-wrong")
    add_subscribers(settings, 3, now=NOW)
    approve_and_send(settings, NOW)
    assert cli.main(["deliver", *_config(settings)]) == 1
    captured = capsys.readouterr()
    assert f"127.0.0.1:{server.port} refused login as '{USER}'" in captured.err
    assert "3 queued, not tried yet" in captured.out
    assert server.messages == []
    assert dispatch.status(settings)[0].counts["queued"] == 3


def test_progress_bar_total_is_what_this_run_attempts(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    """On a terminal: 8 rows due now, 2 more waiting for a retry later. The bar counts to 8 (the old bar
    counted every pending row, 10, and ended at 6/10)."""
    now = datetime.now(UTC)  # the clock of the deliver process: the rows must be due by it
    settings = make(make_settings, tmp_path, smtp_server, now, retry=RETRY)
    people = add_subscribers(settings, 8, now=now)
    for person in people[:2]:
        smtp_server.respond(person.email, "451 4.3.0 try again later")
    approve_and_send(settings, now)
    first = dispatch.deliver(settings)
    assert (first.sent, first.retry) == (6, 2)  # 2 rows wait 5 minutes
    store_items(settings, days_before(now, 2), now, prefix="j")
    approve_and_send(settings, now)  # 8 more rows, due now
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "120"}
    command = ["-m", "imk_outreach", "deliver", *_config(settings)]
    child = pexpect.spawn(sys.executable, command, env=env, timeout=120, encoding="utf-8")
    child.expect(pexpect.EOF)
    child.close()
    output = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", child.before or "")
    assert child.exitstatus == 3, output
    assert re.search(r"\b8/8\b", output), output
    assert not re.search(r"\d+/10\b", output), output
    assert "sent 6, retry later 2" in output
    assert re.search(r"^4 waiting: 451 4\.3\.0 try again later, next try \d\d:\d\d\r?$", output, re.M), output
