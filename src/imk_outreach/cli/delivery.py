"""Commands deliver, worker: send what the outbox holds, once or continuously."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

from imk_outreach.cli.output import make_console, positive_int
from imk_outreach.config import Settings
from imk_outreach.durations import seconds_argument
from imk_outreach.services import delivery_report, dispatch


def cmd_deliver(settings: Settings, args: argparse.Namespace) -> int:
    if sys.stdout.isatty() and not args.quiet:
        summary = _deliver_with_progress(settings, args.until_empty, args.processes)
    else:
        summary = delivery_report.run_deliver(settings, args.processes, until_empty=args.until_empty)
    report = summary.report
    if summary.stopped_by:
        print(f"error: {summary.stopped_by}", file=sys.stderr)
    print(
        f"sent {report.sent}, retry later {report.retry}, failed {report.failed}, "
        f"cancelled {report.cancelled} (recipient left before sending)"
    )
    for line in summary_lines(settings, summary, datetime.now(UTC)):
        print(line)
    return max(summary.exit_code, _deliver_posts(settings))


def _deliver_posts(settings: Settings) -> int:
    """Publish the social posts due now; 0 all well, 1 nothing out and some failed, 3 partly."""
    if not settings.channels:
        return 0
    posts = dispatch.deliver_posts(settings)
    if not posts.handled and not posts.held:
        return 0
    print(
        f"posts: sent {posts.sent}, retry later {posts.retry}, outcome unknown {posts.unknown}, "
        f"failed {posts.failed}, waiting for the daily cap {posts.deferred}"
    )
    for line in posts.lines:
        print(f"  {line}")
    for channel, reason in posts.paused.items():
        print(f"  channel {channel} paused: {reason}; fix it, then 'imk-outreach channels test {channel}'")
    if posts.unknown:
        print(
            "  posts of unknown outcome: check the platform, then "
            + "'imk-outreach outbox resolve ID sent|retry|failed'"
        )
    bad = posts.failed + posts.unknown + posts.retry + posts.held
    if not bad:
        return 0
    return 3 if posts.sent else 1


def summary_lines(settings: Settings, summary: delivery_report.DeliverySummary, now: datetime) -> list[str]:
    """One line per distinct error: rows waiting for a retry (with the next try), rows failed."""
    lines = [
        f"{group.count} waiting: {group.error}, next try {next_try(settings, group.next_attempt_at, now)}"
        for group in summary.waiting
    ]
    lines += [f"{group.count} failed: {group.error}" for group in summary.failed]
    if summary.queued:
        lines.append(f"{summary.queued} queued, not tried yet (run deliver again to send them)")
    return lines


def next_try(settings: Settings, moment: datetime | None, now: datetime) -> str:
    """``10:42`` today, ``2026-11-25 10:42`` on another day (local time), ``now`` when already due."""
    if moment is None or moment <= now:
        return "now"
    local = moment.astimezone(settings.tz)
    same_day = local.date() == now.astimezone(settings.tz).date()
    return local.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M")


def _deliver_with_progress(
    settings: Settings, until_empty: bool, processes: int
) -> delivery_report.DeliverySummary:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("[bold]delivering"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=make_console()) as bar:
        task = bar.add_task("deliver", total=None, detail="")
        started = time.monotonic()
        counts = delivery_report.ProgressTotals()

        def update(totals: dispatch.DeliverReport, remaining: int) -> None:
            done, total = counts.update(totals, remaining)  # rows due now or coming due: the real total
            rate = done / max(time.monotonic() - started, 1e-6)
            detail = f"sent {totals.sent} failed {totals.failed} retry {totals.retry} · {rate:,.0f}/s"
            bar.update(task, completed=done, total=total, detail=detail)

        return delivery_report.run_deliver(settings, processes, until_empty=until_empty, progress=update)


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    name = dispatch.worker_name()  # the whole process is the worker: its processes row, its leases
    print(f"worker {name} delivering; stop with Ctrl-C or SIGTERM", file=sys.stderr)
    posting = dispatch.start_posting(settings, poll=args.poll, suffix="posts") if settings.channels else None
    report = dispatch.deliver(settings, worker=name, stop=stop, poll=args.poll)
    if posting is not None:
        posting.stop()
    print(
        f"worker stopped: sent {report.sent}, retry {report.retry}, failed {report.failed}, "
        f"released unsent {report.released}",
        file=sys.stderr,
    )
    return 0


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "deliver",
        parents=[common],
        help="send what is queued",
        description=(
            "Send what is due in the outbox, then print each distinct error with its count: rows waiting "
            "for a retry (with the next try, local time) and rows that failed for good."
        ),
        epilog=(
            "Exit codes: 0 everything tried went out (or nothing was due); 1 nothing went out although "
            "messages wait or failed (server unreachable, login refused, every recipient refused); 3 some "
            "went out while others failed or still wait for a retry."
        ),
    )
    p.add_argument("--until-empty", action="store_true", help="wait for retries until nothing is pending")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--processes",
        type=positive_int,
        default=1,
        metavar="N",
        help="share smtp.connections over N processes (use the machine's cores; default 1)",
    )
    p.set_defaults(func=cmd_deliver)

    p = sub.add_parser("worker", parents=[common], help="deliver continuously (one of several processes)")
    p.add_argument(
        "--poll",
        type=seconds_argument,
        default=1.0,
        metavar="SECONDS",
        help="wait between empty polls: seconds or a duration (2, 1.5, 20s, 1m; default 1)",
    )
    p.set_defaults(func=cmd_worker, long_running=True)
