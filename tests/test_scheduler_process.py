"""``imk-outreach run`` as real processes: stop signals mid-delivery, SIGKILL and restart, runs made up
after downtime, the scheduler lock (SQLite refuses a second run, PostgreSQL keeps it as a standby),
``/healthz``, campaign reload, the schema check and JSON logs. Mails go to a real aiosmtpd server on
loopback; every wait polls for its condition with a generous timeout."""

from __future__ import annotations

import asyncio
import collections
import email
import email.policy
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select

from imk_outreach.config import Settings, load_settings
from imk_outreach.db import store
from imk_outreach.db.tables import outbox
from imk_outreach.models import ProcessInfo, Subscriber
from imk_outreach.services import compose, dispatch, schedule
from imk_outreach.services.database import dispose_all, engine_for
from imk_outreach.web.app import create_app
from tests.support.smtpserver import SmtpTestServer, free_port

BERLIN = ZoneInfo("Europe/Berlin")
STAFF = "redaktion@cluster.example"
HOST = socket.gethostname()
CAMPAIGN = """\
name: digest
list: newsletter
languages: [de, en]
{schedule}
grace: 1h
late_policy: hold
approval: {approval}
min_items: 1
subject: {{de: "Digest", en: "Digest"}}
intro: {{de: "Hallo.", en: "Hello."}}
sections:
  - {{id: tech, heading: {{de: Technik, en: Tech}}, select: {{tags: [iot], since: 30d}}}}
"""


# -- the set-up: a config folder, a database, an SMTP server, and the processes started on them ------


@dataclass
class Daemon:
    """One ``imk-outreach run`` process; its stdout and stderr go to a log file."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int | None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")

    def json_log(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log().splitlines() if line.strip()]

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, float]:
        """Send ``signum``; (exit code, seconds until the process was gone)."""
        started = time.monotonic()
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def healthz(self) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=5)


@dataclass
class Site:
    root: Path
    db_url: str
    smtp: SmtpTestServer
    daemons: list[Daemon] = field(default_factory=list)
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def campaign_file(self) -> Path:
        return self.root / "campaigns" / "digest.yaml"

    def write_config(
        self, smtp: dict[str, Any] | None = None, scheduler: dict[str, Any] | None = None, **extra: Any
    ) -> Settings:
        data: dict[str, Any] = {
            "database_url": self.db_url,
            "sources": [
                {
                    "name": "news",
                    "type": "manual",
                    "url": "manual",
                    "language": "de",
                    "every": "1h",
                    "tags": ["iot"],
                }
            ],
            "lists": {"newsletter": {"de": "Newsletter", "en": "Newsletter"}},
            "sender": {"name": "Cluster IMK", "email": "news@cluster.example"},
            "public_url": "https://cluster.example",
            "smtp": {
                "host": self.smtp.host,
                "port": self.smtp.port,
                "connections": 2,
                "batch_size": 10,
                "retry": {"base_delay": "0s", "max_delay": "0s", "max_attempts": 3},
                **(smtp or {}),
            },
            "scheduler": {
                "tick": "1s",
                "heartbeat": "1s",
                "reload": "1s",
                "standby_poll": "1s",
                **(scheduler or {}),
            },
            **extra,
        }
        self.config.write_text(yaml.safe_dump(data, sort_keys=False), "utf-8")
        dispose_all()
        return load_settings(self.config)

    def write_campaign(self, schedule: str = "", approval: str = "auto", extra: str = "") -> None:
        text = CAMPAIGN.format(schedule=schedule, approval=approval) + extra
        self.campaign_file.parent.mkdir(exist_ok=True)
        self.campaign_file.write_text(text, "utf-8")

    def write_news(self) -> None:
        """Three items of the last days in the manual source's folder, gathered by ``run``."""
        folder = self.root / "manual"
        folder.mkdir(exist_ok=True)
        today = datetime.now(UTC).date()
        items = [
            {
                "url": f"https://example.org/news/{n}",
                "published": (today - timedelta(days=n)).isoformat(),
                "tags": ["iot"],
                "title": {"de": f"Meldung {n}", "en": f"Story {n}"},
                "summary": {"de": "Text.", "en": "Text."},
            }
            for n in range(1, 4)
        ]
        (folder / "news.yaml").write_text(yaml.safe_dump(items, allow_unicode=True), "utf-8")

    def start(self, *args: str, web: bool = False) -> Daemon:
        port = free_port() if web else None
        log_path = self.root / f"run-{next(self._numbers)}.log"
        command = [sys.executable, "-m", "imk_outreach", "run", "--config", str(self.config), *args]
        command += ["--port", str(port)] if port else ["--no-web"]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        daemon = Daemon(proc, log_path, port)
        self.daemons.append(daemon)
        return daemon

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "imk_outreach", *args, "--config", str(self.config)]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.fixture
def site(tmp_path: Path, db_url: str, smtp_server: SmtpTestServer) -> Iterator[Site]:
    here = Site(tmp_path, db_url, smtp_server)
    here.write_news()
    yield here
    for daemon in here.daemons:  # a test that failed half-way leaves no process behind
        if daemon.proc.poll() is None:
            daemon.kill()


