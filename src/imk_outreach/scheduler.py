"""``run``: APScheduler 3 jobs -> services, in one process with delivery and the web app.

A thin shell: what is due, late or held is decided and stored by :mod:`services.schedule`; this module
only wakes it. Jobs live in APScheduler's ``SQLAlchemyJobStore`` in the project's database (table
``scheduler_jobs``): gather each source at its ``every``, check each campaign at its cron or ``at``
time, and a tick (``scheduler.tick``) that makes up missed runs, sends approved editions and holds late
ones. Delivery runs continuously in its own thread; the web app (if given) in another.

Only the process holding the scheduler lock schedules (``services.leadership``); on PostgreSQL a second
``run`` waits as a standby and takes over when the first one's lock goes away.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from imk_outreach.config import Settings
from imk_outreach.errors import ImkError
from imk_outreach.models import Campaign, ProcessInfo
from imk_outreach.services import (
    catalog,
    dispatch,
    ingest,
    leadership,
    liveness,
    processes,
    schedule,
    social_queue,
)
from imk_outreach.services.campaign_book import CampaignBook
from imk_outreach.services.database import engine_for, require_current_schema

log = logging.getLogger(__name__)

JOB_TABLE = "scheduler_jobs"
Clock = Callable[[], datetime]


class WebServer(Protocol):
    """What ``run`` needs of the web app server (uvicorn's Server has both)."""

    should_exit: bool

    def run(self) -> None: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


# Job functions are module-level (the job store keeps textual references); they reach the runner here.
_runner: Runner | None = None


def gather_job(source: str) -> None:
    runner = _runner
    if runner is not None:
        with runner.job():
            runner.gather(source)


def campaign_job(name: str) -> None:
    runner = _runner
    if runner is not None:
        with runner.job():
            runner.campaign_due(name)


def tick_job() -> None:
    runner = _runner
    if runner is not None:
        with runner.job():
            runner.tick()


@dataclass
class Runner:
    """The ``run`` process. :meth:`run` blocks until :meth:`stop` (SIGTERM/SIGINT) and returns 0."""

    settings: Settings
    web: WebServer | None = None
    clock: Clock = _utc_now
    stopping: threading.Event = field(default_factory=threading.Event)
    reload_now: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.book = CampaignBook(self.settings)
        self.me: ProcessInfo = liveness.this_process("standby")
        self.scheduler: BackgroundScheduler | None = None
        self.lead: leadership.Leadership | None = None
        self.delivery: dispatch.DeliveryHandle | None = None
        self.posting: dispatch.PostingHandle | None = None
        self.last: dict[str, str] = {}  # job -> last outcome, shown by status
        # Sources due when the process starts are gathered before campaigns are first checked, so a run
        # made up after downtime composes from today's news, not from what was stored before it.
        self.first_gathers: set[str] = set()
        self.gathered = threading.Event()
        # Campaign jobs and the tick run in the scheduler's thread pool; one at a time, or a run recorded
        # by a campaign job and still composing would be handled (composed) a second time by the tick.
        self.campaign_work = threading.Lock()
        self.running_jobs = 0
        self.jobs_done = threading.Condition()
        self.abandoned = False  # a job outlived stop_timeout: the caller must end the process at once
        self.lock_lost = False

    # -- life cycle ----------------------------------------------------------------------------------

    def install_signals(self) -> None:
        def stop(signum: int, _frame: FrameType | None) -> None:
            log.info(
                "%s received: stopping (in-flight work finishes or is released)", signal.Signals(signum).name
            )
            self.stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, lambda *_: self.reload_now.set())

    def run(self) -> int:
        """Take the lead (or wait as a standby), schedule and deliver until stopped.

        :raises SchedulerBusy: SQLite, and another ``run`` schedules already.
        :raises SchemaOutdated: the database needs ``db upgrade``.
        """
        global _runner
        if require_current_schema(self.settings):
            log.warning("created a new, empty database")
        self.lead = self._wait_for_lead()
        if self.lead is None:
            processes.forget(self.settings, self.me)
            return 0
        _runner = self
        self.me = liveness.this_process("scheduler")
        try:
            self._serve()
        finally:
            _runner = None
            self._shutdown()
        return 1 if self.lock_lost else 0  # 1: a supervisor (systemd Restart=on-failure) starts it again

    @contextmanager
    def job(self) -> Iterator[None]:
        """Count a job running in the scheduler's thread pool, so a stop can wait for it (or give up)."""
        with self.jobs_done:
            self.running_jobs += 1
        try:
            yield
        finally:
            with self.jobs_done:
                self.running_jobs -= 1
                self.jobs_done.notify_all()

    def _wait_for_lead(self) -> leadership.Leadership | None:
        lead = leadership.try_lead(self.settings, self.me.name)
        if lead is not None or self.stopping.is_set():
            return lead
        log.warning("another run schedules this database; waiting as a standby to take over")
        while not self.stopping.wait(self.settings.scheduler.standby_poll.total_seconds()):
            processes.beat(self.settings, self.me, self.clock(), "standby")
            lead = leadership.try_lead(self.settings, self.me.name)
            if lead is not None:
                log.warning("took over scheduling")
                return lead
        return None

    def _serve(self) -> None:
        self.book.refresh(force=True)
        self._beat()
        self.delivery = dispatch.start_delivery(self.settings, suffix="scheduler")
        if self.settings.channels:
            self.posting = dispatch.start_posting(self.settings, suffix="scheduler-posts")
        threads = []
        if self.web is not None:
            threads.append(threading.Thread(target=self.web.run, name="web", daemon=True))
        for thread in threads:
            thread.start()
        self._threads = threads
        self.scheduler = self._start_scheduler()
        log.info(
            "scheduling %d sources and %d campaigns", len(self.settings.sources), len(self.book.campaigns)
        )
        beat = self.settings.scheduler.heartbeat.total_seconds()
        reload_every = self.settings.scheduler.reload.total_seconds()
        waited = 0.0
        while not self.stopping.wait(min(beat, reload_every)):
            waited += min(beat, reload_every)
            if self.lead is not None and not self.lead.alive():
                log.error("lost the scheduler lock (database connection gone); stopping")
                self.lock_lost = True
                break
            if self.reload_now.is_set() or waited >= reload_every:
                self.reload_now.clear()
                waited = 0.0
                if self.book.refresh():
                    self._sync_campaign_jobs()
            self._beat()

    def _shutdown(self) -> None:
        """Stop claiming and scheduling, let delivery finish or release its batch, exit in seconds."""
        self.stopping.set()
        processes.beat(self.settings, self.me, self.clock(), "stopping", self._info())
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        if self.web is not None:
            self.web.should_exit = True
        timeout = self.settings.scheduler.stop_timeout.total_seconds()
        deadline = time.monotonic() + timeout  # one deadline for everything, not one per thread
        if self.delivery is not None:
            self._stop_delivery(self.delivery, max(0.0, deadline - time.monotonic()))
        if self.posting is not None and not self.posting.stop(max(0.0, deadline - time.monotonic())):
            log.warning("posting did not stop within %.0f s; leaving it", timeout)
        for thread in getattr(self, "_threads", []):
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("%s did not stop within %.0f s; leaving it", thread.name, timeout)
        with self.jobs_done:
            idle = self.jobs_done.wait_for(
                lambda: self.running_jobs == 0, max(0.0, deadline - time.monotonic())
            )
        processes.forget(self.settings, self.me)
        if not idle:
            # A job (a compose, a staff notice to a slow server) would keep the process alive and at
            # work after the lock is gone; the process ends instead, as after a crash, and keeps the
            # lock until then. What the job did not finish, the next scheduler's tick picks up.
            log.warning(
                "%d job(s) did not finish within %.0f s; ending without them", self.running_jobs, timeout
            )
            self.abandoned = True
        elif self.lead is not None:
            self.lead.release()
        log.info("stopped")

    def _stop_delivery(self, delivery: dispatch.DeliveryHandle, timeout: float) -> None:
        """Stop claiming; the batch in flight gets ``smtp.stop_grace``, the rest is released."""
        if delivery.stop(timeout):
            report = delivery.report
            log.info(
                "delivery stopped: sent %d, retry %d, failed %d, released unsent %d",
                report.sent,
                report.retry,
                report.failed,
                report.released,
            )
        else:
            log.warning("delivery did not stop within %.0f s; leaving it", timeout)

    # -- jobs --------------------------------------------------------------------------------------

    def _start_scheduler(self) -> BackgroundScheduler:
        store = SQLAlchemyJobStore(engine=engine_for(self.settings), tablename=JOB_TABLE)
        scheduler = BackgroundScheduler(
            jobstores={"default": store},
            timezone=self.settings.tz,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        scheduler.start(paused=True)
        self._sync_source_jobs(scheduler)
        self._sync_campaign_jobs(scheduler)
        if not self.first_gathers:
            self.gathered.set()
        tick = IntervalTrigger(
            seconds=self.settings.scheduler.tick.total_seconds(), timezone=self.settings.tz
        )
        scheduler.add_job(
            tick_job, tick, id="tick", name="tick", replace_existing=True, next_run_time=self.clock()
        )
        scheduler.resume()
        return scheduler

    def _sync_source_jobs(self, scheduler: BackgroundScheduler) -> None:
        wanted = {f"gather:{s.name}" for s in self.settings.sources}
        _drop_jobs(scheduler, "gather:", wanted)
        health = {s.name: s.health for s in catalog.source_statuses(self.settings)}
        now = self.clock()
        for source in self.settings.sources:
            last = health.get(source.name)
            first = last.last_run_at + source.every if last and last.last_run_at else now
            if first <= now:
                self.first_gathers.add(source.name)
            trigger = IntervalTrigger(seconds=source.every.total_seconds(), timezone=self.settings.tz)
            scheduler.add_job(
                gather_job,
                trigger,
                args=[source.name],
                id=f"gather:{source.name}",
                name=f"gather {source.name}",
                replace_existing=True,
                next_run_time=max(first, now),
            )

    def _sync_campaign_jobs(self, scheduler: BackgroundScheduler | None = None) -> None:
        scheduler = scheduler or self.scheduler
        if scheduler is None:
            return
        campaigns = [c for c in self.book.all() if c.schedule]
        _drop_jobs(scheduler, "campaign:", {f"campaign:{c.name}" for c in campaigns})
        for campaign in campaigns:
            trigger = _trigger(campaign, self.settings)
            job_id = f"campaign:{campaign.name}"
            existing = scheduler.get_job(job_id)
            if existing is not None and str(existing.trigger) == str(trigger):
                continue  # unchanged: keep its stored next run time
            if trigger is None:
                continue
            scheduler.add_job(
                campaign_job,
                trigger,
                args=[campaign.name],
                id=job_id,
                name=f"campaign {campaign.name}",
                replace_existing=True,
            )
        # a made-up run that fell due while the files were being edited is found by the next tick

    # -- what the jobs do --------------------------------------------------------------------------

    def gather(self, source: str) -> None:
        try:
            self._gather(source)
        finally:
            self.first_gathers.discard(source)
            if not self.first_gathers:
                self.gathered.set()

    def _gather(self, source: str) -> None:
        try:
            result = ingest.gather(self.settings, [source])
        except ImkError as exc:
            self.last[f"gather {source}"] = f"error: {exc}"
            log.error("gather %s: %s", source, exc)
            return
        for report in result.reports:
            outcome = f"{report.status}: {report.new} new, {report.updated} updated"
            if report.error:
                outcome += f" ({report.error})"
            self.last[f"gather {report.name}"] = outcome
            level = logging.WARNING if report.status == "error" else logging.INFO
            log.log(level, "gather %s: %s", report.name, outcome)
        if any(report.new for report in result.reports):
            with self.campaign_work:
                for posted in social_queue.post_new_items(self.settings, self.book.all(), self.clock()):
                    self.last[f"campaign {posted.campaign}"] = posted.error or (
                        f"{posted.queued} posts queued"
                        if posted.waiting is None
                        else f"a draft of {posted.waiting} items waits for approval"
                    )

    def campaign_due(self, name: str) -> None:
        campaign = self.book.campaigns.get(name)
        self.gathered.wait(self.settings.gather.timeout * 3)
        if campaign is not None:
            with self.campaign_work:
                self._check(campaign)

    def tick(self) -> None:
        """Make up runs that fell due unseen (downtime, a job missed), then move waiting runs on."""
        self.gathered.wait(self.settings.gather.timeout * 3)
        with self.campaign_work:
            for campaign in self.book.all():
                self._check(campaign)
            for run in schedule.advance_all(self.settings, self.book.all(), self.clock()):
                self.last[f"campaign {run.campaign}"] = f"{run.state}: {run.note or ''}".strip(": ")

    def _check(self, campaign: Campaign) -> None:
        try:
            run = schedule.check_due(self.settings, campaign, self.clock())
        except ImkError as exc:
            self.last[f"campaign {campaign.name}"] = f"error: {exc}"
            log.error("campaign %s: %s", campaign.name, exc)
            return
        if run is not None:
            self.last[f"campaign {campaign.name}"] = f"{run.state}: {run.note or ''}".strip(": ")
            log.info(
                "campaign %s: run due at %s is %s %s",
                campaign.name,
                run.due_at.isoformat(),
                run.state,
                run.note or "",
            )

    # -- heartbeat -----------------------------------------------------------------------------------

    def _info(self) -> dict[str, Any]:
        jobs = []
        if self.scheduler is not None and self.scheduler.running:
            for job in self.scheduler.get_jobs():
                at = job.next_run_time.astimezone(UTC).isoformat() if job.next_run_time else None
                jobs.append({"job": job.name, "next_run": at})
        if self.delivery is not None and self.delivery.error is not None:
            self.last["deliver"] = f"error: {self.delivery.error}"
        return {"jobs": jobs, "last": dict(self.last), "campaign_errors": [str(e) for e in self.book.errors]}

    def _beat(self) -> None:
        try:
            processes.beat(self.settings, self.me, self.clock(), "running", self._info())
        except Exception as exc:  # noqa: BLE001 - a database hiccup must not end the daemon; /healthz shows it
            log.error("heartbeat: %s", exc)


class WallClockCron(BaseTrigger):  # type: ignore[misc]
    """A campaign's cron as wall-clock times (``services.schedule.next_fire_time``): a time that does
    not exist or exists twice in a daylight-saving night fires once. Picklable for the job store."""

    def __init__(self, expression: str, timezone: str) -> None:
        self.expression, self.timezone = expression, timezone

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        after = max(previous_fire_time, now - timedelta(microseconds=1)) if previous_fire_time else now
        found = schedule.next_fire_time({"cron": self.expression}, ZoneInfo(self.timezone), after)
        return found.astimezone(ZoneInfo(self.timezone)) if found is not None else None

    def __str__(self) -> str:
        return f"cron[{self.expression} {self.timezone}]"

    def __getstate__(self) -> dict[str, str]:
        return {"expression": self.expression, "timezone": self.timezone}

    def __setstate__(self, state: dict[str, str]) -> None:
        self.expression, self.timezone = state["expression"], state["timezone"]


def _trigger(campaign: Campaign, settings: Settings) -> WallClockCron | DateTrigger | None:
    if "cron" in campaign.schedule:
        return WallClockCron(campaign.schedule["cron"], settings.timezone)
    if "at" in campaign.schedule:
        return DateTrigger(
            run_date=schedule.at_time(campaign.schedule["at"], settings.tz), timezone=settings.tz
        )
    return None


def _drop_jobs(scheduler: BackgroundScheduler, prefix: str, wanted: set[str]) -> None:
    for job in scheduler.get_jobs():
        if job.id.startswith(prefix) and job.id not in wanted:
            job.remove()
