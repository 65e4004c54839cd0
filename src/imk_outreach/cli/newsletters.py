"""Commands check, preview, editions, approve, hold, cancel, discard: campaign files, drafts, approval, and
stopping an edition."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from imk_outreach.cli import social
from imk_outreach.cli.output import iso, local_time, make_console, print_json
from imk_outreach.config import Settings
from imk_outreach.models import Edition
from imk_outreach.services import check, compose, editions_admin, preview, schedule

# -- newsletters -----------------------------------------------------------------------------------


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    report = check.inspect(settings)
    problems, warnings = report.problems, report.warnings
    fallbacks = check.current_fallbacks(settings, datetime.now(UTC)) if not problems else []
    if args.json:
        print_json(
            {
                "ok": not problems,
                "problems": [_finding_json(p) for p in problems],
                "warnings": [_finding_json(w) for w in warnings],
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
    for line in [*problems, *(f"warning: {w}" for w in warnings), *fallbacks]:
        print(line)
    if problems:
        print(f"{len(problems)} problem(s) found.", file=sys.stderr)
    elif warnings:
        print(f"No problems, {len(warnings)} warning(s): config, campaigns and templates load and render.")
    else:
        print("All good: config, campaigns and templates check out in every language.")
    return 1 if problems else 0


def _finding_json(finding: check.Problem) -> dict[str, Any]:
    return {
        "file": finding.file,
        "line": finding.line,
        "key": finding.key,
        "message": finding.message,
        "text": str(finding),
    }


def cmd_preview(settings: Settings, args: argparse.Namespace) -> int:
    if compose.get_campaign(settings, args.campaign).kind == "social":
        return social.preview_social(settings, args.campaign)
    result = preview.preview(settings, args.campaign, args.out)
    console = make_console()
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
        print_json({"editions": [_edition_json(e, state) for e, state in rows]})
        return 0
    if not rows:
        make_console().print("No editions yet. 'imk-outreach preview CAMPAIGN' composes a draft.")
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
            local_time(settings, edition.created_at),
            edition.approved_by or "",
            local_time(settings, edition.approved_at) if edition.approved_at else "",
        )
    make_console().print(table)
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
        "approved_at": iso(edition.approved_at),
        "approved_hash": edition.approved_hash,
        "sections": [{"id": s.id, "items": [i.id for i in s.items]} for s in edition.sections],
    }


def cmd_approve(settings: Settings, args: argparse.Namespace) -> int:
    done = schedule.approve_edition(settings, args.edition, args.by, datetime.now(UTC), force=args.force)
    edition = done.edition
    if done.shortfall is not None:
        print(f"warning: {done.shortfall}; approved anyway (--force)", file=sys.stderr)
    print(
        f"Edition {edition.id} of {edition.campaign} approved by {edition.approved_by} "
        f"(content hash {edition.approved_hash[:12] if edition.approved_hash else '-'}). "
        "Any change to its content voids this approval."
    )
    if done.released is not None:
        print(
            f"It was held (late); released now: {done.released.queued} messages queued. "
            "A running scheduler or worker delivers them ('imk-outreach deliver --until-empty' otherwise)."
        )
    elif done.shortfall is not None:
        print(
            f"It is short, so the scheduler will not queue it: 'imk-outreach send {edition.campaign} "
            "--force' does."
        )
    return 0


def cmd_cancel(settings: Settings, args: argparse.Namespace) -> int:
    report = editions_admin.cancel(settings, args.edition, args.by, datetime.now(UTC))
    edition = report.edition
    print(
        f"Edition {edition.id} of {edition.campaign} cancelled: {report.cancelled} unsent messages "
        f"will not go out; {report.sent} had gone out already."
    )
    if report.in_flight:
        print(f"{report.in_flight} were being sent by a worker and may still go out; no more will.")
    return 0


def cmd_hold(settings: Settings, args: argparse.Namespace) -> int:
    edition = editions_admin.hold(settings, compose.edition_id_for(settings, args.edition), args.by)
    print(
        f"Edition {edition.id} of {edition.campaign} held: nothing sends it until "
        f"'imk-outreach approve {edition.id}' approves and releases it."
    )
    return 0


def cmd_discard(settings: Settings, args: argparse.Namespace) -> int:
    edition = editions_admin.discard(settings, compose.edition_id_for(settings, args.edition))
    print(
        f"Edition {edition.id} of {edition.campaign} ({edition.state}) discarded. "
        f"'imk-outreach preview {edition.campaign}' composes a fresh draft."
    )
    return 0


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
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
    p.add_argument(
        "edition", metavar="EDITION", help="edition id (see 'editions'), or a campaign name for its draft"
    )
    p.add_argument("--by", metavar="NAME", help="who approves (default: the login name)")
    p.add_argument("--force", action="store_true", help="approve it even with fewer new items than min_items")
    p.set_defaults(func=cmd_approve)

    p = sub.add_parser("cancel", parents=[common], help="stop a queued edition: unsent messages stay unsent")
    p.add_argument("edition", type=int, metavar="EDITION", help="edition id (see 'editions' or 'status')")
    p.add_argument("--by", metavar="NAME", help="who cancels (default: the login name)")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("hold", parents=[common], help="hold an edition not yet queued until approved again")
    p.add_argument(
        "edition", metavar="EDITION", help="edition id (see 'editions'), or a campaign name for its draft"
    )
    p.add_argument("--by", metavar="NAME", help="who holds it (default: the login name)")
    p.set_defaults(func=cmd_hold)

    p = sub.add_parser("discard", parents=[common], help="remove an edition not yet queued (a draft)")
    p.add_argument(
        "edition", metavar="EDITION", help="edition id (see 'editions'), or a campaign name for its draft"
    )
    p.set_defaults(func=cmd_discard)
