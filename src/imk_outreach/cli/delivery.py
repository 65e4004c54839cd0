"""Commands deliver, worker: send what the outbox holds, once or continuously."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from typing import Any

from imk_outreach.cli.output import make_console, positive_int
from imk_outreach.config import Settings
from imk_outreach.services import dispatch


def cmd_deliver(settings: Settings, args: argparse.Namespace) -> int:
    if sys.stdout.isatty() and not args.quiet:
        report = _deliver_with_progress(settings, args.until_empty, args.processes)
    else:
        report = dispatch.deliver_parallel(settings, args.processes, until_empty=args.until_empty)
    print(
        f"sent {report.sent}, retry later {report.retry}, failed {report.failed}, "
        f"cancelled {report.cancelled} (recipient left before sending)"
    )
    return 3 if report.failed else 0


def _deliver_with_progress(settings: Settings, until_empty: bool, processes: int) -> dispatch.DeliverReport:
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

        waiting = sum(
            e.counts[state] for e in dispatch.status(settings) for state in ("queued", "sending", "retry")
        )

        def update(totals: dispatch.DeliverReport, pending: int) -> None:
            done = max(waiting - pending, 0)  # all processes together
            rate = done / max(time.monotonic() - started, 1e-6)
            detail = f"sent {totals.sent} failed {totals.failed} retry {totals.retry} · {rate:,.0f}/s"
            bar.update(task, completed=done, total=max(waiting, done + pending), detail=detail)

        return dispatch.deliver_parallel(settings, processes, until_empty=until_empty, progress=update)


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    name = dispatch.worker_name()  # the whole process is the worker: its processes row, its leases
    print(f"worker {name} delivering; stop with Ctrl-C or SIGTERM", file=sys.stderr)
    report = dispatch.deliver(settings, worker=name, stop=stop, poll=args.poll)
    print(
        f"worker stopped: sent {report.sent}, retry {report.retry}, failed {report.failed}, "
        f"released unsent {report.released}",
        file=sys.stderr,
    )
    return 0


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("deliver", parents=[common], help="send what is queued")
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
    p.add_argument("--poll", type=float, default=1.0, metavar="SECONDS", help="wait between empty polls")
    p.set_defaults(func=cmd_worker, long_running=True)
