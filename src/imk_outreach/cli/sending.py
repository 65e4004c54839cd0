"""Command send: an approved edition into the outbox (or a test copy now)."""

from __future__ import annotations

import argparse
from typing import Any

from imk_outreach.config import Settings
from imk_outreach.services import dispatch

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


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("send", parents=[common], help="queue a campaign's approved edition for its list")
    p.add_argument("campaign", metavar="CAMPAIGN")
    p.add_argument("--test-to", metavar="EMAIL", help="send one copy per language to EMAIL now instead")
    p.set_defaults(func=cmd_send)