def wait_for(condition: Callable[[], object], timeout: float, what: str, *watch: Daemon) -> float:
    """Poll ``condition`` until it is true; seconds it took. Fails early when a watched process exits."""
    started = time.monotonic()
    while not condition():
        for daemon in watch:
            if daemon.proc.poll() is not None:
                pytest.fail(
                    f"run exited ({daemon.proc.returncode}) waiting for {what}:\n{daemon.log()[-3000:]}"
                )
        if time.monotonic() - started > timeout:
            logs = "\n---\n".join(d.log()[-3000:] for d in watch)
            pytest.fail(f"no {what} within {timeout} s\n{logs}")
        time.sleep(0.1)
    return time.monotonic() - started


@dataclass
class Pace:
    seconds: float  # how long the server takes to answer each message; change it at any time


def slow_down(server: SmtpTestServer, seconds: float) -> Pace:
    """The server takes ``seconds`` to answer each message (aiosmtpd looks its hooks up per connection)."""
    pace = Pace(seconds)
    handler: Any = server._controller.handler  # type: ignore[union-attr]
    original = handler.handle_DATA

    async def slow(*args: Any) -> str:
        await asyncio.sleep(pace.seconds)
        return str(await original(*args))

    handler.handle_DATA = slow
    return pace


# -- what the database and the SMTP server say ----------------------------------------------------------


def add_subscribers(settings: Settings, count: int) -> set[str]:
    now = datetime.now(UTC)
    with engine_for(settings).begin() as conn:
        for n in range(count):
            person = Subscriber(
                email=f"person{n}@example.org",
                language="de" if n % 2 else "en",
                lists=("newsletter",),
                status="confirmed",
            )
            store.save_subscriber(conn, person, now)
    return {f"person{n}@example.org" for n in range(count)}


def queue_edition(settings: Settings) -> int:
    """Gather, compose, approve and enqueue the (unscheduled) campaign in this process."""
    from imk_outreach.services import ingest

    now = datetime.now(UTC)
    ingest.gather(settings, ["news"])
    draft = compose.compose(settings, "digest", now).edition
    assert draft is not None
    compose.approve(settings, draft.id, by="test", now=now)
    return dispatch.send(settings, "digest", now).queued


def received(server: SmtpTestServer) -> collections.Counter[str]:
    return collections.Counter(server.recipients())


def to_subscribers(server: SmtpTestServer) -> list[str]:
    return [r for r in server.recipients() if r != STAFF]


def sent(settings: Settings) -> int:
    return sum(s.counts["sent"] for s in dispatch.status(settings))


def editions(settings: Settings) -> list[Any]:
    return compose.list_editions(settings, "digest")


def process_of(settings: Settings, daemon: Daemon) -> ProcessInfo | None:
    with engine_for(settings).connect() as conn:
        return next((p for p in store.list_processes(conn) if p.pid == daemon.pid), None)


def jobs_of(settings: Settings, daemon: Daemon) -> dict[str, str | None]:
    """The scheduler's jobs with their next run, as its last heartbeat showed them."""
    process = process_of(settings, daemon)
    if process is None:
        return {}
    return {job["job"]: job["next_run"] for job in process.info.get("jobs", [])}


