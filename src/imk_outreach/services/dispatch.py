"""Enqueue and deliver: an approved edition becomes outbox rows, and workers send them over SMTP.

Guarantees (DESIGN.md): every row ends ``sent``, ``failed`` (with the reason), ``cancelled`` (the
recipient left before it went out) or ``unknown``; a crashed worker's rows come back when its lease
runs out; the Message-ID derives from the row, so a re-send after a crash carries the same id.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.errors import ImkError
from imk_outreach.models import Delivery, Edition, RenderedEmail, Subscriber
from imk_outreach.publishers.base import Outcome, SendResult
from imk_outreach.publishers.smtp import SmtpSender
from imk_outreach.publishers.smtp_async import AsyncSmtpSender
from imk_outreach.render.email import PLACEHOLDERS, greeting
from imk_outreach.render.message import MessageTemplate, format_date
from imk_outreach.services import tokens
from imk_outreach.services.compose import EditionError, compose
from imk_outreach.services.database import dispose_all, engine_for
from imk_outreach.services.mailserver import sender_domain, smtp_options
from imk_outreach.services.rendering import content_hash, render_all

log = logging.getLogger(__name__)
CHANNEL = "email"


# -- enqueue ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendReport:
    edition: Edition
    queued: int
    already_queued: bool = False


def send(settings: Settings, campaign_name: str, now: datetime | None = None) -> SendReport:
    """Compose the campaign now (or take its approved edition) and queue it for every confirmed
    subscriber of its list. Queueing twice, or from two processes at once, adds nothing.

    :raises EditionError: the edition waits for approval, or its approval is void.
    """
    now = now or datetime.now(UTC)
    result = compose(settings, campaign_name, now)
    if result.edition is None:
        raise EditionError(f"campaign {campaign_name}: nothing to send: {result.skipped}")
    edition = result.edition
    if edition.state == "draft" or (edition.state == "held" and edition.approved_hash is None):
        raise EditionError(
            f"edition {edition.id} of {campaign_name} waits for approval: check it with "
            f"'imk-outreach preview {campaign_name}', then run 'imk-outreach approve {edition.id}'"
        )
    rendered = render_all(settings, result.campaign, edition, edition.date)
    if content_hash(rendered) != edition.approved_hash:
        raise EditionError(
            f"the approval of edition {edition.id} is void: its content changed after approval; "
            f"preview it again and run 'imk-outreach approve {edition.id}'"
        )
    with engine_for(settings).begin() as conn:
        if store.lock_edition(conn, edition.id) not in ("approved", "held"):  # another send was quicker
            return SendReport(edition, 0, already_queued=True)
        store.save_edition_messages(conn, edition.id, list(rendered.values()))
        queued = store.enqueue_edition(
            conn, edition.id, result.campaign.list, result.campaign.languages, CHANNEL, now
        )
        store.set_edition_state(conn, edition.id, "queued", list_name=result.campaign.list)
    log.info("edition %d of %s: %d messages queued", edition.id, campaign_name, queued)
    return SendReport(edition, queued)


def send_test(
    settings: Settings, campaign_name: str, to_email: str, now: datetime | None = None
) -> list[str]:
    """Send one copy per language to ``to_email`` now, outside the outbox (no approval needed).

    :returns: the subjects sent.
    """
    now = now or datetime.now(UTC)
    result = compose(settings, campaign_name, now, keep_short=True)
    assert result.edition is not None
    rendered = render_all(settings, result.campaign, result.edition, result.edition.date)
    secret = tokens.secret_key(settings)
    subjects = []
    with SmtpSender(smtp_options(settings)) as sender:
        for language, message in rendered.items():
            test_message = RenderedEmail(
                language,
                f"[Test] {message.subject}",
                message.preheader,
                message.html,
                message.text,
                message.fallbacks,
            )
            template = _template(settings, result.campaign.list, test_message)
            fake = Subscriber(email=to_email, language=language, name="", status="confirmed", id=0)
            data = _render_for(
                settings,
                secret,
                template,
                fake,
                f"<imk.test.{result.edition.id}.{language}.{int(now.timestamp())}@{sender_domain(settings)}>",
                format_date(now),
            )
            outcome = sender.send(settings.sender.email, to_email, data)
            if outcome.outcome != Outcome.SENT:
                raise EditionError(f"test mail to {to_email} ({language}) not accepted: {outcome.reply}")
            subjects.append(test_message.subject)
    return subjects


# -- deliver ---------------------------------------------------------------------------------------


@dataclass
class DeliverReport:
    sent: int = 0
    retry: int = 0
    failed: int = 0
    cancelled: int = 0
    batches: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: DeliverReport) -> None:
        self.sent += other.sent
        self.retry += other.retry
        self.failed += other.failed
        self.cancelled += other.cancelled
        self.batches += other.batches


Progress = Callable[[DeliverReport, int], None]  # (totals so far, rows still pending)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 10_000}"


def deliver(
    settings: Settings,
    until_empty: bool = False,
    worker: str | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    poll: float = 1.0,
) -> DeliverReport:
    """Claim batches, send, mark, until nothing is due (or, with ``until_empty``, until nothing is
    queued, in retry or leased; with ``stop`` set from outside, until told to stop).

    :raises PublishError: the SMTP server refuses the login (nothing can go out; rows stay queued).
    """
    worker = worker or worker_name()
    total = DeliverReport()
    engine = engine_for(settings)
    secret = tokens.secret_key(settings)
    cache: dict[tuple[int, str], MessageTemplate] = {}
    with AsyncSmtpSender(smtp_options(settings)) as sender:
        started = clock()
        in_flight: _InFlight | None = None  # the batch being sent while the next one is claimed
        while stop is None or not stop.is_set():
            now = clock()
            # A single pass takes only what was due when it started, so a retry is left for later.
            due_by = now if (until_empty or stop is not None) else started
            with engine.begin() as conn:
                batch = store.claim_batch(
                    conn, worker, due_by, now + settings.smtp.lease, settings.smtp.batch_size
                )
            submitted = (
                _submit_batch(settings, engine, sender, cache, secret, batch, clock) if batch else None
            )
            if in_flight is not None:
                total.add(_settle(engine, settings, worker, in_flight, clock))
                _report_progress(engine, total, progress)
            in_flight = submitted
            if in_flight is not None:
                continue
            with engine.connect() as conn:
                pending, due = store.pending_deliveries(conn), store.next_due(conn)
            if pending == 0 and stop is None:
                break
            if not until_empty and stop is None:
                break
            wait = poll if due is None else max(0.05, min(poll, (due - clock()).total_seconds()))
            if stop is not None:
                stop.wait(wait)
            else:
                time.sleep(wait)
        if in_flight is not None:
            total.add(_settle(engine, settings, worker, in_flight, clock))
    return total


def _report_progress(engine: Any, total: DeliverReport, progress: Progress | None) -> None:
    if progress:
        with engine.connect() as conn:
            progress(total, store.pending_deliveries(conn))


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


@dataclass
class _InFlight:
    """A claimed batch handed to the SMTP sessions: rows settled without sending, and the sends."""

    batch: list[Delivery]
    report: DeliverReport
    results: list[dict[str, Any]]
    jobs: list[tuple[Delivery, Subscriber, str, Future[SendResult]]]


def _submit_batch(
    settings: Settings,
    engine: Any,
    sender: AsyncSmtpSender,
    cache: dict[tuple[int, str], MessageTemplate],
    secret: str,
    batch: list[Delivery],
    clock: Callable[[], datetime],
) -> _InFlight:
    now = clock()
    with engine.connect() as conn:
        recipients = store.subscribers_by_id(
            conn, [d.subscriber_id for d in batch if d.subscriber_id is not None]
        )
        lists = store.edition_lists(conn, list({d.edition_id for d in batch}))
        templates = _templates(settings, conn, cache, batch, lists)
    flight = _InFlight(batch, DeliverReport(batches=1), [], [])
    date = format_date(now)  # once per batch, not per recipient
    for delivery in batch:
        subscriber = recipients.get(delivery.subscriber_id) if delivery.subscriber_id is not None else None
        reason = _not_deliverable(subscriber, lists.get(delivery.edition_id))
        if reason is not None:
            flight.results.append({"id": delivery.id, "state": "cancelled", "error": reason})
            flight.report.cancelled += 1
            continue
        assert subscriber is not None
        message_id = _message_id(secret, settings, delivery)
        template = templates[(delivery.edition_id, delivery.language)]
        build = functools.partial(_render_for, settings, secret, template, subscriber, message_id, date)
        future = sender.submit(settings.sender.email, subscriber.email, build)  # built on the SMTP thread
        flight.jobs.append((delivery, subscriber, message_id, future))
    return flight


def _settle(
    engine: Any, settings: Settings, worker: str, flight: _InFlight, clock: Callable[[], datetime]
) -> DeliverReport:
    """Wait for the batch's sends and record every outcome in one transaction."""
    bounced: list[int] = []
    for delivery, subscriber, message_id, future in flight.jobs:
        outcome = future.result()
        flight.results.append(_result(settings, delivery, message_id, outcome, clock(), flight.report))
        if outcome.bounced and subscriber.id is not None:
            bounced.append(subscriber.id)
    with engine.begin() as conn:
        store.mark_deliveries(conn, worker, flight.results, clock())
        store.mark_bounced(conn, bounced, "permanent delivery failure (5.1.x)", clock())
        _finish_editions(conn, {d.edition_id for d in flight.batch})
    return flight.report


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
    return {**row, "state": "failed", "error": reason}


