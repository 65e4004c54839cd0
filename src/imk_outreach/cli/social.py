"""Commands for social posts: channels (list, test), posts (upcoming per channel), post-now, outbox
resolve, and the social half of preview."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from rich.markup import escape

from imk_outreach.cli.output import iso, local_time, make_console, positive_int, print_json
from imk_outreach.config import Settings
from imk_outreach.models import Post
from imk_outreach.services import channels, social_queue
from imk_outreach.services.social_queue import PostRow


def length_label(post: Post) -> str:
    """``"143/280 (x, weighted)"``: the counted length and the platform's limit."""
    rule = {"x": "weighted, URLs 23", "mastodon": "URLs 23", "bluesky": "graphemes", "linkedin": "characters"}
    over = " [red]over the limit[/]" if post.length > post.limit else ""
    return f"{post.length}/{post.limit} ({post.platform}: {rule.get(post.platform, 'characters')}){over}"


def print_post(settings: Settings, post: Post, when: datetime | None, header: str) -> None:
    console = make_console()
    at = f", {local_time(settings, when)}" if when is not None else ""
    console.print(f"[bold]{escape(header)}[/] · {post.channel} · {post.language}{at} · {length_label(post)}")
    for line in post.text.splitlines() or [""]:
        console.print(f"    {escape(line)}", highlight=False)
    notes = []
    if post.shortened:
        notes.append(
            "shortened to fit (items left out)" if post.key == "digest" else "teaser shortened to fit"
        )
    if post.image is not None:
        notes.append(f'image with alt text "{post.image.alt}"')
    if post.card is not None and post.platform in ("bluesky", "linkedin"):
        notes.append(f"link card: {post.card.url}")
    for item_id in post.fallbacks:
        notes.append(f"fallback (original language) for item {item_id}")
    for note in notes:
        console.print(f"    [dim]· {escape(note)}[/]")


def preview_social(settings: Settings, campaign: str) -> int:
    shown = social_queue.preview_social(settings, campaign)
    console = make_console()
    edition = shown.edition
    console.print(f"Edition {edition.id} of {campaign} ({edition.state}), {len(edition.items)} items:")
    if shown.skipped:
        console.print(f"[yellow]Would be skipped: {shown.skipped}[/]")
    if not shown.posts:
        console.print("  no posts: no new items match the campaign's select")
    for post, at in shown.posts:
        print_post(settings, post, at, f"post for {post.key}")
    print_upcoming(settings, shown.upcoming.items())
    return 0


def print_upcoming(settings: Settings, grouped: Iterable[tuple[str, list[PostRow]]]) -> None:
    console = make_console()
    lines = [(name, rows) for name, rows in grouped]
    if not any(rows for _, rows in lines):
        console.print("Upcoming posts: none")
        return
    console.print("Upcoming posts, per channel in slot order:")
    for name, rows in lines:
        console.print(f"  [bold]{name}[/]: {len(rows)} waiting" if rows else f"  {name}: none")
        for row in rows:
            title = " ".join(row.post.text.split())[:60]
            state = row.state if row.state != "queued" else "at " + local_time(settings, row.next_attempt_at)
            if row.state == "retry":
                state = f"retry at {local_time(settings, row.next_attempt_at)}"
            console.print(f"    {row.id:>5}  {state:<22} {escape(title)}", highlight=False)
            if row.state in ("retry", "unknown") and (row.error or row.reply):
                console.print(f"           [yellow]{escape(row.error or row.reply or '')}[/]")


def cmd_posts(settings: Settings, args: argparse.Namespace) -> int:
    grouped = social_queue.upcoming(settings, args.channel)
    if args.json:
        print_json({name: [post_json(r) for r in rows] for name, rows in grouped.items()})
        return 0
    print_upcoming(settings, grouped.items())
    for name, reason in channels.paused(settings).items():
        make_console().print(
            f"[red]{name} is paused[/]: {escape(reason)} (fix it, then 'imk-outreach channels test {name}')"
        )
    return 0


