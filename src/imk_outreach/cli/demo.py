"""Commands demo: the end-to-end tour on the bundled samples."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imk_outreach.cli.gather import items_table, print_gather
from imk_outreach.cli.output import make_console
from imk_outreach.cli.social import print_post
from imk_outreach.config import Settings, database_url
from imk_outreach.services import catalog, compose, demo, ingest, preview

# -- demo ------------------------------------------------------------------------------------------


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    console = make_console()
    now = datetime.now(UTC)
    with demo.PictureServer() as pictures:
        settings = demo.demo_settings(settings, now, pictures)
        console.rule("[bold]imk-outreach demo: gathering the bundled sample sources")
        console.print(
            f"Read from copies in {settings.resolve_path('var/demo/samples')}, every date moved by the same "
            "number of days so the newest sample is from yesterday (the tour looks the same on any day). "
            f"Their images come from a local server ({pictures.url}) standing in for the news sites."
        )
        result = ingest.gather(settings, now=now)
    print_gather(result.reports)
    items = catalog.find_items(settings)
    for (section, language), members in demo.group_for_demo(items, settings.languages):
        console.print(items_table(settings, members, f"{demo.DEMO_SECTIONS[section]} - {language}"))
    console.rule("[bold]Newsletter previews (compose + render, German and English)")
    previews = []
    for campaign in compose.load_campaigns(settings)[0]:
        if campaign.kind != "newsletter":
            continue
        shown = preview.preview(settings, campaign.name, settings.resolve_path("var/demo/preview"), now)
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
    social_tour = None
    if settings.channels:
        console.rule("[bold]Social posts of the new items (file channels standing in for X and Mastodon)")
        social_tour = demo.social_tour(settings, now)
        for note in social_tour.notes:
            console.print(f"[yellow]{note}[/]")
        if not social_tour.posts:
            console.print("No posts: no new item matches a social campaign.")
        for row in social_tour.posts:
            print_post(settings, row.post, None, f"post {row.id} ({row.campaign}, {row.state})")
    console.rule("[bold]Where to look")
    for index in previews:
        console.print(f"preview:       {index}")
    console.print(f"mails:         {tour.maildir}  (a Maildir: new/ holds one .eml-style file per message)")
    if social_tour is not None:
        console.print(f"posts:         {social_tour.folder}  (one JSON line per post and channel)")
    console.print(f"database:      {database_url(settings)}  (the demo's own, made afresh each run)")
    console.print(f"config:        {settings.config_path}  (sources, tagging rules; keys in docs/config.md)")
    prog = f"IMK_DATABASE_URL={database_url(settings)} {_program()}"
    console.print("explore the demo's data:")
    console.print(f"  {prog} items --since 30d   (or --json, --tag film, --source bfi-news)")
    console.print(f"  {prog} sources")
    console.print(f"  {prog} status")
    if social_tour is not None:
        console.print(f"  {prog} posts   (and: channels, preview bfi-auto)")
    console.print(
        f"  {prog} serve   (the web app: sign-up pages, and the item images the previews and mails "
        f"show, from {settings.public_url}/media/)"
    )
    return result.exit_code


def _program() -> str:
    """How the user can run this command again from where they are (``.venv/bin/imk-outreach``)."""
    path = Path(sys.argv[0])
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return path.name if path.name != "__main__.py" else "python -m imk_outreach"


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("demo", parents=[common], help="the end-to-end tour on the sample sources")
    p.set_defaults(func=cmd_demo)