def scheduling(settings: Settings, daemon: Daemon) -> bool:
    process = process_of(settings, daemon)
    return process is not None and process.role == "scheduler" and bool(process.info.get("jobs"))


def wait_ticks(settings: Settings, daemon: Daemon, count: int) -> None:
    """Until the tick job has run ``count`` more times (its next run time moved on that often)."""
    wait_for(lambda: "tick" in jobs_of(settings, daemon), 30, "the tick job", daemon)
    first = jobs_of(settings, daemon)["tick"]
    assert first is not None
    target = datetime.fromisoformat(first) + settings.scheduler.tick * count

    def moved() -> bool:
        at = jobs_of(settings, daemon).get("tick")
        return at is not None and datetime.fromisoformat(at) >= target

    wait_for(moved, 30, f"{count} ticks", daemon)


def message_id(data: bytes) -> str:
    return str(email.message_from_bytes(data, policy=email.policy.default)["Message-ID"])


def berlin_minute(moment: datetime) -> datetime:
    return moment.astimezone(BERLIN).replace(second=0, microsecond=0)


# -- 1. SIGTERM / SIGINT while delivering -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("db_url", "signum"),
    [("sqlite", signal.SIGTERM), ("postgres", signal.SIGINT)],
    indirect=["db_url"],
)
def test_a_stop_signal_while_delivering_exits_0_quickly_and_a_restart_sends_nobody_twice(
    site: Site, signum: int
) -> None:
    slow_down(site.smtp, 0.1)
    settings = site.write_config()
    site.write_campaign()
    people = add_subscribers(settings, 60)
    assert queue_edition(settings) == len(people)
    first = site.start()
    wait_for(lambda: len(site.smtp.messages) >= 12, 60, "the first mails", first)
    code, took = first.stop(signum)
    assert code == 0, first.log()
    assert took < 10, f"{signal.Signals(signum).name} took {took:.1f} s"
    print(f"measured: {signal.Signals(signum).name} mid-delivery -> exit 0 in {took:.2f} s")
    assert "stopped" in first.log()
    at_stop = len(site.smtp.messages)
    assert at_stop < len(people), "delivery finished before the signal"
    with engine_for(settings).connect() as conn:  # the batch in flight was finished or handed back
        leased = conn.execute(select(outbox.c.id).where(outbox.c.state == "sending")).all()
    assert leased == []
    second = site.start()
    wait_for(lambda: sent(settings) == len(people), 60, "every mail sent", second)
    assert second.stop()[0] == 0
    counts = received(site.smtp)
    assert set(counts) == people
    assert max(counts.values()) == 1, [a for a, n in counts.items() if n > 1]


# -- 2. SIGKILL mid-delivery ------------------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sigkill_mid_delivery_then_restart_serves_everyone_and_takes_back_the_dead_rows(site: Site) -> None:
    batch = 10
    slow_down(site.smtp, 0.05)
    settings = site.write_config(smtp={"batch_size": batch, "lease": "12s"})
    site.write_campaign()
    people = add_subscribers(settings, 80)
    queue_edition(settings)
    first = site.start()
    wait_for(lambda: len(site.smtp.messages) >= 20, 60, "the first mails", first)
    first.kill()
    dead = f"{HOST}:{first.pid}:"

    def dead_rows() -> list[int]:
        with engine_for(settings).connect() as conn:
            query = select(outbox.c.id).where(
                outbox.c.state == "sending", outbox.c.claimed_by.startswith(dead)
            )
            return [row.id for row in conn.execute(query)]

    assert dead_rows(), "the killed process held no rows"
    assert len(site.smtp.messages) < len(people)
    second = site.start()
    takeover = wait_for(lambda: not dead_rows(), 60, "the dead process's rows taken back", second)
    wait_for(lambda: sent(settings) == len(people), 60, "every mail sent", second)
    assert second.stop()[0] == 0
    ids = collections.defaultdict(list)
    for message in site.smtp.messages:
        ids[message.rcpt_tos[0]].append(message_id(message.data))
    assert set(ids) == people  # everyone served
    twice = {address: got for address, got in ids.items() if len(got) > 1}
    assert len(twice) <= batch  # only the batch in flight at the kill ...
    assert all(len(got) == 2 and got[0] == got[1] for got in twice.values())  # ... with the same Message-ID
    assert takeover < 8, f"the restart took {takeover:.1f} s to take back the dead process's rows"
    print(f"measured: rows of the SIGKILLed run taken back {takeover:.2f} s after the restart began")


