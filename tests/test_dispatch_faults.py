"""Delivery faults with real processes: a sender killed with SIGKILL mid-campaign and restarted, and three
workers on one campaign over PostgreSQL. The SMTP server is a real aiosmtpd server on loopback."""

from __future__ import annotations

import collections
import email
import email.policy
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from imk_outreach.db.tables import outbox
from imk_outreach.services import dispatch
from imk_outreach.services.database import engine_for
from tests.conftest import ConfigFactory
from tests.support.smtpserver import SmtpTestServer
from tests.test_dispatch import add_subscribers, approve_and_send, make


def _deliver_process(config: Path, *extra: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "imk_outreach", "deliver", "--until-empty", "--quiet"]
    command += ["--config", str(config)]
    return subprocess.Popen([*command, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _message_id(data: bytes) -> str:
    return str(email.message_from_bytes(data, policy=email.policy.default)["Message-ID"])


def _wait_for(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_sigkill_mid_campaign_then_restart(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    batch = 20
    now = datetime.now(UTC)  # the clock of the sender processes: the rows must be due by it
    settings = make(
        make_settings, tmp_path, smtp_server, now, batch_size=batch, rate_per_second=150, lease="1s"
    )
    people = add_subscribers(settings, 300, now=now)
    approve_and_send(settings, now)
    first = _deliver_process(settings.config_path)
    try:
        started = _wait_for(lambda: len(smtp_server.messages) >= 100, 60)
        assert started, first.stderr.read() if first.stderr else ""
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    killed_at = len(smtp_server.messages)
    assert killed_at < len(people), "the sender finished before it could be killed"
    second = _deliver_process(settings.config_path)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err.decode()
    received = collections.defaultdict(list)
    for message in smtp_server.messages:
        received[message.rcpt_tos[0]].append(_message_id(message.data))
    assert set(received) == {p.email for p in people}  # every recipient served
    twice = {address: ids for address, ids in received.items() if len(ids) > 1}
    # at most the batches in flight: the one being sent and the next, already handed to the sessions
    assert len(twice) <= 2 * batch
    assert all(len(ids) == 2 and ids[0] == ids[1] for ids in twice.values())  # ... with the same Message-ID
    assert dispatch.status(settings)[0].counts["sent"] == len(people)


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # FOR UPDATE SKIP LOCKED: PostgreSQL only
def test_three_workers_on_postgres_serve_no_one_twice(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    now = datetime.now(UTC)  # the clock of the worker processes: the rows must be due by it
    settings = make(
        make_settings, tmp_path, smtp_server, now, batch_size=25, rate_per_second=200, connections=2
    )
    people = add_subscribers(settings, 600, now=now)
    approve_and_send(settings, now)
    command = [
        sys.executable,
        "-m",
        "imk_outreach",
        "worker",
        "--poll",
        "0.2",
        "--config",
        str(settings.config_path),
    ]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    try:
        finished = _wait_for(lambda: dispatch.status(settings)[0].counts["sent"] == len(people), 180)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err.decode()
    assert finished
    recipients = [m.rcpt_tos[0] for m in smtp_server.messages]
    assert len(recipients) == len(people) == len(set(recipients))
    with engine_for(settings).connect() as conn:
        claimers = conn.execute(select(func.count(func.distinct(outbox.c.claimed_by)))).scalar_one()
    assert claimers >= 2  # the workers really shared the campaign
    assert dispatch.status(settings)[0].counts["sent"] == len(people)


def test_deliver_in_two_processes(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    now = datetime.now(UTC)  # the clock of the delivering processes: the rows must be due by it
    settings = make(make_settings, tmp_path, smtp_server, now, batch_size=5, connections=2)
    people = add_subscribers(settings, 40, now=now)
    approve_and_send(settings, now)
    report = dispatch.deliver_parallel(settings, 2, until_empty=True)
    recipients = [m.rcpt_tos[0] for m in smtp_server.messages]
    assert report.sent == len(people) == len(recipients) == len(set(recipients))
    assert dispatch.status(settings)[0].counts["sent"] == len(people)
