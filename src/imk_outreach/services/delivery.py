"""Deliver: workers claim outbox rows under a lease, send them over SMTP and record every outcome.

Guarantees (DESIGN.md): every row ends ``sent``, ``failed`` (with the reason), ``cancelled`` (the
recipient left before it went out) or ``unknown``; the Message-ID derives from the row, so a re-send
after a crash carries the same id. A live loop keeps its leases alive (:class:`LeaseKeeper`), so only a
dead worker's rows come back: within ``smtp.lease``, or at once when a process of the same host sees
that the holder is gone. A stop (``stop`` Event) ends claiming, gives the messages in flight
``smtp.stop_grace``, and releases the rest unsent. Confirmation mails (rows without an edition) go the
same way, claimed first; :mod:`~imk_outreach.services.confirm_mail` builds them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import hmac
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import Delivery, ProcessInfo, RenderedEmail, Subscriber
from imk_outreach.publishers.base import Outcome, PublishError, SendResult
from imk_outreach.publishers.smtp_async import Aborted, AsyncSmtpSender
from imk_outreach.render.email import PLACEHOLDERS, greeting
from imk_outreach.render.message import MessageTemplate, format_date
from imk_outreach.services import confirm_mail, tokens
from imk_outreach.services.database import dispose_all, engine_for
from imk_outreach.services.delivery_errors import normalise_error
from imk_outreach.services.leases import LeaseKeeper, loop_process
from imk_outreach.services.mailserver import sender_domain, smtp_options

log = logging.getLogger(__name__)
MIN_CLAIM_PER_CONNECTION = 2  # the smallest claim as a campaign drains, per SMTP session
STOP_CHECK = 0.2  # seconds between looks at the stop Event while a batch is sent
RESTART_DELAY = 30.0  # a background loop that failed starts again after this long


@dataclass
class DeliverReport:
    sent: int = 0
    retry: int = 0
    failed: int = 0
    cancelled: int = 0
    batches: int = 0
    released: int = 0  # given back unsent on a stop (claimable at once, no attempt counted)
    failures: dict[str, int] = field(default_factory=dict)  # rows failed per normalised reason

    def failed_with(self, reason: str) -> None:
        key = normalise_error(reason)
        self.failures[key] = self.failures.get(key, 0) + 1

    def add(self, other: DeliverReport) -> None:
        self.sent += other.sent
        self.retry += other.retry
        self.failed += other.failed
        self.cancelled += other.cancelled
        self.batches += other.batches
        self.released += other.released
        for reason, count in other.failures.items():
            self.failures[reason] = self.failures.get(reason, 0) + count


# (totals so far, rows this run has still to try: due by its horizon or in flight, all workers)
Progress = Callable[[DeliverReport, int], None]
Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


# -- names -----------------------------------------------------------------------------------------

_active: set[str] = set()
_active_lock = threading.Lock()


def worker_name(suffix: str | None = None) -> str:
    """``host:pid:start`` of this process, with ``/suffix`` for one of several loops in it."""
    return loop_process(suffix).name


@contextlib.contextmanager
def _loop_identity(worker: str | None) -> Iterator[ProcessInfo]:
    """The loop's ``processes`` row (role ``worker``): named ``worker`` if given, else
    ``host:pid:start/deliver`` (``/deliver-2`` ... while other loops of this process run), so a loop never
    takes the name, nor the row, of its process (a scheduler's) or of another loop."""
    with _active_lock:
        if worker is None:
            suffixes = ("deliver" if n == 1 else f"deliver-{n}" for n in range(1, 10_000))
            worker = next(name for name in map(worker_name, suffixes) if name not in _active)
        _active.add(worker)
    try:
        suffix = worker.partition("/")[2]
        yield dataclasses.replace(loop_process(), name=worker, info={"loop": suffix} if suffix else {})
    finally:
        with _active_lock:
            _active.discard(worker)


# -- the loop --------------------------------------------------------------------------------------


def deliver(
    settings: Settings,
    until_empty: bool = False,
    worker: str | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    clock: Clock = _utc_now,
    poll: float = 1.0,
) -> DeliverReport:
    """Claim batches, send, mark, until nothing is due (or, with ``until_empty``, until nothing is
    queued, in retry or leased; with ``stop``, until it is set: then the batch in flight gets
    ``smtp.stop_grace`` and what has not gone out is released unsent).

    :param worker: the name rows are claimed under and the loop's ``processes`` row is kept under
        (default: ``host:pid:start/deliver``, see :func:`worker_name`).
    :raises PublishError: the SMTP server refuses the login (nothing can go out; rows go back to the queue).
    """
    engine = engine_for(settings)
    grace = _Grace(stop, settings.smtp.stop_grace.total_seconds())
    with _loop_identity(worker) as process, LeaseKeeper(engine, process, settings.smtp.lease, clock):
        loop = _Loop(settings, engine, process.name, clock, grace)
        sender = AsyncSmtpSender(smtp_options(settings))
        try:
            return loop.run(sender, until_empty, progress, poll)
        except BaseException:
            sender.abort()
            raise
        finally:
            sender.close()
            loop.release_rest()


@dataclass
class _Grace:
    """Whether a stop was asked for, and how long the messages in flight may still take after it."""

    stop: threading.Event | None
    seconds: float
    deadline: float | None = None

    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def remaining(self) -> float | None:
        """Seconds left after a stop; None while no stop was asked for."""
        if not self.stopping():
            return None
        if self.deadline is None:
            self.deadline = time.monotonic() + self.seconds
        return max(0.0, self.deadline - time.monotonic())

    def idle(self, seconds: float) -> None:
        if self.stop is not None:
            self.stop.wait(seconds)
        else:
            time.sleep(seconds)


@dataclass
class _Job:
    delivery: Delivery
    subscriber: Subscriber
    message_id: str
    future: futures.Future[SendResult]


@dataclass
class _InFlight:
    """A claimed batch handed to the SMTP sessions: rows settled without sending, and the sends."""

    batch: list[Delivery]
    report: DeliverReport
    results: list[dict[str, Any]]
    jobs: list[_Job]


class _Loop:
    """One delivery loop: claims the next batch while the previous one is sent, then settles that."""

    def __init__(self, settings: Settings, engine: Engine, worker: str, clock: Clock, grace: _Grace) -> None:
        self.settings, self.engine, self.worker, self.clock, self.grace = (
            settings,
            engine,
            worker,
            clock,
            grace,
        )
        self.secret = tokens.secret_key(settings)
        self.cache: dict[tuple[int, str], MessageTemplate] = {}
        self.total = DeliverReport()

    def run(
        self, sender: AsyncSmtpSender, until_empty: bool, progress: Progress | None, poll: float
    ) -> DeliverReport:
        started = self.clock()
        # A single pass takes only what was due when it started, so a retry is left for later.
        horizon = self.clock if (until_empty or self.grace.stop is not None) else lambda: started
        self._progress(progress, horizon())
        in_flight: _InFlight | None = None  # the batch being sent while the next one is claimed
        while not self.grace.stopping():
            batch = self._claim(horizon())
            submitted = self._submit(sender, batch) if batch else None
            if in_flight is not None:
                self._finish(sender, in_flight, progress, horizon())
            in_flight = submitted
            if in_flight is None and not self._idle(until_empty, poll):
                break
        if in_flight is not None:
            self._finish(sender, in_flight, progress, horizon())
        return self.total

    def _progress(self, progress: Progress | None, due_by: datetime) -> None:
        if progress:
            with self.engine.connect() as conn:
                progress(self.total, store.count_to_attempt(conn, due_by))

    def release_rest(self) -> None:
        """Give back whatever this loop still holds (after a stop or an error: the sender is closed)."""
        try:
            with self.engine.begin() as conn:
                released = store.release_deliveries(conn, self.worker, self.clock())
        except SQLAlchemyError as error:
            log.warning(
                "worker %s: could not release its rows (they come back with the lease): %s",
                self.worker,
                error,
            )
            return
        if released:
            self.total.released += released
            log.info("worker %s: %d rows released unsent", self.worker, released)

    def _claim(self, due_by: datetime) -> list[Delivery]:
        now = self.clock()
        size = self._claim_size(due_by, now)
        with self.engine.begin() as conn:
            return store.claim_batch(conn, self.worker, due_by, now + self.settings.smtp.lease, size)

    def _claim_size(self, due_by: datetime, now: datetime) -> int:
        """``smtp.batch_size`` while plenty is due; as a campaign drains, a share of what is left: each
        live worker holds up to two batches (one sent, the next claimed), so claiming ``due / (2 x
        workers)`` lets all workers finish together instead of one sending the last big batch alone."""
        smtp = self.settings.smtp
        with self.engine.connect() as conn:
            workers = max(1, store.count_live(conn, "worker", now - smtp.lease))
            due = store.count_due(conn, due_by, 2 * workers * smtp.batch_size)
        share = -(-due // (2 * workers))  # rounded up
        return min(smtp.batch_size, max(share, MIN_CLAIM_PER_CONNECTION * smtp.connections))

    def _idle(self, until_empty: bool, poll: float) -> bool:
        """Nothing claimable: wait for the next due row and say True, or say False when done."""
        with self.engine.connect() as conn:
            pending, due = store.pending_deliveries(conn), store.next_due(conn)
        if self.grace.stop is None and (pending == 0 or not until_empty):
            return False
        self.grace.idle(poll if due is None else max(0.05, min(poll, (due - self.clock()).total_seconds())))
        return True

    def _finish(
        self, sender: AsyncSmtpSender, flight: _InFlight, progress: Progress | None, due_by: datetime
    ) -> None:
        _wait(sender, flight, self.grace)
        self.total.add(_settle(self.engine, self.settings, self.worker, flight, self.clock))
        self._progress(progress, due_by)

    def _submit(self, sender: AsyncSmtpSender, batch: list[Delivery]) -> _InFlight:
        """Hand the batch to the SMTP sessions: newsletters from their edition's frozen template,
        confirmation mails (no edition, see :mod:`confirm_mail`) built for the subscriber as they are."""
        settings = self.settings
        with self.engine.connect() as conn:
            recipients = store.subscribers_by_id(
                conn, [d.subscriber_id for d in batch if d.subscriber_id is not None]
            )
            lists = store.edition_lists(conn, list({d.edition_id for d in batch if d.edition_id is not None}))
            templates = _templates(settings, conn, self.cache, batch, lists)
        flight = _InFlight(batch, DeliverReport(batches=1), [], [])
        now = self.clock()
        date = format_date(now)  # once per batch, not per recipient
        for delivery in batch:
            subscriber = (
                recipients.get(delivery.subscriber_id) if delivery.subscriber_id is not None else None
            )
            edition_id = delivery.edition_id
            if edition_id is None:
                reason = confirm_mail.not_due(subscriber)
            else:
                reason = _not_deliverable(subscriber, lists.get(edition_id))
            if reason is not None:
                flight.results.append({"id": delivery.id, "state": "cancelled", "error": reason})
                flight.report.cancelled += 1
                continue
            assert subscriber is not None
            build: Callable[[], bytes]
            if edition_id is None:
                message_id = confirm_mail.message_id(self.secret, settings, delivery)
                build = confirm_mail.builder(settings, self.secret, subscriber, message_id, now)
            else:
                message_id = _message_id(self.secret, settings, delivery)
                template = templates[(edition_id, delivery.language)]
                build = functools.partial(
                    render_for, settings, self.secret, template, subscriber, message_id, date
                )
            future = sender.submit(settings.sender.email, subscriber.email, build)
            flight.jobs.append(_Job(delivery, subscriber, message_id, future))
        return flight


def _wait(sender: AsyncSmtpSender, flight: _InFlight, grace: _Grace) -> None:
    """Wait for the batch's sends; once a stop is asked for, for the grace left, then abort the sender
    (what has not been answered then resolves as cancelled or :class:`Aborted`)."""
    pending = {job.future for job in flight.jobs}
    while pending:
        left = grace.remaining()
        if left == 0:
            sender.abort()
            return
        timeout = STOP_CHECK if (left is None and grace.stop is not None) else left
        _, pending = futures.wait(pending, timeout=timeout)


def _settle(
    engine: Engine, settings: Settings, worker: str, flight: _InFlight, clock: Clock
) -> DeliverReport:
    """Record every outcome of the batch in one transaction; rows not sent (stopped) are released."""
    bounced: list[int] = []
    unsent: list[int] = []
    refused: PublishError | None = None
    for job in flight.jobs:
        outcome = _outcome(job.future)
        if not isinstance(outcome, SendResult):
            unsent.append(job.delivery.id)
            refused = refused or outcome
            continue
        flight.results.append(
            _result(settings, job.delivery, job.message_id, outcome, clock(), flight.report)
        )
        if outcome.bounced and job.subscriber.id is not None:
            bounced.append(job.subscriber.id)
    with engine.begin() as conn:
        store.mark_deliveries(conn, worker, flight.results, clock())
        flight.report.released += store.release_deliveries(conn, worker, clock(), unsent)
        store.mark_bounced(conn, bounced, "permanent delivery failure (5.1.x)", clock())
        _finish_editions(conn, {d.edition_id for d in flight.batch if d.edition_id is not None})
    if refused is not None:
        raise refused
    return flight.report


def _outcome(future: futures.Future[SendResult]) -> SendResult | PublishError | None:
    """The send's result; the PublishError that stops delivery; None when it was stopped unanswered."""
    if future.cancelled() or not future.done():
        return None
    error = future.exception()
    if error is None:
        return future.result()
    if isinstance(error, PublishError):
        return error
    if isinstance(error, Aborted):
        return None
    raise error


def _result(
    settings: Settings,
    delivery: Delivery,
    message_id: str,
    outcome: SendResult,
    now: datetime,
    report: DeliverReport,
) -> dict[str, Any]:
    row: dict[str, Any] = {"id": delivery.id, "message_id": message_id, "reply": outcome.reply}
    if outcome.outcome == Outcome.SENT:
        report.sent += 1
        return {**row, "state": "sent"}
    if outcome.outcome == Outcome.RETRY and delivery.attempts < settings.smtp.retry.max_attempts:
        report.retry += 1
        return {
            **row,
            "state": "retry",
            "error": outcome.reply,
            "next_attempt_at": now + _backoff(settings, delivery),
        }
    report.failed += 1
    reason = (
        outcome.reply
        if outcome.outcome == Outcome.FAILED
        else f"gave up after {delivery.attempts} attempts: {outcome.reply}"
    )
    report.failed_with(reason)
    return {**row, "state": "failed", "error": reason}


def _backoff(settings: Settings, delivery: Delivery) -> timedelta:
    return retry_delay(settings, delivery.attempts)


def retry_delay(settings: Settings, attempts: int) -> timedelta:
    """The wait before the next try after ``attempts`` tries: exponential from ``smtp.retry``'s base,
    capped at its maximum (mail and social posts alike)."""
    retry = settings.smtp.retry
    delay: timedelta = retry.base_delay * (2 ** max(0, attempts - 1))
    return min(delay, retry.max_delay)


def _not_deliverable(subscriber: Subscriber | None, list_name: str | None) -> str | None:
    """Why a queued row must not go out now (the recipient left, was erased or bounced)."""
    if subscriber is None:
        return "recipient erased before sending"
    if subscriber.status != "confirmed":
        return f"recipient {subscriber.status} before sending"
    if list_name is not None and list_name not in subscriber.lists:
        return f"recipient left the list {list_name} before sending"
    return None


def _finish_editions(conn: Any, edition_ids: set[int]) -> None:
    for edition_id in edition_ids:
        if not store.has_pending(conn, edition_id):
            store.set_edition_state(conn, edition_id, "sent")


# -- messages --------------------------------------------------------------------------------------


def _templates(
    settings: Settings,
    conn: Any,
    cache: dict[tuple[int, str], MessageTemplate],
    batch: list[Delivery],
    lists: dict[int, str],
) -> dict[tuple[int, str], MessageTemplate]:
    """The MIME structure per (edition, language), built once per worker process (confirmation mails,
    without an edition, have none)."""
    for delivery in batch:
        if delivery.edition_id is None:
            continue
        key = (delivery.edition_id, delivery.language)
        if key not in cache:
            messages = store.get_edition_messages(conn, delivery.edition_id)
            message = messages.get(delivery.language) or next(iter(messages.values()))
            cache[key] = message_template(settings, lists.get(delivery.edition_id, "newsletter"), message)
    return cache


def message_template(settings: Settings, list_name: str, message: RenderedEmail) -> MessageTemplate:
    """The MIME structure of one rendered message, for every recipient on ``list_name``."""
    label = settings.lists.get(list_name, {}).get(message.language, list_name)
    return MessageTemplate.from_rendered(
        message,
        from_name=settings.sender.name,
        from_email=settings.sender.email,
        reply_to=settings.sender.reply_to,
        list_id=f"{list_name}.{sender_domain(settings)}",
        list_name=label,
        placeholders=PLACEHOLDERS,
    )


def _message_id(secret: str, settings: Settings, delivery: Delivery) -> str:
    """Derived from the outbox row alone, so a re-send after a crash carries the same id."""
    tag = hmac.new(
        secret.encode(), f"{delivery.edition_id}:{delivery.id}".encode(), hashlib.sha256
    ).hexdigest()
    return f"<imk.{delivery.edition_id}.{delivery.id}.{tag[:16]}@{sender_domain(settings)}>"


def render_for(
    settings: Settings,
    secret: str,
    template: MessageTemplate,
    subscriber: Subscriber,
    message_id: str,
    date: str,
) -> bytes:
    """One recipient's message: greeting, signed unsubscribe and preference links, headers."""
    unsubscribe = tokens.unsubscribe_url(settings, secret, subscriber)
    values = {
        "greeting": greeting(template.language, subscriber.name or None),
        "unsubscribe_url": unsubscribe,
        "preferences_url": tokens.preferences_url(settings, secret, subscriber),
        "email": subscriber.email,
    }
    return template.render(
        to_email=subscriber.email,
        to_name=subscriber.name,
        message_id=message_id,
        date=date,
        values=values,
        unsubscribe_url=unsubscribe,
        unsubscribe_mailto=settings.unsubscribe_mailto,
    )


# -- more than one loop ----------------------------------------------------------------------------


def deliver_parallel(
    settings: Settings, processes: int, until_empty: bool = False, progress: Progress | None = None
) -> DeliverReport:
    """:func:`deliver` in ``processes`` OS processes that share ``smtp.connections`` between them.

    Python runs one thread at a time per process, so building messages and speaking SMTP in one process
    tops out at one core; the extra processes are ordinary workers coordinated by the database (leases,
    SKIP LOCKED), as separate ``worker`` processes would be. The report adds up all processes.
    """
    if processes <= 1:
        return deliver(settings, until_empty=until_empty, progress=progress)
    per_process = max(1, settings.smtp.connections // processes)
    local = settings.model_copy(
        update={"smtp": settings.smtp.model_copy(update={"connections": per_process})}
    )
    dispose_all()  # no pooled connection may cross into a child
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes - 1) as pool:
        children = [pool.apply_async(_deliver_child, (local, until_empty)) for _ in range(processes - 1)]
        report = deliver(local, until_empty=until_empty, progress=progress)
        for child in children:
            report.add(child.get())
    return report


def _deliver_child(settings: Settings, until_empty: bool) -> DeliverReport:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return deliver(settings, until_empty=until_empty)


class DeliveryHandle:
    """A delivery loop running in a background thread (see :func:`start_delivery`)."""

    def __init__(self, settings: Settings, worker: str, poll: float) -> None:
        self.worker = worker
        self.report = DeliverReport()
        self.error: BaseException | None = None  # the last failure (the loop started again after it)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(settings, poll), name=f"deliver {worker}", daemon=True
        )

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> DeliveryHandle:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 10.0) -> bool:
        """Ask the loop to stop (batch in flight: ``smtp.stop_grace``, the rest released) and wait up
        to ``timeout`` seconds. :returns: True when it has stopped."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self, settings: Settings, poll: float) -> None:
        while not self._stop.is_set():
            try:
                self.report.add(deliver(settings, worker=self.worker, stop=self._stop, poll=poll))
            except Exception as error:  # noqa: BLE001 - a scheduler's delivery must outlive a bad minute
                self.error = error
                log.exception("delivery loop %s failed; starting again in %.0f s", self.worker, RESTART_DELAY)
                self._stop.wait(RESTART_DELAY)


def start_delivery(settings: Settings, *, poll: float = 1.0, suffix: str = "background") -> DeliveryHandle:
    """Deliver continuously in a background thread of this process (the scheduler's own worker), with
    the heartbeat, under the name ``host:pid:start/suffix`` (role ``worker`` in ``processes``).

    A failure (database away, login refused) is logged and the loop starts again after
    ``RESTART_DELAY`` seconds. Stop it with ``handle.stop(timeout)`` before the process exits.
    """
    return DeliveryHandle(settings, worker_name(suffix), poll).start()