# -- 3. a run that fell due while nothing ran ---------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
def test_a_cron_run_missed_while_down_is_made_up_once_and_sent(site: Site) -> None:
    due = berlin_minute(datetime.now(UTC) - timedelta(minutes=20))  # daily; next fire is tomorrow
    cron = f"{due.minute} {due.hour} * * *"
    settings = site.write_config()
    site.write_campaign(schedule=f'schedule: {{cron: "{cron}"}}', approval="auto")
    people = add_subscribers(settings, 5)
    with engine_for(settings).begin() as conn:  # last looked at before the fire time (down since)
        store.set_checked_until(conn, "digest", f"cron: {cron}", due - timedelta(hours=2))
    first = site.start("--log-format", "json")
    wait_for(lambda: set(to_subscribers(site.smtp)) == people, 60, "the made-up edition delivered", first)
    assert first.stop()[0] == 0
    [edition] = editions(settings)
    [run] = schedule.recent_runs(settings)
    assert run.due_at == due and run.state == "queued" and run.edition_id == edition.id
    # 9. JSON lines: every line parses and says when, how bad, who and what; each job logs its outcome
    lines = first.json_log()
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    messages = [line["message"] for line in lines if line["logger"] == "imk_outreach.scheduler"]
    assert any(re.fullmatch(r"gather news: ok: 3 new, 0 updated", m) for m in messages), messages
    assert any(m.startswith("campaign digest: run due at") and "queued" in m for m in messages), messages
    assert any(m.startswith("delivery stopped: sent 5") for m in messages), messages
    # a restart finds nothing more to do
    second = site.start()
    wait_for(lambda: scheduling(settings, second), 60, "the restarted scheduler", second)
    wait_ticks(settings, second, 2)
    assert second.stop()[0] == 0
    assert len(editions(settings)) == 1
    assert sorted(to_subscribers(site.smtp)) == sorted(people)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_missed_at_run_needing_approval_tells_staff_and_waits_for_approve(site: Site) -> None:
    pace = slow_down(site.smtp, 30)  # the staff notice hangs at the mail server ...
    due = berlin_minute(datetime.now(UTC) - timedelta(minutes=3))
    settings = site.write_config(notify=[STAFF], scheduler={"stop_timeout": "3s"})
    site.write_campaign(schedule=f"schedule: {{at: {due.strftime('%Y-%m-%dT%H:%M')}}}", approval="required")
    people = add_subscribers(settings, 4)
    first = site.start()

    def waiting() -> bool:
        runs = schedule.recent_runs(settings)
        return bool(runs) and runs[0].state == "waiting"

    wait_for(waiting, 60, "the composed draft", first)
    code, took = first.stop()  # ... and does not keep the process alive past scheduler.stop_timeout
    assert code == 0 and took < 6, f"exit {code} after {took:.1f} s (scheduler.stop_timeout is 3 s)"
    print(f"measured: SIGTERM while a job hangs on a slow SMTP server -> exit 0 in {took:.2f} s")
    assert site.smtp.messages == []
    pace.seconds = 0
    second = site.start()  # the next start tells staff (the notice was not recorded as sent)
    wait_for(lambda: STAFF in site.smtp.recipients(), 60, "the staff notice", second)
    wait_ticks(settings, second, 2)
    assert to_subscribers(site.smtp) == []  # nothing goes out before approval
    [edition] = editions(settings)
    assert edition.state == "draft"
    approve = site.cli("approve", str(edition.id))
    assert approve.returncode == 0, approve.stderr
    took = wait_for(lambda: set(to_subscribers(site.smtp)) == people, 30, "the approved edition", second)
    assert took < 10, f"the approved edition took {took:.1f} s to go out"
    print(f"measured: approved edition delivered {took:.2f} s after 'approve' returned")
    wait_ticks(settings, second, 2)
    assert second.stop()[0] == 0
    assert len(editions(settings)) == 1  # the restart re-fired the at: job; no second edition came of it
    assert received(site.smtp) == collections.Counter({STAFF: 1, **dict.fromkeys(people, 1)})


