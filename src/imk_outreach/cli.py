"""The ``imk-outreach`` command: parse input, call one service, format the result.

Exit codes: 0 done, 1 bad input or a failed step, 2 usage, 3 partly done.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from imk_outreach import __version__
from imk_outreach.config import Settings, database_url, load_settings, parse_duration
from imk_outreach.errors import ImkError
from imk_outreach.models import Edition, NewsItem, SourceReport
from imk_outreach.services import catalog, check, compose, ingest, preview
from imk_outreach.services.demo import DEMO_SECTIONS, group_for_demo

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


# -- demo ------------------------------------------------------------------------------------------


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    console = _console()
    console.rule("[bold]imk-outreach demo: gathering the bundled sample sources")
    result = ingest.gather(settings)
    _print_gather(result.reports)
    items = catalog.find_items(settings)
    groups = group_for_demo(items, settings.languages)
    for (section, language), members in groups:
        console.print(_items_table(settings, members, f"{DEMO_SECTIONS[section]} - {language}"))
    console.rule("[bold]Newsletter previews (compose + render, German and English)")
    previews = []
    for campaign in compose.load_campaigns(settings)[0]:
        if campaign.kind != "newsletter":
            continue
        shown = preview.preview(settings, campaign.name)
        edition = shown.result.edition
        count = len(edition.items) if edition else 0
        note = f"  [yellow]({shown.result.skipped})[/]" if shown.result.skipped else ""
        subjects = " | ".join(m.subject for m in shown.rendered.values())
        console.print(f"{campaign.name}: {count} items, subjects: {subjects}{note}")
        previews.append(shown.index)
    console.rule("[bold]Where to look")
    for index in previews:
        console.print(f"preview:       {index}")
    console.print(f"database:      {database_url(settings)}")
    console.print(f"config:        {settings.config_path}  (sources, tagging rules; keys in docs/config.md)")
    prog = _program()
    console.print(f"items:         {prog} items --since 30d   (or --json, --tag film, --source bfi-news)")
    console.print(f"source health: {prog} sources")
    return result.exit_code


def _program() -> str:
    """How the user can run this command again from where they are (``.venv/bin/imk-outreach``)."""
    path = Path(sys.argv[0])
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return path.name if path.name != "__main__.py" else "python -m imk_outreach"


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

    p = sub.add_parser("demo", parents=[common], help="the end-to-end tour on the sample sources")
    p.set_defaults(func=cmd_demo)
    return parser


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
