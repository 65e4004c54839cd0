"""Subscribers: CSV import.

Decisions:

* The import honours a ``status`` column (pending, confirmed, unsubscribed, bounced), so importing an
  export changes nothing. A file without one needs ``status``: ``pending`` (each new address gets the
  confirmation mail) or ``confirmed`` together with a consent note saying where the consent comes from
  (kept as evidence in each person's ``import`` event). A ``confirmed`` row of a status column needs
  evidence too: its ``confirmed_at`` (an export has it) or the note.
* An import never changes a stored subscriber's status: a pending person stays pending until their own
  link confirms them, an unsubscribed or bounced one is not subscribed again (a row that asks for it is
  rejected), and a confirmed one stays confirmed. It only adds: a given name or language replaces the
  stored one, given lists are added (never removed). The stored evidence is kept as it is.
* A new subscriber takes the evidence columns of an export (``signup_at``, ``confirmed_at``,
  ``unsubscribed_at``, ``consent_version``, ``source``, ``bounce_reason``) when present, so a move to a
  new database keeps them; the exported ``consent_history`` goes into their ``import`` event.
* Each line gets an outcome: added, updated, unchanged or rejected (with the reason), naming its line.
  Unchanged rows leave no trace: importing the same file twice changes nothing, not even the evidence.
* Cells are read as exported (an apostrophe that kept a spreadsheet from running a formula is taken
  off; see :mod:`csv_cells`); encoding and separator as in :mod:`subscriber_csv`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

from sqlalchemy import Connection

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import SUBSCRIBER_STATES, Subscriber
from imk_outreach.services import consent, tokens
from imk_outreach.services.database import engine_for
from imk_outreach.services.subscriber_base import (
    IMPORT_COLUMNS,
    IMPORT_STATUSES,
    ImportFileError,
    InputError,
    Mailer,
    check_address,
    check_language,
    check_lists,
    check_name,
    queue_confirmation,
)
from imk_outreach.services.subscriber_csv import Record, detect_format, iter_records, read_header

log = logging.getLogger(__name__)

EVIDENCE_COLUMNS = (
    "status",
    "signup_at",
    "confirmed_at",
    "unsubscribed_at",
    "consent_version",
    "source",
    "bounce_reason",
    "consent_history",
)
READ_COLUMNS = (*IMPORT_COLUMNS, *EVIDENCE_COLUMNS)
MAX_CELL = 1000
MAX_HISTORY = 100_000
_TEXT_LIMITS = {
    "consent_version": 100,
    "source": 200,
    "bounce_reason": MAX_CELL,
    "consent_history": MAX_HISTORY,
}
Action = Literal["added", "updated", "unchanged", "rejected"]


class Rejection(NamedTuple):
    """A row not imported: its line in the file, the address as written, and why."""

    line: int
    email: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.email or '(no address)'}: {self.reason}"


@dataclass(frozen=True)
class LineOutcome:
    """What the import did with one line: ``status`` is the subscriber's status after it (None when
    rejected); ``note`` says why it was rejected, what changed, or a status the file asked for and the
    import did not take."""

    line: int
    email: str
    action: Action
    status: str | None = None
    note: str = ""

    def __str__(self) -> str:
        head = f"line {self.line}: {self.email or '(no address)'}: {self.action}"
        if self.action == "rejected":
            return f"{head}: {self.note}"
        details = ", ".join(filter(None, [self.status, self.note]))
        return f"{head} ({details})" if details else head


@dataclass
class ImportReport:
    """What an import did. ``lines``: one outcome per line with a record, in file order; ``mailed``:
    confirmation mails queued; ``mail_failures``: none any more (a mail the server refuses shows in
    the outbox; kept for the JSON shape); ``encoding`` and ``delimiter``: how the file was read."""

    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    mailed: int = 0
    mail_failures: list[tuple[str, str]] = field(default_factory=list)
    ignored_columns: tuple[str, ...] = ()
    lines: list[LineOutcome] = field(default_factory=list)
    encoding: str = ""
    delimiter: str = ","
    read_as: str = ""

    def add(self, outcome: LineOutcome) -> None:
        self.lines.append(outcome)
        if outcome.action == "rejected":
            self.rejected.append(Rejection(outcome.line, outcome.email, outcome.note))
        elif outcome.action == "added":
            self.imported += 1
        elif outcome.action == "updated":
            self.updated += 1
        else:
            self.unchanged += 1


@dataclass(frozen=True)
class _Evidence:
    """The evidence columns of a row (as an export writes them), for a subscriber new to this database."""

    signup_at: datetime | None = None
    confirmed_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    consent_version: str | None = None
    source: str | None = None
    bounce_reason: str | None = None
    history: str | None = None


@dataclass(frozen=True)
class _Row:
    line: int
    email: str
    name: str | None
    language: str | None
    lists: tuple[str, ...]
    status: str
    status_from: str  # "file" (the status column) or "option" (the status given to the import)
    evidence: _Evidence


@dataclass(frozen=True)
class _Import:
    """What every row of one import shares."""

    settings: Settings
    secret: str
    file: Path
    source: str
    note: str | None
    now: datetime


def import_csv(
    settings: Settings,
    path: str | Path,
    status: str | None = None,
    now: datetime | None = None,
    mailer: Mailer | None = None,  # unused: the outbox sends the mails (kept for callers)
    consent_note: str | None = None,
) -> ImportReport:
    """Import subscribers from a CSV file: a header row, ``email`` required, optional ``name``,
    ``language``, ``lists`` (names separated by ``;`` or ``,``), ``status`` and the other columns of an
    export. Bad rows are rejected one by one, naming the line; the rest are imported in one
    transaction. Each new subscriber made pending by ``status`` gets the confirmation mail queued with
    the row (the outbox sends it, with retries: ``deliver``, ``worker`` or ``run``).

    :param status: ``pending`` or ``confirmed``: the status of rows without one (every row, when the
        file has no status column). Needed when the file has no status column.
    :param consent_note: where the consent of these people comes from; needed with ``confirmed``,
        kept in each person's ``import`` event.
    :raises InputError: an unknown ``status``, or ``confirmed`` without a consent note.
    :raises ImportFileError: the file cannot be read, has no ``email`` column, or has no status column
        and no ``status`` was given.
    """
    now = now or datetime.now(UTC)
    note = " ".join((consent_note or "").split()) or None
    _check_options(status, note)
    file = Path(path)
    form = detect_format(file)  # before the database is opened (or made): a typo is one clear line
    report = ImportReport(encoding=form.encoding, delimiter=form.delimiter, read_as=form.describe())
    _check_header(file, read_header(file, form), status, report)
    records = iter_records(file, form, {**dict.fromkeys(IMPORT_COLUMNS, MAX_CELL), **_TEXT_LIMITS})
    job = _Import(settings, tokens.secret_key(settings), file, f"import:{file.name}", note, now)
    seen: dict[str, int] = {}
    with engine_for(settings).begin() as conn:
        for row in _parsed_rows(settings, records, status, note):
            outcome = row if isinstance(row, LineOutcome) else _import_row(conn, job, row, seen)
            if isinstance(outcome, tuple):  # queued with the row: the outbox sends it (deliver, worker, run)
                outcome, subscriber = outcome
                queue_confirmation(conn, subscriber, now)
                report.mailed += 1
            report.add(outcome)
    return report


def _check_options(status: str | None, note: str | None) -> None:
    if status is not None and status not in IMPORT_STATUSES:
        raise InputError("status", status, f"unknown status {status!r} (use {' or '.join(IMPORT_STATUSES)})")
    if status == "confirmed" and note is None:
        raise InputError(
            "status",
            status,
            "importing people as confirmed needs --consent-note TEXT saying where their consent comes "
            "from (e.g. --consent-note 'paper sign-up forms, trade fair 2026-10'); it is kept as evidence",
        )


def _check_header(path: Path, header: list[str], status: str | None, report: ImportReport) -> None:
    if "email" not in header:
        shown = ", ".join(header) or "empty"
        raise ImportFileError(path, f"the header row has no 'email' column (found: {shown})", line=1)
    duplicates = sorted({name for name in header if header.count(name) > 1 and name})
    if duplicates:
        raise ImportFileError(path, f"column {duplicates[0]!r} appears twice in the header row", line=1)
    if "status" not in header and status is None:
        raise ImportFileError(
            path,
            "there is no status column, so say what the people in it agreed to: add --status pending "
            "(each new address gets a confirmation mail) or --status confirmed --consent-note TEXT "
            "(they gave their consent elsewhere; TEXT says where, kept as evidence)",
            line=1,
        )
    report.ignored_columns = tuple(name for name in header if name and name not in READ_COLUMNS)


# -- one row ---------------------------------------------------------------------------------------


def _import_row(
    conn: Connection, job: _Import, row: _Row, seen: dict[str, int]
) -> LineOutcome | tuple[LineOutcome, Subscriber]:
    key = store.email_key(row.email)
    if key in seen:
        return _rejected(row, f"duplicate of line {seen[key]}")
    seen[key] = row.line
    existing = store.find_subscriber(conn, row.email)
    if existing is None:
        if store.is_erased(conn, tokens.address_hash(job.secret, row.email)):
            return _rejected(row, "was erased; not re-imported")
        added = _add(conn, job, row)
        outcome = LineOutcome(row.line, row.email, "added", added.status)
        # a pending row of the status column asked for its mail already (in the system it came from)
        return (outcome, added) if row.status == "pending" and row.status_from == "option" else outcome
    if existing.status in ("unsubscribed", "bounced") and row.status in IMPORT_STATUSES:
        return _rejected(row, f"{existing.status} earlier; not re-subscribed by an import")
    return _update(conn, job, row, existing)


def _rejected(row: _Row, reason: str) -> LineOutcome:
    return LineOutcome(row.line, row.email, "rejected", None, reason)


def _add(conn: Connection, job: _Import, row: _Row) -> Subscriber:
    settings, ev, status = job.settings, row.evidence, row.status
    new = Subscriber(
        email=row.email,
        name=row.name or "",
        language=row.language or settings.default_language,
        lists=row.lists or check_lists(settings, (), default=True),
        status=status,
        signup_at=ev.signup_at or job.now,
        confirmed_at=(ev.confirmed_at or job.now)
        if status == "confirmed"
        else _unless(status, ev.confirmed_at),
        unsubscribed_at=ev.unsubscribed_at if status == "unsubscribed" else None,
        consent_version=ev.consent_version,
        source=ev.source or job.source,
        bounce_reason=(ev.bounce_reason or f"marked bounced in {job.file.name}")
        if status == "bounced"
        else None,
    )
    saved = store.save_subscriber(conn, new, job.now)
    detail: dict[str, Any] = {"file": job.file.name, "line": row.line, "status": status}
    detail |= {"status_from": row.status_from, "lists": list(saved.lists)}
    if ev.history:
        detail["history"] = ev.history  # the events of the system the export came from
    _record(conn, job, saved, detail)
    return saved


def _unless(status: str, confirmed_at: datetime | None) -> datetime | None:
    """An exported confirmation time stays for someone who left since, never for a pending one."""
    return None if status == "pending" else confirmed_at


def _update(conn: Connection, job: _Import, row: _Row, existing: Subscriber) -> LineOutcome:
    merged = replace(
        existing,
        name=row.name or existing.name,
        language=row.language or existing.language,
        lists=tuple(sorted(set(existing.lists) | set(row.lists))),
    )
    kept = "" if row.status == existing.status else _kept_status(existing.status, row.status)
    if merged == existing:
        return LineOutcome(row.line, row.email, "unchanged", existing.status, kept)
    saved = store.save_subscriber(conn, merged, job.now)
    changed = [
        name for name in ("name", "language", "lists") if getattr(merged, name) != getattr(existing, name)
    ]
    added_lists = sorted(set(merged.lists) - set(existing.lists))
    detail: dict[str, Any] = {"file": job.file.name, "line": row.line, "changed": changed}
    if added_lists:
        detail["lists_added"] = added_lists
    _record(conn, job, saved, detail)
    what = [f"{name} changed" for name in changed if name != "lists"]
    what += [f"lists {', '.join(added_lists)} added"] if added_lists else []
    return LineOutcome(
        row.line, row.email, "updated", saved.status, "; ".join([*what, *filter(None, [kept])])
    )


def _kept_status(stored: str, asked: str) -> str:
    """The note for a status a row asks for and the import does not take."""
    if stored == "pending" and asked == "confirmed":
        return "stays pending, not confirmed: an import never confirms anyone, only their own link does"
    return f"stays {stored}, not {asked}: an import never changes a stored status"


def _record(conn: Connection, job: _Import, subscriber: Subscriber, detail: dict[str, Any]) -> None:
    consent.record(
        conn,
        subscriber.id,
        "import",
        job.now,
        consent_version=subscriber.consent_version,
        language=subscriber.language,
        source=job.source,
        note=job.note,
        detail=detail,
    )


# -- reading the rows ------------------------------------------------------------------------------


def _parsed_rows(
    settings: Settings, records: Iterator[Record], status: str | None, note: str | None
) -> Iterator[_Row | LineOutcome]:
    for record in records:
        email = record.values.get("email", "").strip()
        if record.error:
            yield LineOutcome(record.line, email, "rejected", None, record.error)
            continue
        try:
            yield _row(settings, record, status, note)
        except InputError as exc:
            yield LineOutcome(record.line, email, "rejected", None, exc.reason)


def _row(settings: Settings, record: Record, status: str | None, note: str | None) -> _Row:
    """:raises InputError: a cell is not acceptable."""
    values = record.values
    language = values.get("language", "").strip()
    lists = values.get("lists", "").replace(",", ";").split(";")
    stated = values.get("status", "").strip().lower()
    row_status = _status(stated, status)
    evidence = _evidence(values)
    if stated == "confirmed" and evidence.confirmed_at is None and note is None:
        raise InputError(
            "status",
            stated,
            "confirmed, but without confirmed_at: say where the consent comes from with --consent-note TEXT",
        )
    return _Row(
        line=record.line,
        email=check_address(values.get("email", "")),
        name=check_name(values.get("name")) or None,
        language=check_language(settings, language) if language else None,
        lists=check_lists(settings, lists, default=False) if any(n.strip() for n in lists) else (),
        status=row_status,
        status_from="file" if stated else "option",
        evidence=evidence,
    )


def _status(stated: str, default: str | None) -> str:
    if not stated:
        if default is None:
            raise InputError("status", "", f"empty status (use {', '.join(SUBSCRIBER_STATES)}, or --status)")
        return default
    if stated not in SUBSCRIBER_STATES:
        raise InputError("status", stated, f"unknown status {stated!r} (use {', '.join(SUBSCRIBER_STATES)})")
    return stated


def _evidence(values: dict[str, str]) -> _Evidence:
    return _Evidence(
        signup_at=_moment(values, "signup_at"),
        confirmed_at=_moment(values, "confirmed_at"),
        unsubscribed_at=_moment(values, "unsubscribed_at"),
        consent_version=_text(values, "consent_version"),
        source=_text(values, "source"),
        bounce_reason=_text(values, "bounce_reason"),
        history=_text(values, "consent_history"),
    )


def _moment(values: dict[str, str], column: str) -> datetime | None:
    text = values.get(column, "").strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InputError(
            column, text, f"{column} {text!r} is not a time with offset (as an export writes it)"
        )
    return moment.astimezone(UTC)


def _text(values: dict[str, str], column: str) -> str | None:
    """An evidence cell as stored: one line of printable text (it is evidence, not a place for
    control characters), or None when empty."""
    text = values.get(column, "").strip()
    if not text.isprintable():
        raise InputError(column, text, f"the {column} cell contains control characters (e.g. a line break)")
    return text or None
