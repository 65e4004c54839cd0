"""Crash recovery and graceful stop with real processes, on SQLite and PostgreSQL, against a real (slow or
hanging) aiosmtpd server: a killed worker's rows are taken back at once by a restart on the same host;
rows of a worker on another host come back when their short lease runs out; SIGTERM with a hanging
server exits 0 within 10 s and releases the unsent rows."""

from __future__ import annotations

import asyncio
import collections
import email
import email.policy
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.db.tables import outbox, processes
from imk_outreach.services import dispatch
from imk_outreach.services.database import engine_for
from tests.conftest import ConfigFactory
from tests.support.smtpserver import SmtpTestServer
from tests.test_dispatch import add_subscribers, approve_and_send, make

HOST = socket.gethostname()


def slow_down(server: SmtpTestServer, seconds: float) -> Callable[[], None]:
    """The server waits ``seconds`` before it answers each message; returns the undo."""
    handler: Any = server._controller.handler  # type: ignore[union-attr]
    original = handler.handle_DATA

    async def slow(*args: Any) -> str:
        await asyncio.sleep(seconds)
        return str(await original(*args))

    handler.handle_DATA = slow

    def undo() -> None:
        handler.handle_DATA = original

    return undo


def start(settings: Settings, *command: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "imk_outreach", *command, "--config", str(settings.config_path)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def worker(settings: Settings) -> subprocess.Popen[bytes]:
    return start(settings, "worker", "--poll", "0.2")


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``predicate`` held; fails the test after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"not within {timeout} s: {what}"
        time.sleep(0.05)
    return time.monotonic() - started


def campaign(
    make_settings: ConfigFactory, tmp_path: Path, server: SmtpTestServer, count: int, **smtp: Any
) -> tuple[Settings, set[str]]:
    now = datetime.now(UTC)  # the clock of the worker processes: the rows must be due by it
    settings = make(make_settings, tmp_path, server, now, **smtp)
    people = {p.email for p in add_subscribers(settings, count, now=now)}
    approve_and_send(settings, now)
    return settings, people


def held_by(settings: Settings, prefix: str) -> list[int]:
    with engine_for(settings).connect() as conn:
        query = select(outbox.c.id).where(outbox.c.state == "sending", outbox.c.claimed_by.startswith(prefix))
        return list(conn.execute(query).scalars())


def counts(settings: Settings) -> dict[str, int]:
    return {k: v for k, v in dispatch.status(settings)[0].counts.items() if v}


def worker_rows(settings: Settings) -> list[str]:
    with engine_for(settings).connect() as conn:
        return list(conn.execute(select(processes.c.name).where(processes.c.role == "worker")).scalars())


def message_ids(server: SmtpTestServer) -> dict[str, list[str]]:
    received = collections.defaultdict(list)
    for message in server.messages:
        parsed = email.message_from_bytes(message.data, policy=email.policy.default)
        received[message.rcpt_tos[0]].append(str(parsed["Message-ID"]))
    return received


def stop(process: subprocess.Popen[bytes], timeout: float = 10) -> tuple[int, float, str]:
    """SIGTERM; (exit code, seconds it took, stderr)."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=timeout)
    return process.returncode, time.monotonic() - started, err.decode()


def test_a_restart_on_the_same_host_takes_back_a_killed_workers_rows_at_once(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    batch = 10
    # A lease of a minute: the rows can only come back within the test's bounds by being taken back.
    settings, people = campaign(
        make_settings, tmp_path, smtp_server, 80, batch_size=batch, connections=2, lease="60s"
    )
    slow_down(smtp_server, 0.05)
    first = worker(settings)
    wait_for(lambda: len(smtp_server.messages) >= 20, 60, "the first mails")
    first.kill()
    first.communicate(timeout=10)
    dead = f"{HOST}:{first.pid}:"
    assert held_by(settings, dead), "the killed worker held no rows"
    assert any(name.startswith(dead) for name in worker_rows(settings))  # its heartbeat row is left
    second = worker(settings)
    wait_for(lambda: not held_by(settings, dead), 30, "the dead worker's rows taken back")
    wait_for(lambda: counts(settings).get("sent") == len(people), 60, "every mail sent")
    assert not any(name.startswith(dead) for name in worker_rows(settings))  # forgotten as gone
    assert any(name.startswith(f"{HOST}:{second.pid}:") for name in worker_rows(settings))
    code, _, err = stop(second)
    assert code == 0, err
    assert worker_rows(settings) == []  # a clean exit removes the worker's row
    received = message_ids(smtp_server)
    assert set(received) == people  # everyone served
    twice = {address: ids for address, ids in received.items() if len(ids) > 1}
    assert len(twice) <= 2 * batch  # at most the batches in flight (one sent, the next claimed) ...
    assert all(len(ids) == 2 and ids[0] == ids[1] for ids in twice.values())  # ... with the same Message-ID


def test_rows_of_a_worker_on_another_host_come_back_when_the_short_lease_runs_out(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    lease = timedelta(seconds=3)
    settings, people = campaign(make_settings, tmp_path, smtp_server, 30, batch_size=10, lease="3s")
    foreign = "elsewhere.example:4242:123456"  # never provably gone: only its lease can free its rows
    claimed_at = datetime.now(UTC)
    with engine_for(settings).begin() as conn:
        taken = store.claim_batch(conn, foreign, claimed_at, claimed_at + lease, 10)
    assert len(taken) == 10
    started = time.monotonic()
    process = start(settings, "deliver", "--until-empty", "--quiet")
    _, err = process.communicate(timeout=60)
    took = time.monotonic() - started
    assert process.returncode == 0, err.decode()
    assert counts(settings) == {"sent": len(people)}
    assert set(message_ids(smtp_server)) == people
    assert len(smtp_server.messages) == len(people)  # the foreign rows were never sent by their "owner"
    assert datetime.now(UTC) - claimed_at >= lease  # not taken before the lease ran out ...
    assert took < 30  # ... and about then: seconds, not the minutes of a long lease


def test_sigterm_while_the_server_hangs_exits_0_within_10_s_and_releases_the_rows(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings, people = campaign(make_settings, tmp_path, smtp_server, 40, batch_size=10, connections=2)
    undo = slow_down(smtp_server, 3600)  # accepts each message's bytes, then never answers
    first = worker(settings)
    mine = f"{HOST}:{first.pid}:"
    wait_for(lambda: len(held_by(settings, mine)) > 0, 30, "a batch claimed")
    wait_for(lambda: len(smtp_server.sessions()) >= 2, 30, "both sessions sending")
    time.sleep(0.3)  # the messages are on the wire, their answers will never come
    code, took, err = stop(first, timeout=20)
    assert code == 0, err
    assert took < 10, f"stopping took {took:.1f} s"
    assert "released unsent" in err
    assert held_by(settings, "") == []  # nothing left leased ...
    assert counts(settings) == {"queued": len(people)}  # ... all claimable at once
    with engine_for(settings).connect() as conn:
        assert set(conn.execute(select(outbox.c.attempts)).scalars()) == {0}  # no attempt counted
    assert worker_rows(settings) == []
    undo()
    second = start(settings, "deliver", "--until-empty", "--quiet")
    _, err_bytes = second.communicate(timeout=60)
    assert second.returncode == 0, err_bytes.decode()
    received = message_ids(smtp_server)
    assert set(received) == people
    assert all(len(ids) == 1 for ids in received.values())  # the hung ones were never accepted
