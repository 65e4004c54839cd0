"""Commands subscribers import|add|remove|show|export|erase, and serve (the public web pages)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from imk_outreach.cli.output import iso, local_time, make_console, print_json
from imk_outreach.cli.records import delivery_json, last_reply, sent_time
from imk_outreach.config import Settings
from imk_outreach.models import Subscriber
from imk_outreach.services import consent, records, subscriptions

# -- subscribers and the web app -------------------------------------------------------------------


def cmd_subscribers_import(settings: Settings, args: argparse.Namespace) -> int:
    report = subscriptions.import_csv(settings, args.file, args.status, consent_note=args.consent_note)
    if args.json:
        print_json(_import_json(report))
    else:
        print(f"{args.file}: {report.read_as}")
        for outcome in report.lines:
            print(outcome)
        print(
            f"imported {report.imported}, updated {report.updated}, unchanged {report.unchanged}, "
            f"rejected {len(report.rejected)}"
        )
        if report.mailed or report.mail_failures:
            print(f"confirmation mails queued: {report.mailed} (sent by deliver, worker or run)")
        for email, reason in report.mail_failures:
            print(f"confirmation mail not sent to {email}: {reason}")
        if report.ignored_columns:
            print(f"note: columns ignored: {', '.join(report.ignored_columns)}")
    return 3 if report.rejected or report.mail_failures else 0


def _import_json(report: subscriptions.ImportReport) -> dict[str, Any]:
    return {
        "imported": report.imported,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "rejected": [{"line": r.line, "email": r.email, "reason": r.reason} for r in report.rejected],
        "mailed": report.mailed,
        "mail_failures": [{"email": e, "reason": reason} for e, reason in report.mail_failures],
        "ignored_columns": list(report.ignored_columns),
        "encoding": report.encoding,
        "delimiter": report.delimiter,
        "lines": [
            {"line": o.line, "email": o.email, "action": o.action, "status": o.status, "note": o.note}
            for o in report.lines
        ],
    }


def cmd_subscribers_add(settings: Settings, args: argparse.Namespace) -> int:
    result = subscriptions.add(
        settings,
        args.email,
        args.name,
        args.language,
        args.lists or (),
        args.status,
        consent_note=args.consent_note,
    )
    sub = result.subscriber
    print(f"added {sub.email} ({sub.status}; language {sub.language}; lists {', '.join(sub.lists)})")
    if result.mailed:
        print(f"confirmation mail queued for {sub.email} (sent by deliver, worker or run)")
    return 0


def cmd_subscribers_remove(settings: Settings, args: argparse.Namespace) -> int:
    sub = subscriptions.remove(settings, args.email)
    print(f"unsubscribed {sub.email} (record and consent evidence kept; 'subscribers erase' deletes them)")
    return 0


def cmd_subscribers_show(settings: Settings, args: argparse.Namespace) -> int:
    found = records.subscriber_record(settings, args.email)
    if args.json:
        print_json(_show_json(settings, found))
        return 0
    sub = found.subscriber
    console = make_console()
    console.print(f"[bold]{sub.email}[/]" + (f" ({sub.name})" if sub.name else ""))
    for label, value in _show_lines(settings, found):
        console.print(f"  {label + ':':<15} {value}", markup=False)
    _print_history(settings, console, consent.history(settings, sub.id))
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


def _print_history(settings: Settings, console: Console, evidence: consent.Evidence) -> None:
    if not evidence.events:
        console.print("  consent history: none recorded", markup=False)
        return
    console.print("  consent history (oldest first):", markup=False)
    for event in evidence.events:
        parts = [
            *([f"consent text {event.consent_version} ({event.language})"] if event.consent_version else []),
            *([f"via {event.source}"] if event.source else []),
            *(["IP hash kept"] if event.ip_hash else []),
            *([f"note: {event.note}"] if event.note else []),
        ]
        line = f"    {local_time(settings, event.at)} {event.kind}" + (
            f": {', '.join(parts)}" if parts else ""
        )
        console.print(line, markup=False)


def _signup(settings: Settings, sub: Subscriber) -> str:
    if sub.signup_at is None and sub.source is None:
        return "not recorded"
    return f"{local_time(settings, sub.signup_at)} via {sub.source or 'an unrecorded way'}"


def _show_json(settings: Settings, found: records.SubscriberRecord) -> dict[str, Any]:
    sub = found.subscriber
    evidence = consent.history(settings, sub.id)
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
            "events": [consent.event_json(event) for event in evidence.events],
            "texts": evidence.texts,
        },
        "unsubscribed_at": iso(sub.unsubscribed_at),
        "bounce_reason": sub.bounce_reason,
        "created_at": iso(sub.created_at),
        "deliveries": [{**delivery_json(d), "campaign": d.campaign} for d in found.deliveries],
    }


def cmd_subscribers_export(settings: Settings, args: argparse.Namespace) -> int:
    records = subscriptions.export(settings, args.email)
    try:
        if args.format == "json":  # streamed: memory stays flat however long the list is
            sys.stdout.write('{"subscribers": [')
            for index, record in enumerate(records):
                sys.stdout.write(("," if index else "") + "\n  " + json.dumps(record, ensure_ascii=False))
            sys.stdout.write("\n]}\n")
        else:
            writer = csv.DictWriter(
                sys.stdout, fieldnames=subscriptions.EXPORT_CSV_COLUMNS, lineterminator="\n"
            )
            writer.writeheader()
            for record in records:
                writer.writerow(subscriptions.csv_cells(record))
        sys.stdout.flush()
    except BrokenPipeError:
        return reader_gone()
    return 0


def reader_gone() -> int:
    """The reader of stdout went away (``export | head``): stop quietly, as Unix tools do, with the exit
    code of a process ended by SIGPIPE (141). Python's own flush at exit must not complain either."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass  # stdout is not a file (a test's capture): nothing is flushed at exit
    return 141


