"""Command deliveries: who got an edition, one row per recipient, with the server's last reply."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.table import Table

from imk_outreach.cli.output import iso, local_time, make_console, positive_int
from imk_outreach.config import Settings
from imk_outreach.services import records

TTY_ROWS = 200  # a terminal shows this many; piped output and --json stream every row
COLUMNS = ("recipient", "language", "state", "attempts", "sent", "next try", "last reply")


def cmd_deliveries(settings: Settings, args: argparse.Namespace) -> int:
    found = records.edition_deliveries(settings, args.edition, args.state)
    rows = records.iter_deliveries(settings, args.edition, args.state)
    if args.json:
        _print_json(found, rows)
    elif sys.stdout.isatty():
        _print_table(settings, found, args.state)
    else:
        print("\t".join(COLUMNS))
        for record in rows:
            print("\t".join(_cells(settings, record)))
    return 0


def delivery_json(record: records.OutboxRecord) -> dict[str, Any]:
    """One outbox row in ``--json`` output (``deliveries`` and ``subscribers show``)."""
    return {
        "id": record.id,
        "edition": record.edition_id,
        "channel": record.channel,
        "email": record.email,
        "language": record.language,
        "state": record.state,
        "attempts": record.attempts,
        "reply": record.reply,
        "error": record.error,
        "message_id": record.message_id,
        "sent_at": iso(record.updated_at) if record.state == "sent" else None,
        "next_attempt_at": iso(record.next_attempt_at) if record.state == "retry" else None,
        "updated_at": iso(record.updated_at),
    }


def last_reply(record: records.OutboxRecord) -> str:
    """What the server last said (or, for a row never answered, why it did not go out)."""
    return " ".join((record.error or record.reply or "").split())


def sent_time(settings: Settings, record: records.OutboxRecord) -> str:
    return local_time(settings, record.updated_at) if record.state == "sent" else "-"


def next_time(settings: Settings, record: records.OutboxRecord) -> str:
    return local_time(settings, record.next_attempt_at) if record.state == "retry" else "-"


def _cells(settings: Settings, record: records.OutboxRecord) -> list[str]:
    return [
        record.email
        or ("(erased)" if record.channel in ("email", "confirm") else f"post on {record.channel}"),
        record.language,
        record.state,
        str(record.attempts),
        sent_time(settings, record),
        next_time(settings, record),
        last_reply(record) or "-",
    ]


def _print_json(found: records.EditionDeliveries, rows: Any) -> None:
    """Streamed row by row: memory stays flat however many recipients the edition had."""
    edition = found.edition
    head = {"id": edition.id, "campaign": edition.campaign, "state": edition.state}
    sys.stdout.write(
        f'{{"edition": {json.dumps(head)}, "counts": {json.dumps(found.counts)}, "deliveries": ['
    )
    for index, record in enumerate(rows):
        text = json.dumps(delivery_json(record), ensure_ascii=False)
        sys.stdout.write(("," if index else "") + "\n  " + text)
    sys.stdout.write("\n]}\n")


def _print_table(settings: Settings, found: records.EditionDeliveries, state: str | None) -> None:
    edition = found.edition
    console = make_console()
    counts = ", ".join(f"{n} {s}" for s, n in found.counts.items() if n) or "no rows in the outbox"
    console.print(f"Edition {edition.id} ({edition.campaign}, {edition.state}): {counts}")
    table = Table(*COLUMNS)
    shown = 0
    for record in records.iter_deliveries(settings, edition.id, state, limit=TTY_ROWS):
        table.add_row(*_cells(settings, record))
        shown += 1
    if shown:
        console.print(table)
    elif state:
        console.print(f"no rows in state {state}")
    total = found.rows(state)
    if total > shown:
        console.print(
            f"showing the first {shown} of {total} rows; for all of them pipe the output "
            f"(imk-outreach deliveries {edition.id} | less) or use --json"
        )


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "deliveries",
        parents=[common],
        help="who got an edition: one row per recipient with state and server reply",
        description=(
            "One row per recipient of an edition: address, language, state, attempts, when it was sent, "
            "the next try of a row waiting for a retry, and the mail server's last reply."
        ),
    )
    p.add_argument(
        "edition", type=positive_int, metavar="EDITION", help="edition id (see 'imk-outreach editions')"
    )
    p.add_argument("--state", choices=records.OUTBOX_STATES, help="only rows in this state")
    p.add_argument("--json", action="store_true", help="machine-readable output (streamed)")
    p.set_defaults(func=cmd_deliveries)