# -- 4, 6, 7. one scheduler on SQLite: a second is refused; /healthz; campaign reload ------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_refuses_a_second_run_healthz_tells_and_campaigns_reload(site: Site) -> None:
    settings = site.write_config()
    site.write_campaign(schedule='schedule: {cron: "0 9 1 * *"}', approval="required")
    first = site.start("--log-format", "json", web=True)

    def healthy() -> bool:
        try:
            return first.healthz().status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, 60, "GET /healthz 200", first)
    body = first.healthz().json()
    assert body["scheduler"] == "running" and body["database"] == "ok"
    assert body["scheduler_process"].startswith(f"{HOST}:{first.pid}:")
    wait_for(lambda: "campaign digest" in jobs_of(settings, first), 30, "the campaign's job", first)

    # 4. a second run on the same SQLite database is refused and names the first
    second = site.cli("run", "--no-web")
    assert second.returncode == 1
    [line] = second.stderr.strip().splitlines()
    assert line.startswith("error: another 'imk-outreach run' (pid ") and f"pid {first.pid}," in line, line
    assert first.proc.poll() is None
    beat = first.healthz().json()["heartbeat_at"]
    wait_for(lambda: first.healthz().json()["heartbeat_at"] != beat, 10, "a newer heartbeat", first)

    # 7. a changed file is reloaded and its new schedule scheduled
    def logged(pattern: str) -> Callable[[], bool]:
        return lambda: any(re.search(pattern, line["message"]) for line in first.json_log())

    site.write_campaign(schedule='schedule: {cron: "30 8 * * *"}', approval="required")
    wait_for(logged(r"reloaded"), 15, "the reload logged", first)
    tomorrow_830 = schedule.next_fire_time({"cron": "30 8 * * *"}, BERLIN, datetime.now(UTC))
    assert tomorrow_830 is not None

    def rescheduled() -> bool:
        at = jobs_of(settings, first).get("campaign digest")
        return at is not None and datetime.fromisoformat(at) == tomorrow_830

    wait_for(rescheduled, 15, "the new schedule in the job", first)
    # ... a broken one is reported as file:line:col: key.path: message and its last good version runs on
    site.write_campaign(schedule='schedule: {cron: "30 8 * * *"}', approval="required", extra="bogus: 1\n")
    located = rf"^{re.escape(str(site.campaign_file))}:\d+:\d+: bogus: \S"
    wait_for(logged(located), 15, "the broken file's error logged", first)

    def reported() -> bool:  # a heartbeat after the broken file was read shows its error ...
        process = process_of(settings, first)
        return process is not None and any("bogus" in e for e in process.info.get("campaign_errors", []))

    wait_for(reported, 15, "the error in the heartbeat", first)
    assert rescheduled(), jobs_of(settings, first)  # ... and the campaign's job as it was

    # 6. once stopped, /healthz (asked through another app on the same database) answers 503
    code, took = first.stop()
    assert code == 0 and took < 10
    print(f"measured: SIGTERM with the web app -> exit 0 in {took:.2f} s")
    with TestClient(create_app(settings)) as client:
        answer = client.get("/healthz")
    assert answer.status_code == 503
    assert answer.json()["scheduler"] == "down" and answer.json()["database"] == "ok"


