"""Command send: show the plan, ask on a terminal, then queue the approved edition (or a test copy now)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from imk_outreach.cli.output import local_time
from imk_outreach.config import Settings
from imk_outreach.services import compose, dispatch, send_plan, social_queue

# -- sending ---------------------------------------------------------------------------------------


def cmd_send(settings: Settings, args: argparse.Namespace) -> int:
    if compose.get_campaign(settings, args.campaign).kind == "social":
        return _send_social(settings, args)
    if args.test_to:
        if args.dry_run:
            print("error: --dry-run shows the plan of a real send; leave out --test-to", file=sys.stderr)
            return 2
        subjects = dispatch.send_test(settings, args.campaign, args.test_to)
        for subject in subjects:
            print(f"Test mail sent to {args.test_to}: {subject}")
        return 0
    if not args.dry_run:
        dispatch.require_smtp(settings)  # before asking: a confirmed send must be able to go out
    plan = send_plan.plan(settings, args.campaign, datetime.now(UTC), force=args.force)
    _print_plan(settings, plan)
    if plan.shortfall is not None and args.force and plan.refusal is None:
        print(f"warning: {plan.shortfall}; sending anyway (--force)", file=sys.stderr)
    if plan.refusal is not None:
        print(f"error: {plan.refusal}", file=sys.stderr)
        return 1
    if args.dry_run:
        print("Dry run: nothing was queued or changed.")
        return 0
    if not args.yes and not _confirmed(args.campaign, plan.recipients):
        return 1
    report = dispatch.send(settings, args.campaign, force=args.force, edition_id=plan.edition.id or None)
    if report.already_queued:
        print(f"Edition {report.edition.id} of {args.campaign} was queued already (by another send).")
        return 0
    print(
        f"Edition {report.edition.id} of {args.campaign}: {report.queued} messages queued. "
        "'imk-outreach deliver --until-empty' sends them (or a running worker does); "
        f"'imk-outreach cancel {report.edition.id}' stops it."
    )
    return 0


def _send_social(settings: Settings, args: argparse.Namespace) -> int:
    """A social campaign: the posts per channel with their slots, ask, then queue them."""
    if args.test_to:
        print(
            f"error: {args.campaign} is a social campaign: it sends no test mail; "
            f"'imk-outreach preview {args.campaign}' shows every post",
            file=sys.stderr,
        )
        return 2
    planned = social_queue.plan_posts(settings, args.campaign)
    print(f"Send {args.campaign}: {len(planned)} posts")
    for post, at in planned:
        print(
            f"  {post.channel} ({post.language}) at {local_time(settings, at)}: {post.length}/{post.limit}, "
            f"{' '.join(post.text.split())[:60]}"
        )
    if args.dry_run:
        print("Dry run: nothing was queued or changed.")
        return 0
    if not args.yes and not _confirmed(args.campaign, len(planned), "post"):
        return 1
    report = dispatch.send(settings, args.campaign, force=args.force)
    if report.already_queued:
        print(f"Edition {report.edition.id} of {args.campaign} was queued already (by another send).")
        return 0
    print(
        f"Edition {report.edition.id} of {args.campaign}: {report.queued} posts queued at their channels' "
        "slots. 'imk-outreach posts' lists them; deliver, worker or run publishes them when due."
    )
    return 0


def _print_plan(settings: Settings, plan: send_plan.SendPlan) -> None:
    edition = plan.edition
    if plan.frozen:
        which = f"edition {edition.id} ({edition.state}), composed {local_time(settings, edition.created_at)}"
    elif edition.id:
        which = f"edition {edition.id} ({edition.state}), composed again now"
    else:
        which = f"a new edition composed now ({edition.state})"
    print(f"Send {plan.campaign}: {which}")
    print(f"  {plan.items} items, {plan.new_items} new (the campaign needs {plan.min_items}: min_items)")
    print(f"  to the list {plan.list_name}:")
    for lang in plan.languages:
        print(f'    {lang.language}: {_recipients(lang.recipients)}, subject "{lang.subject}"')
    print(f"  {_recipients(plan.recipients)} in all")


def _recipients(count: int, what: str = "recipient") -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


def _confirmed(campaign: str, recipients: int, what: str = "recipient") -> bool:
    """Ask the person at the terminal to type the campaign's name; anything else changes nothing."""
    if not sys.stdin.isatty():
        print(
            "error: send asks for confirmation on a terminal, and there is none; nothing was queued. "
            "Add --yes to send without asking (scripts), or --dry-run to see the plan only",
            file=sys.stderr,
        )
        return False
    try:
        counted = _recipients(recipients, what)
        answer = input(f"Type the campaign name ({campaign}) to queue it for {counted}: ")
    except EOFError:
        answer = ""
    if answer.strip() == campaign:
        return True
    print(f"Not confirmed (you typed {answer.strip()!r}, not {campaign!r}): nothing was queued.")
    return False


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "send",
        parents=[common],
        help="show what a campaign's approved edition would send, ask, then queue it for its list",
    )
    p.add_argument("campaign", metavar="CAMPAIGN")
    p.add_argument("--test-to", metavar="EMAIL", help="send one copy per language to EMAIL now instead")
    p.add_argument("--yes", action="store_true", help="queue without asking (for scripts)")
    p.add_argument("--dry-run", action="store_true", help="show the plan only; change nothing")
    p.add_argument(
        "--force",
        action="store_true",
        help="queue it even with fewer new items than the campaign's min_items",
    )
    p.set_defaults(func=cmd_send)
