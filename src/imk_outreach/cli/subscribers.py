"""Commands subscribers import|add|remove|export|erase, and serve (the public web pages)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from imk_outreach.cli.output import print_json
from imk_outreach.config import Settings
from imk_outreach.services import subscriptions

# -- subscribers and the web app -------------------------------------------------------------------


def cmd_subscribers_import(settings: Settings, args: argparse.Namespace) -> int:
    report = subscriptions.import_csv(settings, args.file, args.status)
    if args.json:
        print_json(
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


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
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