def cmd_subscribers_erase(settings: Settings, args: argparse.Namespace) -> int:
    found = records.subscriber_record(settings, args.email)  # an unknown address fails here, unasked
    address = found.subscriber.email
    if not args.yes and not _erase_confirmed(found):
        return 1
    erased = subscriptions.erase(settings, address)
    print(f"erased {address}: only a keyed hash of the address is kept, so no import adds it again")
    if erased.outbox_rows:
        print(f"  {erased.outbox_rows} outbox rows kept for the delivery counts, without the address")
    if not erased.files_cleared:
        print(
            "  note: the database files could not be cleared yet (another process was reading); "
            "see 'Erasure' in docs/subscribers.md"
        )
    return 0


def _erase_confirmed(found: records.SubscriberRecord) -> bool:
    """On a terminal: the person types the address (or yes); anything else changes nothing."""
    sub, address = found.subscriber, found.subscriber.email
    if not sys.stdin.isatty():
        print(
            "error: erase asks for confirmation on a terminal, and there is none; nothing was erased. "
            "Add --yes to erase without asking (scripts)",
            file=sys.stderr,
        )
        return False
    who = ", ".join(filter(None, [sub.name, sub.status, f"{len(found.deliveries)} messages queued for them"]))
    print(f"Erase {address} ({who}) for good?")
    print("Their record, lists and consent evidence are deleted; this cannot be undone.")
    try:
        answer = input(f"Type the address ({address}) or yes to erase: ").strip()
    except EOFError:
        answer = ""
    if answer.lower() in (address.lower(), "yes"):
        return True
    print(f"Not confirmed (you typed {answer!r}): nothing was erased.")
    return False


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from imk_outreach.web.app import create_app  # the web shell, only for this command
    from imk_outreach.web.hygiene import uvicorn_log_config

    app = create_app(settings)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="info",
        log_config=uvicorn_log_config(),  # the access log without tokens and client addresses
        server_header=False,
    )
    return 0


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser("subscribers", parents=[common], help="import, add, remove, show, export, erase")
    commands = group.add_subparsers(dest="subscribers_command", required=True, metavar="ACTION")

    p = commands.add_parser("import", parents=[common], help="import subscribers from a CSV file")
    p.add_argument("file", type=Path, metavar="FILE.csv", help="header row; email, name, language, lists")
    p.add_argument(
        "--status",
        choices=subscriptions.IMPORT_STATUSES,
        help="for rows without a status (every row, when the file has no status column; then it is "
        "required): pending (each new address gets a confirmation mail) or confirmed (consent given "
        "elsewhere; needs --consent-note)",
    )
    p.add_argument(
        "--consent-note",
        metavar="TEXT",
        help="where these people gave their consent (e.g. 'paper forms, trade fair 2026-10'); kept as "
        "evidence in each one's consent history",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_subscribers_import)

    p = commands.add_parser("add", parents=[common], help="add one subscriber")
    p.add_argument("email", metavar="EMAIL")
    p.add_argument("--name", metavar="N", default="")
    p.add_argument("--language", metavar="LANG", help="a configured language (default: the first)")
    p.add_argument("--list", dest="lists", action="append", metavar="L", help="a list (repeatable)")
    p.add_argument("--status", choices=subscriptions.IMPORT_STATUSES, default="confirmed")
    p.add_argument("--consent-note", metavar="TEXT", help="where their consent comes from (kept as evidence)")
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

    p = commands.add_parser(
        "erase", parents=[common], help="delete a subscriber for good (asks first on a terminal)"
    )
    p.add_argument("email", metavar="EMAIL")
    p.add_argument("--yes", action="store_true", help="erase without asking (for scripts)")
    p.set_defaults(func=cmd_subscribers_erase)

    p = sub.add_parser(
        "serve", parents=[common], help="run the web app: sign-up pages, and the staff app at /admin"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.set_defaults(func=cmd_serve)
