"""Delivering social posts: claim the next due post, commit ``posting``, call the platform, record the
outcome. The outbox owns the timing: a rate limit or a server error sets the next attempt (the
platform's ``Retry-After`` at least), never a client library's own sleep.

* ``sent``: the platform has it (X's "duplicate content" refusal means it already has it).
* ``retry``: 429, 5xx, no connection; with exponential back-off (``smtp.retry``'s settings), at most
  ``max_attempts`` tries.
* ``unknown``: the request went out and no answer came, on a platform where a second request could
  post twice: a person decides (``outbox resolve``). Where a retry is safe (Mastodon's idempotency key,
  the file channel) it is retried by itself.
* ``failed``: refused for good; a refused credential also pauses the channel until ``channels test``
  passes, while the other channels go on.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.db.posts import PostRow
from imk_outreach.errors import ImkError
from imk_outreach.publishers.base import Outcome, PostResult, PublishError, SocialPublisher
from imk_outreach.services import channels as channel_service
from imk_outreach.services.database import engine_for
from imk_outreach.services.delivery import retry_delay, worker_name
from imk_outreach.services.social_queue import CAP_RESUME

log = logging.getLogger(__name__)

# Types whose publishers make a second request for the same post harmless (an idempotency key, or
# a record key derived from the outbox row): a crash or timeout mid-request is simply retried.
RETRY_SAFE = frozenset({"mastodon", "file", "bluesky"})
_LEASE_EXTRA = timedelta(seconds=60)


@dataclass
class PostReport:
    sent: int = 0
    retry: int = 0
    failed: int = 0
    unknown: int = 0
    deferred: int = 0  # daily cap reached: moved to a later day
    held: int = 0  # not tried: the channel cannot post now (a credential's variable is not set)
    paused: dict[str, str] = field(default_factory=dict)  # channel -> why (paused in this run)
    lines: list[str] = field(default_factory=list)  # what happened, one line per post

    @property
    def handled(self) -> int:
        return self.sent + self.retry + self.failed + self.unknown + self.deferred

    def add(self, other: PostReport) -> None:
        for name in ("sent", "retry", "failed", "unknown", "deferred", "held"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.paused.update(other.paused)
        self.lines += other.lines


def idempotency_key(row: PostRow) -> str:
    """The same for every attempt of one outbox row, different for every row."""
    text = f"imk-outreach:{row.id}:{row.edition_id}:{row.channel}:{row.key}"
    return "imk-" + hashlib.sha256(text.encode()).hexdigest()[:40]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def settle_stale(settings: Settings, now: datetime) -> int:
    """Posts a dead worker left ``posting``: retried where that is safe, else ``unknown`` for a person."""
    with engine_for(settings).begin() as conn:
        rows = store.stale_posting(conn, now)
        for row in rows:
            kind = _channel_type(settings, row.channel)
            if kind in RETRY_SAFE:
                store.settle_post(conn, row.id, "retry", now, reply="the worker stopped during the request")
            else:
                store.settle_post(
                    conn,
                    row.id,
                    "unknown",
                    now,
                    reply="the worker stopped while the post was being sent; check the channel, then "
                    f"'imk-outreach outbox resolve {row.id} sent|retry|failed'",
                )
    return len(rows)


def _channel_type(settings: Settings, name: str) -> str | None:
    try:
        return settings.channel(name).type
    except KeyError:
        return None


class _Run:
    def __init__(self, settings: Settings, worker: str, clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.worker = worker
        self.clock = clock
        self.publishers: dict[str, SocialPublisher] = {}
        self.skip: dict[str, str] = {}  # channel -> why it is skipped in this run
        self.report = PostReport()

    def now(self) -> datetime:
        return self.clock()

    def publisher(self, channel: str) -> SocialPublisher:
        if channel not in self.publishers:
            config = self.settings.channel(channel)
            self.publishers[channel] = channel_service.publisher_for(self.settings, config)
        return self.publishers[channel]

    def close(self) -> None:
        for publisher in self.publishers.values():
            try:
                publisher.close()
            except Exception:  # noqa: BLE001 - closing must not hide the run's result
                log.debug("closing a publisher failed", exc_info=True)

    def claim(self) -> PostRow | None:
        now = self.now()
        lease = now + timedelta(seconds=60) + _LEASE_EXTRA
        with engine_for(self.settings).begin() as conn:
            skip = set(store.paused_channels(conn)) | set(self.skip)
            return store.claim_post(conn, self.worker, now, lease, skip)

    def handle(self, row: PostRow) -> None:
        now = self.now()
        engine = engine_for(self.settings)
        try:
            config = self.settings.channel(row.channel)
        except KeyError:
            with engine.begin() as conn:
                store.settle_post(
                    conn,
                    row.id,
                    "failed",
                    now,
                    worker=self.worker,
                    error=f"channel {row.channel} is no longer in config.yaml",
                )
            self.report.failed += 1
            return
        if not row.forced and config.daily_cap is not None and self._cap_reached(row, config.daily_cap, now):
            later = self._next_day(now)
            cap_reply = f"daily cap of {config.daily_cap} reached; waits until {later:%Y-%m-%d %H:%M} UTC"
            self._give_back(row, now, later, cap_reply)
            self.report.deferred += 1
            self.report.lines.append(f"post {row.id} on {row.channel}: daily cap reached, waits")
            return
        try:
            publisher = self.publisher(row.channel)
        except ImkError as exc:  # a credential's variable is not set: nothing on this channel can go
            self._give_back(row, now, row.next_attempt_at, str(exc))
            self.skip[row.channel] = str(exc)
            self.report.held += 1
            self.report.lines.append(f"{row.channel}: its posts wait: {exc}")
            return
        with engine.begin() as conn:
            if not store.mark_posting(conn, row.id, self.worker, now):
                return  # the lease was lost meanwhile
        try:
            result = publisher.publish(row.post, idempotency_key(row))
        except PublishError as exc:
            result = PostResult(
                Outcome.RETRY if exc.retryable else Outcome.FAILED, exc.message, pause=not exc.retryable
            )
        self.record(row, config.type, result)

    def _give_back(self, row: PostRow, now: datetime, due: datetime, reply: str) -> None:
        """The claimed row waits again, untried (the claim's attempt is taken back), due at ``due``."""
        with engine_for(self.settings).begin() as conn:
            store.settle_post(
                conn,
                row.id,
                "retry" if row.attempts > 1 else "queued",
                now,
                worker=self.worker,
                next_attempt_at=due,
                attempts_back=True,
                reply=reply,
            )

    def _cap_reached(self, row: PostRow, cap: int, now: datetime) -> bool:
        tz = self.settings.tz
        local_day = now.astimezone(tz).date()
        start = datetime.combine(local_day, datetime.min.time(), tz).astimezone(UTC)
        with engine_for(self.settings).connect() as conn:
            return store.sent_between(conn, row.channel, start, start + timedelta(days=1)) >= cap

    def _next_day(self, now: datetime) -> datetime:
        tz = self.settings.tz
        tomorrow = now.astimezone(tz).date() + timedelta(days=1)
        return datetime.combine(tomorrow, CAP_RESUME, tz).astimezone(UTC)

    def record(self, row: PostRow, kind: str, result: PostResult) -> None:
        now = self.now()
        outcome = result.outcome
        if outcome is Outcome.UNKNOWN and kind in RETRY_SAFE:
            outcome = Outcome.RETRY
        max_attempts = self.settings.smtp.retry.max_attempts
        values: dict[str, object] = {"reply": result.reply}
        if outcome is Outcome.SENT:
            state = "sent"
            values.update(remote_id=result.remote_id, remote_url=result.url, error=None)
            self.report.sent += 1
        elif outcome is Outcome.RETRY and row.attempts < max_attempts:
            state = "retry"
            wait = retry_delay(self.settings, row.attempts)
            if result.retry_after is not None:
                wait = max(wait, timedelta(seconds=result.retry_after))
            values.update(next_attempt_at=now + wait, error=result.reply)
            self.report.retry += 1
        elif outcome is Outcome.UNKNOWN:
            state = "unknown"
            values["error"] = (
                f"{result.reply}; the post may exist: check {row.channel}, then "
                f"'imk-outreach outbox resolve {row.id} sent|retry|failed'"
            )
            self.report.unknown += 1
        else:
            state = "failed"
            suffix = f" (gave up after {row.attempts} attempts)" if outcome is Outcome.RETRY else ""
            values["error"] = result.reply + suffix
            self.report.failed += 1
        with engine_for(self.settings).begin() as conn:
            store.settle_post(conn, row.id, state, now, worker=self.worker, **values)  # type: ignore[arg-type]
            if state in ("sent", "failed", "unknown") and not store.has_pending(conn, row.edition_id):
                store.set_edition_state(conn, row.edition_id, "sent")
        self.report.lines.append(f"post {row.id} on {row.channel}: {state}: {result.reply}")
        log.info("post %d on %s: %s: %s", row.id, row.channel, state, result.reply)
        if result.pause:
            channel_service.pause_channel(self.settings, row.channel, result.reply, now)
            self.report.paused[row.channel] = result.reply


def deliver_posts(
    settings: Settings,
    *,
    worker: str | None = None,
    now: datetime | None = None,
    limit: int | None = None,
    stop: threading.Event | None = None,
) -> PostReport:
    """Publish every social post due now (at most ``limit``), channel by channel as they come due.

    :param now: a fixed clock (tests); by default the real one, read before each post.
    """
    if not settings.channels:
        return PostReport()
    run = _Run(settings, worker or worker_name("posts"), (lambda: now) if now is not None else _utc_now)
    settle_stale(settings, run.now())
    try:
        while (limit is None or run.report.handled < limit) and not (stop is not None and stop.is_set()):
            row = run.claim()
            if row is None:
                break
            run.handle(row)
    finally:
        run.close()
    return run.report


class PostingHandle:
    """Social posts published continuously in a background thread (``run`` and ``worker``)."""

    def __init__(self, settings: Settings, poll: float, suffix: str) -> None:
        self.settings = settings
        self.poll = poll
        self.worker = worker_name(suffix)
        self.report = PostReport()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"posts {self.worker}", daemon=True)

    def start(self) -> PostingHandle:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float | None = 10.0) -> bool:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.report.add(deliver_posts(self.settings, worker=self.worker, stop=self._stop))
            except Exception as error:  # noqa: BLE001 - a scheduler's posting must outlive a bad minute
                self.error = error
                log.exception("posting loop %s failed", self.worker)
            self._stop.wait(self.poll)


def start_posting(settings: Settings, *, poll: float = 5.0, suffix: str = "posts") -> PostingHandle:
    """Publish due posts in a background thread every ``poll`` seconds; stop it with ``handle.stop()``."""
    return PostingHandle(settings, poll, suffix).start()
