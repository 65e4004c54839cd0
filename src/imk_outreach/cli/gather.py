"""Commands gather, items, sources: news gathering and what it stored."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from imk_outreach.cli.output import iso, local_time, make_console, print_json
from imk_outreach.config import Settings
from imk_outreach.durations import parse_duration
from imk_outreach.models import NewsItem, SourceReport
from imk_outreach.services import catalog, compose, ingest, social_queue

# -- gather ----------------------------------------------------------------------------------------


def cmd_gather(settings: Settings, args: argparse.Namespace) -> int:
    result = ingest.gather(settings, args.source or None)
    posted = []
    if settings.channels and any(r.new for r in result.reports):  # trigger: new_items campaigns
        posted = social_queue.post_new_items(settings, compose.load_campaigns(settings)[0])
    if args.json:
        print_json({"sources": [report_json(r) for r in result.reports]})
    else:
        print_gather(result.reports)
        for outcome in posted:
            if outcome.error:
                print(f"campaign {outcome.campaign}: {outcome.error}")
            elif outcome.waiting is not None:
                print(
                    f"campaign {outcome.campaign}: a draft of {outcome.waiting} items waits for approval "
                    f"('imk-outreach preview {outcome.campaign}')"
                )
            else:
                print(f"campaign {outcome.campaign}: {outcome.queued} posts queued ('imk-outreach posts')")
    return result.exit_code


def report_json(report: SourceReport) -> dict[str, Any]:
    return {
        "name": report.name,
        "status": report.status,
        "new": report.new,
        "updated": report.updated,
        "seen": report.seen,
        "error": report.error,
        "warning": report.warning,
    }


def print_gather(reports: Sequence[SourceReport]) -> None:
    console = make_console()
    table = Table(title="Gathered sources")
    for column in ("source", "status", "new", "updated", "note"):
        table.add_column(column, justify="right" if column in ("new", "updated") else "left")
    styles = {"ok": "green", "not_modified": "cyan", "error": "bold red"}
    for r in reports:
        note = r.error or r.warning or ""
        status = r.status.replace("_", " ")
        table.add_row(r.name, f"[{styles[r.status]}]{status}[/]", str(r.new), str(r.updated), note)
    console.print(table)
    failed = sum(1 for r in reports if r.status == "error")
    console.print(
        f"{len(reports) - failed} of {len(reports)} sources read, {failed} failed; "
        f"{sum(r.new for r in reports)} new items, {sum(r.updated for r in reports)} updated."
    )


# -- items -----------------------------------------------------------------------------------------


def cmd_items(settings: Settings, args: argparse.Namespace) -> int:
    since = parse_duration(args.since) if args.since else None
    items = catalog.find_items(
        settings, since, args.tag or (), args.source or (), datetime.now(UTC), args.limit
    )
    if args.json:
        print_json({"items": [item_json(i) for i in items]})
        return 0
    _print_items(settings, items, "Items")
    return 0


def item_json(item: NewsItem) -> dict[str, Any]:
    """The documented ``items --json`` shape of one item."""
    return {
        "id": item.id,
        "source": item.source,
        "sources": list(item.sources),
        "url": item.url,
        "title": item.title,
        "summary_html": item.summary_html,
        "published_at": item.published_at.isoformat(),
        "date_estimated": item.date_estimated,
        "language": item.language,
        "tags": list(item.tags),
        "image": item.image,
        "translations": {
            lang: {"title": t.title, "summary_html": t.summary_html} for lang, t in item.translations.items()
        },
    }


def items_table(settings: Settings, items: Sequence[NewsItem], title: str) -> Table:
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("published", no_wrap=True)
    table.add_column("lang", no_wrap=True)
    table.add_column("title", ratio=3)
    table.add_column("tags", ratio=1)
    table.add_column("source", ratio=1)
    for item in items:
        date = local_time(settings, item.published_at)
        if item.date_estimated:
            date = f"{date[:10]} [yellow](undated)[/]"
        langs = "+".join([item.language, *sorted(item.translations)])
        table.add_row(date, langs, item.title, ", ".join(item.tags), ", ".join(item.sources))
    return table


def _print_items(settings: Settings, items: Sequence[NewsItem], title: str) -> None:
    console = make_console()
    if not items:
        console.print("No items match. Run 'imk-outreach gather' first, or widen --since.")
        return
    console.print(items_table(settings, items, f"{title} ({len(items)})"))


# -- sources ---------------------------------------------------------------------------------------


def cmd_sources(settings: Settings, args: argparse.Namespace) -> int:
    statuses = catalog.source_statuses(settings)
    if args.json:
        print_json({"sources": [status_json(s) for s in statuses]})
        return 0
    table = Table(title="Sources")
    for column in (
        "source",
        "type",
        "state",
        "last success",
        "failures",
        "seen",
        "stored",
        "last error / warning",
    ):
        table.add_column(column)
    styles = {"ok": "green", "warning": "yellow", "failing": "bold red", "never gathered": "dim"}
    for s in statuses:
        h = s.health
        problem = (h.last_error if h and h.last_status == "error" else h.last_warning if h else "") or ""
        if h and h.last_status == "error" and h.last_error_at:
            problem = f"{local_time(settings, h.last_error_at)}: {problem}"
        table.add_row(
            s.name,
            s.type,
            f"[{styles[s.state]}]{s.state}[/]",
            local_time(settings, h.last_success_at if h else None),
            str(h.consecutive_failures if h else 0),
            str(h.items_seen if h else 0),
            str(s.stored),
            problem,
        )
    make_console().print(table)
    return 0


def status_json(s: catalog.SourceStatus) -> dict[str, Any]:
    h = s.health
    return {
        "name": s.name,
        "type": s.type,
        "url": s.url,
        "state": s.state,
        "last_run_at": iso(h.last_run_at) if h else None,
        "last_status": h.last_status if h else None,
        "last_success_at": iso(h.last_success_at) if h else None,
        "last_error": h.last_error if h else None,
        "last_error_at": iso(h.last_error_at) if h else None,
        "last_warning": h.last_warning if h else None,
        "consecutive_failures": h.consecutive_failures if h else 0,
        "items_seen": h.items_seen if h else 0,
        "stored": s.stored,
    }


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("gather", parents=[common], help="fetch sources and store new items")
    p.add_argument("--source", action="append", metavar="NAME", help="only this source (repeatable)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_gather)

    p = sub.add_parser("items", parents=[common], help="list stored items")
    p.add_argument("--since", metavar="AGE", help="published within AGE, e.g. 7d, 12h, 2w")
    p.add_argument("--tag", action="append", metavar="T", help="with this tag (repeatable: any of them)")
    p.add_argument("--source", action="append", metavar="S", help="from this source (repeatable)")
    p.add_argument("--limit", type=int, metavar="N", help="at most N items")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_items)

    p = sub.add_parser("sources", parents=[common], help="health of every configured source")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_sources)
