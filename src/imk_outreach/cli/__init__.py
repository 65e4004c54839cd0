"""The ``imk-outreach`` command: parse input, call one service, format the result.

One module per command group; each registers its commands with ``add_parsers``.
Exit codes: 0 done, 1 bad input or a failed step, 2 usage, 3 partly done.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from imk_outreach import __version__
from imk_outreach.cli import (
    delivery,
    demo,
    gather,
    logs,
    newsletters,
    ops,
    records,
    sending,
    social,
    subscribers,
    users,
)
from imk_outreach.config import load_settings
from imk_outreach.durations import parse_duration
from imk_outreach.errors import ImkError

GROUPS = (gather, newsletters, sending, delivery, records, social, ops, demo, subscribers, users)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help="path of config.yaml (default: ./config.yaml, or $IMK_CONFIG)",
    )
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output")
    common.add_argument(
        "--log-format",
        choices=("plain", "json"),
        default=argparse.SUPPRESS,
        help="log lines on stderr: plain (default) or JSON lines",
    )
    parser = argparse.ArgumentParser(
        prog="imk-outreach",
        description="Gather cluster news, compose bilingual newsletters and posts, deliver them.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"imk-outreach {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_parsers(sub, common)
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
    logs.setup(
        getattr(args, "verbose", 0),
        getattr(args, "log_format", "plain"),
        getattr(args, "long_running", False),
    )
    config = getattr(args, "config", None) or os.environ.get("IMK_CONFIG")
    try:
        settings = load_settings(config)
        code: int = args.func(settings, args)
        sys.stdout.flush()  # here, so that a reader gone (`items --json | head`) is caught below
        return code
    except BrokenPipeError:
        return subscribers.reader_gone()
    except ImkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