# -- 5. PostgreSQL: a standby takes over ------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_postgres_second_run_waits_as_standby_and_takes_over_after_sigkill(site: Site) -> None:
    settings = site.write_config()
    site.write_campaign(schedule='schedule: {cron: "0 9 1 * *"}', approval="required")
    first = site.start()
    wait_for(lambda: scheduling(settings, first), 60, "the first scheduler", first)
    second = site.start(web=True)

    def standing_by() -> bool:
        process = process_of(settings, second)
        return process is not None and process.role == "standby"

    wait_for(standing_by, 60, "the standby's heartbeat", first, second)
    status = site.cli("status", "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["scheduler"]["state"] == "running"
    assert shown["scheduler"]["process"].startswith(f"{HOST}:{first.pid}:")
    roles = {(p["role"], int(p["name"].split(":")[1])) for p in shown["processes"]}
    assert {("scheduler", first.pid), ("standby", second.pid)} <= roles
    assert [pid for role, pid in roles if role in ("scheduler", "standby")].count(second.pid) == 1

    first.kill()

    def took_over() -> bool:
        try:
            answer = second.healthz()
        except httpx.TransportError:
            return False
        name = answer.json().get("scheduler_process") or ""
        return answer.status_code == 200 and name.startswith(f"{HOST}:{second.pid}:")

    took = wait_for(took_over, 30, "the standby scheduling", second)
    assert took < 8, f"the standby took {took:.1f} s to take over"
    print(f"measured: standby /healthz names itself {took:.2f} s after the first run was SIGKILLed")
    assert "took over scheduling" in second.log()
    wait_for(lambda: "campaign digest" in jobs_of(settings, second), 30, "the campaign's job", second)
    assert second.stop()[0] == 0


# -- 8. an old schema is refused until db upgrade; SIGHUP reloads at once ------------------------------------


def _back_to_0005(url: str) -> None:
    """Take the schema back to revision 0005 with the migrations' own downgrades, as an older release
    would have left the database."""
    from alembic import command

    from imk_outreach.db.engine import _alembic_config

    engine = create_engine(url)
    with engine.begin() as conn:
        command.downgrade(_alembic_config(conn), "0005")
    engine.dispose()


def test_run_refuses_an_old_schema_until_db_upgrade_and_sighup_reloads(site: Site) -> None:
    settings = site.write_config(scheduler={"reload": "1h"})
    site.write_campaign(schedule='schedule: {cron: "0 9 1 * *"}')
    engine_for(settings)  # the current schema ...
    dispose_all()
    _back_to_0005(site.db_url)  # ... taken back one revision
    refused = site.cli("run", "--no-web")
    assert refused.returncode == 1
    [line] = refused.stderr.strip().splitlines()
    assert "schema revision 0005" in line and "run 'imk-outreach db upgrade' first" in line, line
    upgraded = site.cli("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "from revision 0005 to 0011" in upgraded.stdout
    daemon = site.start()
    wait_for(lambda: scheduling(settings, daemon), 60, "the scheduler", daemon)
    site.write_campaign(schedule='schedule: {cron: "30 8 * * *"}')
    os.kill(daemon.pid, signal.SIGHUP)
    took = wait_for(lambda: "reloaded" in daemon.log(), 10, "the reload after SIGHUP", daemon)
    assert took < 3, f"SIGHUP took {took:.1f} s to reload (scheduler.reload is 1h)"
    print(f"measured: SIGHUP -> campaigns reloaded in {took:.2f} s")
    assert daemon.stop()[0] == 0


def test_run_turns_new_items_into_posts_published_once_on_a_file_channel(site: Site) -> None:
    posts = site.root / "posts.jsonl"
    channel = {"name": "feed-de", "type": "file", "rules": "x", "language": "de", "path": str(posts)}
    settings = site.write_config(channels=[channel])
    campaign = {
        "name": "auto-posts",
        "kind": "social",
        "channels": ["feed-de"],
        "trigger": "new_items",
        "select": {"sources": ["news"]},
        "approval": "auto",
    }
    (site.root / "campaigns").mkdir(exist_ok=True)
    (site.root / "campaigns" / "auto-posts.yaml").write_text(yaml.safe_dump(campaign), "utf-8")
    daemon = site.start()

    def published() -> int:
        return len(posts.read_text("utf-8").splitlines()) if posts.exists() else 0

    wait_for(lambda: published() == 3, 60, "three posts of the three new items", daemon)
    wait_ticks(settings, daemon, 2)
    assert daemon.stop()[0] == 0
    lines = [json.loads(line) for line in posts.read_text("utf-8").splitlines()]
    assert sorted(line["text"].split("\n")[0] for line in lines) == ["Meldung 1", "Meldung 2", "Meldung 3"]
    again = site.start()  # a restart posts nothing twice
    wait_ticks(settings, again, 2)
    assert again.stop()[0] == 0
    assert published() == 3
