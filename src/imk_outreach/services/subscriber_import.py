"""Subscribers: CSV import."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, NamedTuple

from sqlalchemy import Connection

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import Subscriber
from imk_outreach.services import tokens
from imk_outreach.services.database import engine_for
from imk_outreach.services.subscriber_base import (
    IMPORT_COLUMNS,
    ImportFileError,
    InputError,
    Mailer,
    MailError,
    _mailing,
    _send_confirmation,
    check_address,
    check_language,
    check_lists,
    check_name,
)
from imk_outreach.services.subscriber_staff import (
    _import_status,
    _new,
)

log = logging.getLogger(__name__)

# -- import ----------------------------------------------------------------------------------------


class Rejection(NamedTuple):
    """A row not imported: its line in the file, the address as written, and why."""

    line: int
    email: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.email or '(no address)'}: {self.reason}"


@dataclass
class ImportReport:
    """What an import did. ``mail_failures`` are (address, reason) of confirmation mails not sent."""

    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    mailed: int = 0
    mail_failures: list[tuple[str, str]] = field(default_factory=list)
    ignored_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Row:
    line: int
    email: str
    name: str | None
    language: str | None
    lists: tuple[str, ...]


def import_csv(
    settings: Settings,
    path: str | Path,
    status: str = "confirmed",
    now: datetime | None = None,
    mailer: Mailer | None = None,
) -> ImportReport:
    """Import subscribers from a CSV file: a header row, ``email`` required, optional ``name``,
    ``language`` and ``lists`` (names separated by ``;``). Bad rows are rejected one by one, naming the
    line; the rest are imported in one transaction. With ``status="pending"`` every new subscriber gets
    the confirmation mail (after the commit).

    :raises InputError: ``status`` is neither confirmed nor pending.
    :raises ImportFileError: the file cannot be read, is not UTF-8 or has no ``email`` column.
    """
    now = now or datetime.now(UTC)
    status = _import_status(status)
    file = Path(path)
    if not file.is_file():  # before the database is opened (or made): a typo is one clear line
        raise ImportFileError(file, "file not found")
    report = ImportReport()
    secret = tokens.secret_key(settings)
    fresh: list[Subscriber] = []
    seen: dict[str, int] = {}
    with engine_for(settings).begin() as conn:
        for row in _parsed_rows(settings, file, report):
            if isinstance(row, Rejection):
                report.rejected.append(row)
                continue
            outcome = _import_row(conn, settings, secret, row, status, f"import:{file.name}", now, seen)
            if isinstance(outcome, Rejection):
                report.rejected.append(outcome)
            elif isinstance(outcome, Subscriber):
                report.imported += 1
                fresh.append(outcome)
            elif outcome == "updated":
                report.updated += 1
            else:
                report.unchanged += 1
    if status == "pending" and fresh:
        _mail_all(settings, secret, fresh, now, mailer, report)
    return report


def _import_row(
    conn: Connection,
    settings: Settings,
    secret: str,
    row: _Row,
    status: str,
    source: str,
    now: datetime,
    seen: dict[str, int],
) -> Rejection | Subscriber | Literal["updated", "unchanged"]:
    key = store.email_key(row.email)
    if key in seen:
        return Rejection(row.line, row.email, f"duplicate of line {seen[key]}")
    seen[key] = row.line
    existing = store.find_subscriber(conn, row.email)
    if existing is None:
        if store.is_erased(conn, tokens.address_hash(secret, row.email)):
            return Rejection(row.line, row.email, "was erased; not re-imported")
        new = Subscriber(
            email=row.email,
            name=row.name or "",
            language=row.language or settings.default_language,
            lists=row.lists or check_lists(settings, (), default=True),
        )
        return store.save_subscriber(conn, _new(settings, new, status, source, now), now)
    if existing.status in ("unsubscribed", "bounced"):
        return Rejection(row.line, row.email, f"{existing.status} earlier; not re-subscribed by an import")
    merged = _merged(settings, existing, row, status, now)
    if merged == existing:
        return "unchanged"
    store.save_subscriber(conn, merged, now)
    return "updated"


def _merged(settings: Settings, existing: Subscriber, row: _Row, status: str, now: datetime) -> Subscriber:
    """The stored subscriber with what the row adds (never a removal, never a downgrade)."""
    merged = replace(
        existing,
        name=row.name or existing.name,
        language=row.language or existing.language,
        lists=tuple(sorted(set(existing.lists) | set(row.lists))),
    )
    if status == "confirmed" and existing.status == "pending":
        merged = replace(
            merged,
            status="confirmed",
            confirmed_at=now,
            consent_version=existing.consent_version or settings.consent_version,
        )
    return merged


def _mail_all(
    settings: Settings,
    secret: str,
    subscribers: Sequence[Subscriber],
    now: datetime,
    mailer: Mailer | None,
    report: ImportReport,
) -> None:
    with _mailing(settings, mailer) as active:
        for subscriber in subscribers:
            try:
                _send_confirmation(settings, active, secret, subscriber, now)
                report.mailed += 1
            except MailError as exc:
                log.warning("subscriber %s: %s", subscriber.id, exc)
                report.mail_failures.append((subscriber.email, exc.reason))


def _parsed_rows(settings: Settings, path: Path, report: ImportReport) -> Iterator[_Row | Rejection]:
    for line, values in _csv_records(path, report):
        if not any(value.strip() for value in values.values()):
            continue  # a blank line
        email = values.get("email", "").strip()
        language = values.get("language", "").strip()
        lists = values.get("lists", "").split(";")
        try:
            yield _Row(
                line=line,
                email=check_address(email),
                name=check_name(values.get("name")) or None,
                language=check_language(settings, language) if language else None,
                lists=check_lists(settings, lists, default=False) if any(n.strip() for n in lists) else (),
            )
        except InputError as exc:
            yield Rejection(line, email, exc.reason)


def _csv_records(path: Path, report: ImportReport) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, column -> value) per record; the header names are trimmed and lower-cased."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            header_line = handle.readline()
            delimiter = ";" if ";" in header_line and "," not in header_line else ","
            handle.seek(0)
            reader = csv.reader(handle, delimiter=delimiter)
            header = [name.strip().lower() for name in next(reader, [])]
            _check_header(path, header, report)
            for record in reader:
                padded = record + [""] * (len(header) - len(record))
                yield reader.line_num, dict(zip(header, padded, strict=False))
    except FileNotFoundError:
        raise ImportFileError(path, "file not found") from None
    except UnicodeDecodeError as exc:
        raise ImportFileError(path, f"not UTF-8 text (byte {exc.start}); save it as CSV UTF-8") from None
    except csv.Error as exc:
        raise ImportFileError(path, f"not valid CSV: {exc}") from None
    except IsADirectoryError:
        raise ImportFileError(path, "is a folder, not a CSV file") from None


def _check_header(path: Path, header: list[str], report: ImportReport) -> None:
    if "email" not in header:
        shown = ", ".join(header) or "empty"
        raise ImportFileError(path, f"the header row has no 'email' column (found: {shown})", line=1)
    duplicates = sorted({name for name in header if header.count(name) > 1 and name})
    if duplicates:
        raise ImportFileError(path, f"column {duplicates[0]!r} appears twice in the header row", line=1)
    report.ignored_columns = tuple(name for name in header if name not in IMPORT_COLUMNS)
