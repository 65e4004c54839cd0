"""The ``imk-outreach`` command: parse input, call one service, format the result.

Exit codes: 0 done, 1 bad input or a failed step, 2 usage, 3 partly done.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from imk_outreach import __version__
from imk_outreach.config import Settings, database_url, load_settings
from imk_outreach.durations import parse_duration
from imk_outreach.errors import ImkError
from imk_outreach.models import Edition, NewsItem, SourceReport
from imk_outreach.services import catalog, check, compose, demo, dispatch, ingest, preview, subscriptions

log = logging.getLogger("imk_outreach")


def _console() -> Console:
    # Piped output keeps a readable width instead of rich's 80-column fallback.
    return Console(width=None if sys.stdout.isatty() else 140, highlight=False)


def _local(settings: Settings, moment: datetime | None) -> str:
    return moment.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M") if moment else "-"


# -- gather ----------------------------------------------------------------------------------------


def cmd_gather(settings: Settings, args: argparse.Namespace) -> int:
    result = ingest.gather(settings, args.source or None)
    if args.json:
        _print_json({"sources": [_report_json(r) for r in result.reports]})
    else:
        _print_gather(result.reports)
    return result.exit_code


def _report_json(report: SourceReport) -> dict[str, Any]:
    return {
        "name": report.name,
        "status": report.status,
        "new": report.new,
        "updated": report.updated,
        "seen": report.seen,
        "error": report.error,
        "warning": report.warning,
    }


def _print_gather(reports: Sequence[SourceReport]) -> None:
    console = _console()
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
        _print_json({"items": [item_json(i) for i in items]})
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


def _items_table(settings: Settings, items: Sequence[NewsItem], title: str) -> Table:
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("published", no_wrap=True)
    table.add_column("lang", no_wrap=True)
    table.add_column("title", ratio=3)
    table.add_column("tags", ratio=1)
    table.add_column("source", ratio=1)
    for item in items:
        date = _local(settings, item.published_at)
        if item.date_estimated:
            date = f"{date[:10]} [yellow](undated)[/]"
        langs = "+".join([item.language, *sorted(item.translations)])
        table.add_row(date, langs, item.title, ", ".join(item.tags), ", ".join(item.sources))
    return table


def _print_items(settings: Settings, items: Sequence[NewsItem], title: str) -> None:
    console = _console()
    if not items:
        console.print("No items match. Run 'imk-outreach gather' first, or widen --since.")
        return
    console.print(_items_table(settings, items, f"{title} ({len(items)})"))


# -- sources ---------------------------------------------------------------------------------------


def cmd_sources(settings: Settings, args: argparse.Namespace) -> int:
    statuses = catalog.source_statuses(settings)
    if args.json:
        _print_json({"sources": [_status_json(s) for s in statuses]})
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
            problem = f"{_local(settings, h.last_error_at)}: {problem}"
        table.add_row(
            s.name,
            s.type,
            f"[{styles[s.state]}]{s.state}[/]",
            _local(settings, h.last_success_at if h else None),
            str(h.consecutive_failures if h else 0),
            str(h.items_seen if h else 0),
            str(s.stored),
            problem,
        )
    _console().print(table)
    return 0


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _status_json(s: catalog.SourceStatus) -> dict[str, Any]:
    h = s.health
    return {
        "name": s.name,
        "type": s.type,
        "url": s.url,
        "state": s.state,
        "last_run_at": _iso(h.last_run_at) if h else None,
        "last_status": h.last_status if h else None,
        "last_success_at": _iso(h.last_success_at) if h else None,
        "last_error": h.last_error if h else None,
        "last_error_at": _iso(h.last_error_at) if h else None,
        "last_warning": h.last_warning if h else None,
        "consecutive_failures": h.consecutive_failures if h else 0,
        "items_seen": h.items_seen if h else 0,
        "stored": s.stored,
    }


# -- newsletters -----------------------------------------------------------------------------------


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    problems = check.run_checks(settings)
    fallbacks = check.current_fallbacks(settings, datetime.now(UTC)) if not problems else []
    if args.json:
        _print_json(
            {
                "ok": not problems,
                "problems": [
                    {"file": p.file, "line": p.line, "key": p.key, "message": p.message, "text": str(p)}
                    for p in problems
                ],
                "fallbacks": [
                    {
                        "campaign": f.campaign,
                        "language": f.language,
                        "item": f.item_id,
                        "title": f.title,
                        "shown_in": f.original,
                    }
                    for f in fallbacks
                ],
            }
        )
        return 1 if problems else 0
    for line in [*problems, *fallbacks]:
        print(line)
    if problems:
        print(f"{len(problems)} problem(s) found.", file=sys.stderr)
    else:
        print("All good: config, campaigns and templates check out in every language.")
    return 1 if problems else 0


def cmd_preview(settings: Settings, args: argparse.Namespace) -> int:
    result = preview.preview(settings, args.campaign, args.out)
    console = _console()
    edition = result.result.edition
    assert edition is not None
    console.print(f"Edition {edition.id} of {args.campaign} ({edition.state}), {len(edition.items)} items:")
    if result.result.skipped:
        console.print(f"[yellow]Would be skipped: {result.result.skipped}[/]")
    for language, (html_path, text_path) in result.files.items():
        message = result.rendered[language]
        console.print(f'  {language}: subject "{message.subject}"')
        console.print(f"      {html_path}")
        console.print(f"      {text_path}")
        for item_id in message.fallbacks:
            title = next((i.title for i in edition.items if i.id == item_id), item_id)
            console.print(f"      [yellow]fallback[/] (original language): {title}")
    console.print(f"Side by side: {result.index}")
    return 0


def cmd_editions(settings: Settings, args: argparse.Namespace) -> int:
    editions = compose.list_editions(settings, args.campaign)
    rows = []
    for edition in editions:
        state = compose.approval_state(settings, edition) if edition.state == "approved" else edition.state
        rows.append((edition, state))
    if args.json:
        _print_json({"editions": [_edition_json(e, state) for e, state in rows]})
        return 0
    if not rows:
        _console().print("No editions yet. 'imk-outreach preview CAMPAIGN' composes a draft.")
        return 0
    table = Table(title="Editions")
    for column in ("id", "campaign", "state", "items", "composed", "approved by", "approved at"):
        table.add_column(column)
    for edition, state in rows:
        table.add_row(
            str(edition.id),
            edition.campaign,
            state,
            str(len(edition.items)),
            _local(settings, edition.created_at),
            edition.approved_by or "",
            _local(settings, edition.approved_at) if edition.approved_at else "",
        )
    _console().print(table)
    return 0


def _edition_json(edition: Edition, state: str) -> dict[str, Any]:
    return {
        "id": edition.id,
        "campaign": edition.campaign,
        "state": edition.state,
        "approval": state,
        "created_at": edition.created_at.isoformat(),
        "content_hash": edition.content_hash,
        "approved_by": edition.approved_by,
        "approved_at": _iso(edition.approved_at),
        "approved_hash": edition.approved_hash,
        "sections": [{"id": s.id, "items": [i.id for i in s.items]} for s in edition.sections],
    }


def cmd_approve(settings: Settings, args: argparse.Namespace) -> int:
    edition = compose.approve(settings, args.edition, args.by)
    print(
        f"Edition {edition.id} of {edition.campaign} approved by {edition.approved_by} "
        f"(content hash {edition.approved_hash[:12] if edition.approved_hash else '-'}). "
        "Any change to its content voids this approval."
    )
    return 0


# -- sending ---------------------------------------------------------------------------------------


def cmd_send(settings: Settings, args: argparse.Namespace) -> int:
    if args.test_to:
        subjects = dispatch.send_test(settings, args.campaign, args.test_to)
        for subject in subjects:
            print(f"Test mail sent to {args.test_to}: {subject}")
        return 0
    report = dispatch.send(settings, args.campaign)
    print(
        f"Edition {report.edition.id} of {args.campaign}: {report.queued} messages queued. "
        "'imk-outreach deliver --until-empty' sends them (or a running worker does)."
    )
    return 0


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
    with Progress(*columns, console=_console()) as bar:
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
    print(f"worker {dispatch.worker_name()} delivering; stop with Ctrl-C or SIGTERM", file=sys.stderr)
    report = dispatch.deliver(settings, stop=stop, poll=args.poll)
    print(
        f"worker stopped: sent {report.sent}, retry {report.retry}, failed {report.failed}", file=sys.stderr
    )
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    editions = dispatch.status(settings)
    sources = catalog.source_statuses(settings)
    if args.json:
        _print_json(
            {
                "editions": [
                    {
                        "id": e.edition.id,
                        "campaign": e.edition.campaign,
                        "state": e.edition.state,
                        "counts": e.counts,
                    }
                    for e in editions
                ],
                "sources": [_status_json(s) for s in sources],
                "next_runs": [],
            }
        )
        return 0
    table = Table(title="Editions")
    for column in ("id", "campaign", "state", "queued", "sending", "retry", "sent", "failed", "cancelled"):
        table.add_column(column)
    for e in editions:
        c = e.counts
        table.add_row(
            str(e.edition.id),
            e.edition.campaign,
            e.edition.state,
            *(str(c[k]) for k in ("queued", "sending", "retry", "sent", "failed", "cancelled")),
        )
    _console().print(table)
    return 0


# -- demo ------------------------------------------------------------------------------------------


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    console = _console()
    settings = demo.demo_settings(settings)
    console.rule("[bold]imk-outreach demo: gathering the bundled sample sources")
    result = ingest.gather(settings)
    _print_gather(result.reports)
    items = catalog.find_items(settings)
    for (section, language), members in demo.group_for_demo(items, settings.languages):
        console.print(_items_table(settings, members, f"{demo.DEMO_SECTIONS[section]} - {language}"))
    console.rule("[bold]Newsletter previews (compose + render, German and English)")
    previews = []
    for campaign in compose.load_campaigns(settings)[0]:
        if campaign.kind != "newsletter":
            continue
        shown = preview.preview(settings, campaign.name, settings.resolve_path("var/demo/preview"))
        edition = shown.result.edition
        note = f"  [yellow]({shown.result.skipped})[/]" if shown.result.skipped else ""
        subjects = " | ".join(m.subject for m in shown.rendered.values())
        console.print(
            f"{campaign.name}: {len(edition.items) if edition else 0} items, subjects: {subjects}{note}"
        )
        previews.append(shown.index)
    console.rule("[bold]Sending the monthly newsletter to the sample subscribers (local mail capture)")
    tour = demo.mail_tour(settings)
    if tour.edition_id is None:
        console.print(f"[yellow]Nothing sent: {tour.note}[/]")
    else:
        console.print(
            f"{tour.subscribers} sample subscribers imported; edition {tour.edition_id} approved, "
            f"{tour.queued} messages queued, {tour.sent} delivered."
        )
    console.rule("[bold]Where to look")
    for index in previews:
        console.print(f"preview:       {index}")
    console.print(f"mails:         {tour.maildir}  (a Maildir: new/ holds one .eml-style file per message)")
    console.print(f"database:      {database_url(settings)}  (the demo's own, made afresh each run)")
    console.print(f"config:        {settings.config_path}  (sources, tagging rules; keys in docs/config.md)")
    prog = f"IMK_DATABASE_URL={database_url(settings)} {_program()}"
    console.print("explore the demo's data:")
    console.print(f"  {prog} items --since 30d   (or --json, --tag film, --source bfi-news)")
    console.print(f"  {prog} sources")
    console.print(f"  {prog} status")
    return result.exit_code


def _program() -> str:
    """How the user can run this command again from where they are (``.venv/bin/imk-outreach``)."""
    path = Path(sys.argv[0])
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return path.name if path.name != "__main__.py" else "python -m imk_outreach"


# -- subscribers and the web app -------------------------------------------------------------------


def cmd_subscribers_import(settings: Settings, args: argparse.Namespace) -> int:
    report = subscriptions.import_csv(settings, args.file, args.status)
    if args.json:
        _print_json(
            {
                "imported": report.imported,
                "updated": report.updated,
                "unchanged": report.unchanged,
                "rejected": [{"line": r.line, "email": r.email, "reason": r.reason} for r in report.rejected],
                "mailed": report.mailed,
                "mail_failures": [{"email": e, "reason": reason} for e, reason in report.mail_failures],
                "ignored_columns": list(report.ignored_columns),
            }
        )
    else:
        print(
            f"imported {report.imported}, updated {report.updated}, unchanged {report.unchanged}, "
            f"rejected {len(report.rejected)}"
        )
        for rejection in report.rejected:
            print(rejection)
        if args.status == "pending":
            print(f"confirmation mails sent: {report.mailed}")
        for email, reason in report.mail_failures:
            print(f"confirmation mail not sent to {email}: {reason}")
        if report.ignored_columns:
            print(f"note: columns ignored: {', '.join(report.ignored_columns)}")
    return 3 if report.rejected or report.mail_failures else 0


def cmd_subscribers_add(settings: Settings, args: argparse.Namespace) -> int:
    result = subscriptions.add(settings, args.email, args.name, args.language, args.lists or (), args.status)
    sub = result.subscriber
    print(f"added {sub.email} ({sub.status}; language {sub.language}; lists {', '.join(sub.lists)})")
    if result.mailed:
        print(f"confirmation mail sent to {sub.email}")
    return 0


def cmd_subscribers_remove(settings: Settings, args: argparse.Namespace) -> int:
    sub = subscriptions.remove(settings, args.email)
    print(f"unsubscribed {sub.email} (record and consent evidence kept; 'subscribers erase' deletes them)")
    return 0


def cmd_subscribers_export(settings: Settings, args: argparse.Namespace) -> int:
    records = subscriptions.export(settings, args.email)
    if args.format == "json":  # streamed: memory stays flat however long the list is
        sys.stdout.write('{"subscribers": [')
        for index, record in enumerate(records):
            sys.stdout.write(("," if index else "") + "\n  " + json.dumps(record, ensure_ascii=False))
        sys.stdout.write("\n]}\n")
        return 0
    writer = csv.DictWriter(sys.stdout, fieldnames=subscriptions.EXPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({**record, "lists": ";".join(record["lists"])})
    return 0


def cmd_subscribers_erase(settings: Settings, args: argparse.Namespace) -> int:
    subscriptions.erase(settings, args.email)
    print(
        f"erased {args.email.strip()}: only a keyed hash of the address is kept, so no import adds it again"
    )
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from imk_outreach.web.app import create_app  # the web shell, only for this command

    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    return 0


def _add_subscriber_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser("subscribers", parents=[common], help="import, add, remove, export, erase")
    commands = group.add_subparsers(dest="subscribers_command", required=True, metavar="ACTION")

    p = commands.add_parser("import", parents=[common], help="import subscribers from a CSV file")
    p.add_argument("file", type=Path, metavar="FILE.csv", help="header row; email, name, language, lists")
    p.add_argument(
        "--status",
        choices=subscriptions.IMPORT_STATUSES,
        default="confirmed",
        help="confirmed (consent given elsewhere) or pending (each gets a confirmation mail)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_subscribers_import)

    p = commands.add_parser("add", parents=[common], help="add one subscriber")
    p.add_argument("email", metavar="EMAIL")
    p.add_argument("--name", metavar="N", default="")
    p.add_argument("--language", metavar="LANG", help="a configured language (default: the first)")
    p.add_argument("--list", dest="lists", action="append", metavar="L", help="a list (repeatable)")
    p.add_argument("--status", choices=subscriptions.IMPORT_STATUSES, default="confirmed")
    p.set_defaults(func=cmd_subscribers_add)

    p = commands.add_parser("remove", parents=[common], help="unsubscribe an address (record kept)")
    p.add_argument("email", metavar="EMAIL")
    p.set_defaults(func=cmd_subscribers_remove)

    p = commands.add_parser("export", parents=[common], help="all subscribers (or one) to stdout")
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("--email", metavar="EMAIL", help="only this subscriber (a data access request)")
    p.set_defaults(func=cmd_subscribers_export)

    p = commands.add_parser("erase", parents=[common], help="delete a subscriber for good")
    p.add_argument("email", metavar="EMAIL")
    p.set_defaults(func=cmd_subscribers_erase)

    p = sub.add_parser("serve", parents=[common], help="run the web app (subscribe, confirm, unsubscribe)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.set_defaults(func=cmd_serve)


# -- plumbing --------------------------------------------------------------------------------------


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


Command = Callable[[Settings, argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help="path of config.yaml (default: ./config.yaml, or $IMK_CONFIG)",
    )
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output")
    parser = argparse.ArgumentParser(
        prog="imk-outreach",
        description="Gather cluster news, compose bilingual newsletters and posts, deliver them.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"imk-outreach {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    p = sub.add_parser("check", parents=[common], help="validate config, campaigns and templates")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("preview", parents=[common], help="compose a draft edition and write its preview")
    p.add_argument("campaign", metavar="CAMPAIGN", help="campaign name (file name in campaigns/)")
    p.add_argument("--out", type=Path, metavar="DIR", help="folder for the preview (default var/preview)")
    p.set_defaults(func=cmd_preview)

    p = sub.add_parser("editions", parents=[common], help="list editions and their approval")
    p.add_argument("--campaign", metavar="NAME", help="only this campaign")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_editions)

    p = sub.add_parser("approve", parents=[common], help="approve an edition's current content")
    p.add_argument("edition", type=int, metavar="EDITION", help="edition id (see 'editions')")
    p.add_argument("--by", metavar="NAME", help="who approves (default: the login name)")
    p.set_defaults(func=cmd_approve)

    p = sub.add_parser("send", parents=[common], help="queue a campaign's approved edition for its list")
    p.add_argument("campaign", metavar="CAMPAIGN")
    p.add_argument("--test-to", metavar="EMAIL", help="send one copy per language to EMAIL now instead")
    p.set_defaults(func=cmd_send)

    p = sub.add_parser("deliver", parents=[common], help="send what is queued")
    p.add_argument("--until-empty", action="store_true", help="wait for retries until nothing is pending")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--processes",
        type=_positive_int,
        default=1,
        metavar="N",
        help="share smtp.connections over N processes (use the machine's cores; default 1)",
    )
    p.set_defaults(func=cmd_deliver)

    p = sub.add_parser("worker", parents=[common], help="deliver continuously (one of several processes)")
    p.add_argument("--poll", type=float, default=1.0, metavar="SECONDS", help="wait between empty polls")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("status", parents=[common], help="editions and their messages per state")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("demo", parents=[common], help="the end-to-end tour on the sample sources")
    p.set_defaults(func=cmd_demo)
    _add_subscriber_parsers(sub, common)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


def _validate_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if getattr(args, "since", None):
        try:
            parse_duration(args.since)
        except ValueError as exc:
            parser.error(f"--since: {exc}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _validate_args(parser, args)
    verbosity = getattr(args, "verbose", 0)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(verbosity, 2),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    config = getattr(args, "config", None) or os.environ.get("IMK_CONFIG")
    try:
        settings = load_settings(config)
        code: int = args.func(settings, args)
        return code
    except ImkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
