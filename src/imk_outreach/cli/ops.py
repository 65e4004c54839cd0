"""Commands run, status, db upgrade: operating the product."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from imk_outreach.cli import social
from imk_outreach.cli.gather import status_json
from imk_outreach.cli.output import iso, local_time, make_console, print_json
from imk_outreach.config import Settings
from imk_outreach.models import CampaignRun, ProcessInfo
from imk_outreach.services import (
    catalog,
    channels,
    compose,
    database,
    dispatch,
    health,
    schedule,
    social_queue,
)

STATES = ("queued", "sending", "retry", "sent", "failed", "unknown", "cancelled")


# -- run -------------------------------------------------------------------------------------------


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from imk_outreach.scheduler import Runner  # the scheduler shell, only for this command

    web = None if args.no_web else _web_server(settings, args.host, args.port)
    runner = Runner(settings, web=web)
    runner.install_signals()
    code = runner.run()
    if runner.abandoned:  # a job thread outlived scheduler.stop_timeout: do not wait for it at exit
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
    return code


def _web_server(settings: Settings, host: str, port: int) -> Any:
    import uvicorn

    from imk_outreach.web.app import create_app  # the web shell, only for this command
    from imk_outreach.web.hygiene import uvicorn_log_config

    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        log_config=uvicorn_log_config(),
        server_header=False,
    )
    return uvicorn.Server(config)


# -- db upgrade ------------------------------------------------------------------------------------


def cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    before, head = database.upgrade(settings)
    if before == head:
        print(f"The database schema is current (revision {head}).")
    elif before is None:
        print(f"Created a new database with schema revision {head}.")
    else:
        print(f"Database schema upgraded from revision {before} to {head}.")
    return 0


# -- status ----------------------------------------------------------------------------------------


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    editions = dispatch.status(settings)
    sources = catalog.source_statuses(settings)
    campaigns, _errors = compose.load_campaigns(settings)
    next_runs = schedule.next_runs(settings, campaigns, now)
    runs = schedule.open_runs(settings)
    state = health.health(settings, now)
    if args.json:
        print_json(
            {
                "editions": [
                    {
                        "id": e.edition.id,
                        "campaign": e.edition.campaign,
                        "state": e.edition.state,
                        "counts": e.counts,
                        "last_error": e.last_error,
                        "last_error_at": iso(e.last_error_at),
                    }
                    for e in editions
                ],
                "sources": [status_json(s) for s in sources],
                "next_runs": [{"job": r.job, "at": iso(r.at), "detail": r.detail} for r in next_runs],
                "runs": [_run_json(r) for r in runs],
                "queue": _queue(editions),
                "scheduler": {
                    "state": state.scheduler,
                    "process": state.leader.name if state.leader else None,
                    "heartbeat_at": iso(state.leader.heartbeat_at) if state.leader else None,
                    "last": dict(state.leader.info.get("last", {})) if state.leader else {},
                },
                "processes": [_process_json(p) for p in state.processes],
                "posts": {
                    name: [social.post_json(row) for row in rows]
                    for name, rows in social_queue.upcoming(settings).items()
                },
                "paused_channels": channels.paused(settings),
            }
        )
        return 0
    _print_status(settings, editions, next_runs, runs, state, sources)
    if settings.channels:
        social.print_upcoming(settings, social_queue.upcoming(settings).items())
        for name, reason in channels.paused(settings).items():
            make_console().print(f"[red]channel {name} is paused[/]: {reason}")
    return 0


def _queue(editions: list[dispatch.EditionStatus]) -> dict[str, int]:
    return {s: sum(e.counts.get(s, 0) for e in editions) for s in STATES}


def _run_json(run: CampaignRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "campaign": run.campaign,
        "due_at": iso(run.due_at),
        "deadline": iso(run.deadline),
        "state": run.state,
        "edition": run.edition_id,
        "missed": run.missed,
        "note": run.note,
        "notified_at": iso(run.notified_at),
    }


def _process_json(process: ProcessInfo) -> dict[str, Any]:
    return {
        "name": process.name,
        "role": process.role,
        "state": process.state,
        "started_at": iso(process.started_at),
        "heartbeat_at": iso(process.heartbeat_at),
    }


def _print_status(
    settings: Settings,
    editions: list[dispatch.EditionStatus],
    next_runs: list[schedule.NextRun],
    runs: list[CampaignRun],
    state: health.Health,
    sources: list[catalog.SourceStatus],
) -> None:
    console = make_console()
    if state.leader is not None:
        console.print(
            f"Scheduler: [green]{state.scheduler}[/] ({state.leader.name}, "
            f"last heartbeat {local_time(settings, state.leader.heartbeat_at)})"
        )
    else:
        console.print(f"Scheduler: [bold red]{state.scheduler}[/] (start it with 'imk-outreach run')")
    if state.database != "ok":
        console.print(f"Database: [bold red]{state.database}[/]")
    workers = [p for p in state.processes if p.role == "worker"]
    console.print(f"Workers alive: {len(workers)}  ·  queue: " + _queue_line(editions))
    for run in runs:
        colour = "yellow" if run.state == "held" else "cyan"
        console.print(
            f"[{colour}]{run.state}[/]: {run.campaign} edition {run.edition_id or '-'} "
            f"(due {local_time(settings, run.due_at)}, grace until {local_time(settings, run.deadline)}) "
            f"{run.note or ''}"
        )
    table = Table(title="Next runs", title_justify="left")
    for column in ("job", "next run", "schedule"):
        table.add_column(column)
    for nxt in next_runs:
        table.add_row(nxt.job, local_time(settings, nxt.at) if nxt.at else "-", nxt.detail)
    console.print(table)
    _print_editions(editions)
    failing = [s for s in sources if s.health and s.health.last_status == "error"]
    for source in failing:
        assert source.health is not None
        console.print(
            f"[bold red]source {source.name} failing[/] since "
            f"{local_time(settings, source.health.last_error_at)}: {source.health.last_error}"
        )
    if state.leader is not None:
        for job, outcome in sorted(dict(state.leader.info.get("last", {})).items()):
            console.print(f"last {job}: {outcome}")


def _queue_line(editions: list[dispatch.EditionStatus]) -> str:
    queue = _queue(editions)
    return ", ".join(f"{queue[s]} {s}" for s in ("queued", "sending", "retry", "failed", "unknown"))


def _print_editions(editions: list[dispatch.EditionStatus]) -> None:
    table = Table(title="Editions", title_justify="left")
    for column in ("id", "campaign", "state", *STATES):
        table.add_column(column)
    for e in editions:
        table.add_row(
            str(e.edition.id), e.edition.campaign, e.edition.state, *(str(e.counts[k]) for k in STATES)
        )
    make_console().print(table)
    for e in editions:
        if e.last_error and any(e.counts[s] for s in ("retry", "failed", "sending", "queued")):
            make_console().print(
                f"[yellow]edition {e.edition.id}[/]: last error {iso(e.last_error_at)}: {e.last_error}"
            )


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "run", parents=[common], help="the daemon: gather, compose and deliver on schedule, and the web app"
    )
    p.add_argument("--host", default="127.0.0.1", help="address of the web app (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port of the web app (default 8000)")
    p.add_argument("--no-web", action="store_true", help="schedule and deliver only, no web app")
    p.set_defaults(func=cmd_run, long_running=True)

    p = sub.add_parser("status", parents=[common], help="scheduler, next runs, held editions, queue, sources")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)

    db = sub.add_parser("db", parents=[common], help="database schema: upgrade")
    actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    p = actions.add_parser("upgrade", parents=[common], help="run the pending schema migrations")
    p.set_defaults(func=cmd_db_upgrade)