def _backoff(settings: Settings, delivery: Delivery) -> timedelta:
    retry = settings.smtp.retry
    delay: timedelta = retry.base_delay * (2 ** max(0, delivery.attempts - 1))
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


def _templates(
    settings: Settings,
    conn: Any,
    cache: dict[tuple[int, str], MessageTemplate],
    batch: list[Delivery],
    lists: dict[int, str],
) -> dict[tuple[int, str], MessageTemplate]:
    """The MIME structure per (edition, language), built once per worker process."""
    for delivery in batch:
        key = (delivery.edition_id, delivery.language)
        if key not in cache:
            messages = store.get_edition_messages(conn, delivery.edition_id)
            message = messages.get(delivery.language) or next(iter(messages.values()))
            cache[key] = _template(settings, lists.get(delivery.edition_id, "newsletter"), message)
    return cache


def _template(settings: Settings, list_name: str, message: RenderedEmail) -> MessageTemplate:
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


def _render_for(
    settings: Settings,
    secret: str,
    template: MessageTemplate,
    subscriber: Subscriber,
    message_id: str,
    date: str,
) -> bytes:
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


def _finish_editions(conn: Any, edition_ids: Iterable[int]) -> None:
    counts = store.outbox_counts(conn, list(edition_ids))
    for edition_id, states in counts.items():
        if not any(states.get(state) for state in store.PENDING_STATES):
            store.set_edition_state(conn, edition_id, "sent")


# -- status ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EditionStatus:
    edition: Edition
    counts: dict[str, int]


def status(settings: Settings) -> list[EditionStatus]:
    """Every edition with its outbox rows per state."""
    with engine_for(settings).connect() as conn:
        editions = store.list_editions(conn)
        counts = store.outbox_counts(conn)
    states = ("queued", "sending", "retry", "sent", "failed", "unknown", "cancelled")
    return [EditionStatus(e, {s: counts.get(e.id, {}).get(s, 0) for s in states}) for e in editions]


class DeliveryStopped(ImkError):
    """Delivery was stopped before the outbox was empty."""
