"""Commands subscribers import|add|remove|show|export|erase, and serve (the public web pages)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from imk_outreach.cli.output import iso, local_time, make_console, print_json
from imk_outreach.cli.records import delivery_json, last_reply, sent_time
from imk_outreach.config import Settings
from imk_outreach.models import Subscriber
from imk_outreach.services import records, subscriptions

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


def cmd_subscribers_show(settings: Settings, args: argparse.Namespace) -> int:
    found = records.subscriber_record(settings, args.email)
    if args.json:
        print_json(_show_json(found))
        return 0
    sub = found.subscriber
    console = make_console()
    console.print(f"[bold]{sub.email}[/]" + (f" ({sub.name})" if sub.name else ""))
    for label, value in _show_lines(settings, found):
        console.print(f"  {label + ':':<15} {value}", markup=False)
    if not found.deliveries:
        console.print("  nothing sent to this address yet", markup=False)
    else:
        console.print("  sent to them (newest first):", markup=False)
    for d in found.deliveries:
        when = (
            sent_time(settings, d) if d.state == "sent" else f"updated {local_time(settings, d.updated_at)}"
        )
        reply = last_reply(d)
        console.print(
            f"    edition {d.edition_id} ({d.campaign}, {d.language}): {d.state}, {when}"
            + (f", attempts {d.attempts}" if d.attempts != 1 else "")
            + (f": {reply}" if reply else ""),
            markup=False,
        )
    return 0


def _show_lines(settings: Settings, found: records.SubscriberRecord) -> list[tuple[str, str]]:
    sub = found.subscriber
    lists = ", ".join(f"{name} ({label})" for name, label in found.list_labels.items()) or "none"
    status = sub.status + (f" ({sub.bounce_reason})" if sub.bounce_reason else "")
    return [
        ("status", status),
        ("language", sub.language),
        ("lists", lists),
        ("signed up", _signup(settings, sub)),
        ("confirmed", local_time(settings, sub.confirmed_at)),
        ("unsubscribed", local_time(settings, sub.unsubscribed_at)),
        ("consent text", sub.consent_version or "-"),
        ("IP hash", sub.ip_hash or "- (none stored)"),
        ("record created", local_time(settings, sub.created_at)),
    ]


def _signup(settings: Settings, sub: Subscriber) -> str:
    if sub.signup_at is None and sub.source is None:
        return "not recorded"
    return f"{local_time(settings, sub.signup_at)} via {sub.source or 'an unrecorded way'}"


def _show_json(found: records.SubscriberRecord) -> dict[str, Any]:
    sub = found.subscriber
    return {
        "email": sub.email,
        "name": sub.name,
        "status": sub.status,
        "language": sub.language,
        "lists": list(sub.lists),
        "consent": {
            "signup_at": iso(sub.signup_at),
            "source": sub.source,
            "confirmed_at": iso(sub.confirmed_at),
            "consent_version": sub.consent_version,
            "ip_hash": sub.ip_hash,
        },
        "unsubscribed_at": iso(sub.unsubscribed_at),
        "bounce_reason": sub.bounce_reason,
        "created_at": iso(sub.created_at),
        "deliveries": [{**delivery_json(d), "campaign": d.campaign} for d in found.deliveries],
    }


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
    group = sub.add_parser("subscribers", parents=[common], help="import, add, remove, show, export, erase")
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

    p = commands.add_parser(
        "show", parents=[common], help="one subscriber: status, lists, consent and what was sent to them"
    )
    p.add_argument("email", metavar="EMAIL")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_subscribers_show)

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