def post_json(row: PostRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "edition": row.edition_id,
        "campaign": row.campaign,
        "channel": row.channel,
        "key": row.key,
        "state": row.state,
        "attempts": row.attempts,
        "at": iso(row.next_attempt_at),
        "language": row.post.language,
        "text": row.post.text,
        "length": row.post.length,
        "limit": row.post.limit,
        "remote_id": row.remote_id,
        "url": row.remote_url,
        "reply": row.reply,
        "error": row.error,
    }


def cmd_channels(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "test":
        if not args.name:
            print(
                "usage: imk-outreach channels test NAME (a name from config.yaml channels:)", file=sys.stderr
            )
            return 2
        return _test(settings, args.name)
    statuses = channels.channel_statuses(settings)
    console = make_console()
    if not statuses:
        console.print("No channels. Add social accounts under channels: in config.yaml (see docs/config.md).")
        return 0
    for status in statuses:
        slots = ", ".join(status.slots) or "at once"
        cap = f", at most {status.daily_cap} a day" if status.daily_cap else ""
        console.print(f"[bold]{status.name}[/] ({status.type}, {status.language}): {slots}{cap}")
        if status.paused_reason:
            console.print(f"    [red]paused[/]: {escape(status.paused_reason)}")
        elif status.checked_as:
            console.print(
                f"    last test: {escape(status.checked_as)} at {local_time(settings, status.checked_at)}"
            )
    return 0


def _test(settings: Settings, name: str) -> int:
    result = channels.test_channel(settings, name)
    console = make_console()
    if result.ok:
        console.print(f"{name}: ok, {escape(result.message)}")
        if result.was_paused:
            console.print(f"{name}: the pause is lifted; its waiting posts go out again")
        return 0
    console.print(f"[red]{name}: {escape(result.message)}[/]")
    return 1


def cmd_post_now(settings: Settings, args: argparse.Namespace) -> int:
    row = social_queue.post_now(settings, args.post_id)
    paused = channels.paused(settings)
    console = make_console()
    console.print(f"post {row.id} on {row.channel} goes with the next delivery run ('imk-outreach deliver')")
    if row.channel in paused:
        console.print(
            f"[yellow]{row.channel} is paused ({escape(paused[row.channel])}): it waits until "
            f"'imk-outreach channels test {row.channel}' passes[/]"
        )
    return 0


def cmd_outbox(settings: Settings, args: argparse.Namespace) -> int:
    who = args.by or getpass.getuser()
    row = social_queue.resolve(settings, args.id, args.verdict, who)
    make_console().print(f"post {row.id} on {row.channel}: {row.state} ({escape(row.reply or '')})")
    return 0


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "channels", parents=[common], help="social channels: list them, or test one's credentials"
    )
    p.add_argument("action", nargs="?", choices=("list", "test"), default="list")
    p.add_argument("name", nargs="?", help="the channel to test (a name from config.yaml channels:)")
    p.set_defaults(func=cmd_channels)

    p = sub.add_parser("posts", parents=[common], help="social posts waiting, per channel in slot order")
    p.add_argument("--channel", help="only this channel")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_posts)

    p = sub.add_parser(
        "post-now", parents=[common], help="send a waiting post at once (past its slot and cap)"
    )
    p.add_argument("post_id", type=positive_int, metavar="POST_ID")
    p.set_defaults(func=cmd_post_now)

    p = sub.add_parser(
        "outbox", parents=[common], help="settle a post whose outcome is unknown (or retry a failed one)"
    )
    outbox_sub = p.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")
    r = outbox_sub.add_parser("resolve", parents=[common], help="resolve ID sent|retry|failed")
    r.add_argument("id", type=positive_int, metavar="ID")
    r.add_argument("verdict", choices=social_queue.RESOLUTIONS)
    r.add_argument("--by", help="who settles it (default: your user name)")
    r.set_defaults(func=cmd_outbox)
