"""CSV that spreadsheets open safely: the export neutralises formulas; the import reads what a German
Excel writes (``;``, a BOM, Windows-1252, UTF-16 text), never drops a field silently, and rejects a row
with bad bytes or an over-long cell, naming its line, while the rest is imported; ``export | head`` and
``items --json | head`` end quietly. On SQLite and PostgreSQL (the pipes on SQLite), through the
command line and real pipes."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from imk_outreach import cli
from imk_outreach.config import Settings, load_settings
from imk_outreach.db import store
from imk_outreach.models import Subscriber
from imk_outreach.services import subscriptions
from imk_outreach.services.csv_cells import FORMULA_STARTS
from imk_outreach.services.database import engine_for
from imk_outreach.services.subscriptions import ImportFileError
from tests.support.smtpserver import SmtpTestServer
from tests.support.subscribers import LISTS, run_cli, subscriber_settings

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
CONFIRMED = ("--status", "confirmed", "--consent-note", "membership forms 2026")
NAMES = {"juergen@example.org": "Jürgen Müller-Lüdenscheidt", "zoe@example.org": "Zoë Çelik, Café €"}


@pytest.fixture
def settings(make_settings: Any, smtp_server: SmtpTestServer) -> Settings:
    return subscriber_settings(make_settings, smtp_server)


run = run_cli


def _find(settings: Settings, email: str) -> Subscriber | None:
    with engine_for(settings).connect() as conn:
        return store.find_subscriber(conn, email)


# -- what Excel writes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("codec", "separator", "read_as"),
    [
        ("cp1252", ";", "read as Windows-1252 (not valid UTF-8 from line 2 on), separated by ';'"),
        ("utf-8-sig", ";", "read as UTF-8 with BOM, separated by ';'"),
        ("utf-16", "\t", "read as UTF-16, separated by tabs"),
    ],
)
def test_the_files_a_german_excel_saves_are_read_and_the_encoding_is_named(
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    codec: str,
    separator: str,
    read_as: str,
) -> None:
    lists = '"newsletter;film"' if separator == ";" else "newsletter;film"
    rows = [["Email", "Name", "Language", "Lists"], *([e, n, "de", lists] for e, n in NAMES.items())]
    path = tmp_path / "Abonnenten.csv"
    path.write_bytes("".join(separator.join(row) + "\r\n" for row in rows).encode(codec))

    code, out, _ = run(settings, capsys, "subscribers", "import", str(path), *CONFIRMED)

    assert code == 0, out
    assert out.splitlines()[0] == f"{path}: {read_as}"
    for email, name in NAMES.items():
        stored = _find(settings, email)
        assert stored is not None and (stored.name, stored.lists) == (name, ("film", "newsletter"))


def test_an_unquoted_list_in_a_semicolon_file_is_an_error_of_that_line_not_a_lost_list(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "people.csv"
    path.write_text(
        "email;name;lists\n"
        "erika@example.org;Erika;newsletter;film\n"
        'max@example.org;Max;"newsletter;film"\n'
        "jane@example.com;Jane;film;\n",  # Excel's trailing separator: an empty field, nothing lost
        encoding="utf-8",
    )

    code, out, _ = run(settings, capsys, "subscribers", "import", str(path), *CONFIRMED)

    assert code == 3
    assert out.splitlines()[1:4] == [
        "line 2: erika@example.org: rejected: 4 fields, but the header row has 3 columns; a cell that "
        "contains a ';' (e.g. lists \"newsletter;film\") must be in double quotes (nothing of this row "
        "was imported)",
        "line 3: max@example.org: added (confirmed)",
        "line 4: jane@example.com: added (confirmed)",
    ]
    assert _find(settings, "erika@example.org") is None
    stored = [_find(settings, e) for e in ("max@example.org", "jane@example.com")]
    assert [s.lists if s else None for s in stored] == [("film", "newsletter"), ("film",)]


def test_a_file_that_mixes_encodings_is_refused_naming_the_line(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(
        "email,name\na@example.org,Jürgen\n".encode() + b"b@example.org,M\xfcller\n"  # saved twice, two ways
    )
    with pytest.raises(
        ImportFileError, match=re.escape("people.csv: mixes UTF-8 with another encoding (line 3")
    ):
        subscriptions.import_csv(settings, path, "confirmed", NOW, consent_note="forms")
    assert _find(settings, "a@example.org") is None


# -- bad bytes ---------------------------------------------------------------------------------------


def test_bad_bytes_and_over_long_cells_reject_only_their_row(settings: Settings, tmp_path: Path) -> None:
    rows = [
        ("good@example.org", "Good", "", ""),
        ("esc@example.org", "Evil\x1b[31mRed", "", ""),
        ("nul@example.org", "Nul\x00Byte", "", ""),
        ("bell\x07@example.org", "Bell", "", ""),
        ("zero@example.org", "Ze\u200bro", "", ""),
        ("long@example.org", "x" * 300, "", ""),
        ("lists@example.org", "Lists", "newsletter;" * 150, ""),
        ("source@example.org", "Source", "", "import:old\x1b.csv"),
        ("last@example.org", "Last", "", ""),
    ]
    path = tmp_path / "people.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "lists", "source"])
        writer.writerows(rows)

    report = subscriptions.import_csv(settings, path, "confirmed", NOW, consent_note="forms")

    assert report.imported == 2
    assert all(_find(settings, e) is not None for e in ("good@example.org", "last@example.org"))
    reasons = {r.line: r.reason for r in report.rejected}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 9]
    assert "control character (U+001B" in reasons[3] and "control character (U+0000" in reasons[4]
    assert "U+0007" in reasons[5] and "U+200B" in reasons[6]
    assert reasons[7] == "name longer than 200 characters"
    assert reasons[8] == "the lists cell is longer than 1000 characters"
    assert reasons[9] == "the source cell contains control characters (e.g. a line break)"
    assert all(_find(settings, row[0]) is None for row in rows[1:-1])


# -- the export ------------------------------------------------------------------------------------


def test_the_export_neutralises_every_cell_a_spreadsheet_would_run(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    people = {
        "=1+2@example.org": '=HYPERLINK("http://evil.example","Click")',
        "-x@example.org": "-2+3",
        "+49@example.org": "+49 30 1234",
        "at@example.org": "@SUM(A1)",
    }
    for email, name in people.items():
        subscriptions.add(settings, email, name, "de", ["newsletter"], now=NOW)

    code, out, _ = run(settings, capsys, "subscribers", "export")

    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert all(not cell.startswith(FORMULA_STARTS) for row in rows for cell in row)
    expected = [(f"'{e}" if e[0] in "=-+" else e, f"'{n}") for e, n in people.items()]
    assert [(row[0], row[1]) for row in rows[1:]] == expected


# -- closed pipes ------------------------------------------------------------------------------------


def _sqlite_settings(tmp_path: Path, **extra: Any) -> Settings:
    data = {"database_url": f"sqlite:///{tmp_path / 'pipe.db'}", "lists": LISTS, **extra}
    data.setdefault("sources", [{"name": "none", "type": "manual", "url": "none.yaml", "language": "de"}])
    (tmp_path / "none.yaml").write_text("[]\n", encoding="utf-8")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return load_settings(path)


def _into_a_closed_pipe(settings: Settings, *args: str, lines: int = 1) -> tuple[str, int, str]:
    """Run the command with stdout into a pipe whose reader closes it after ``lines`` lines (as
    ``| head -n 1``; 0: before anything is written): (what was read, the exit code, stderr)."""
    command = [sys.executable, "-m", "imk_outreach", *args, "--config", str(settings.config_path)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None and process.stderr is not None
        read = "".join(process.stdout.readline().decode() for _ in range(lines))
        process.stdout.close()
        code = process.wait(timeout=120)
        err = process.stderr.read().decode()
    return read, code, err


def test_an_export_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    settings = _sqlite_settings(tmp_path)
    with engine_for(settings).begin() as conn:  # about 1 MB of CSV: far more than a pipe holds
        for n in range(2500):
            person = Subscriber(f"p{n}@example.org", "de", ("newsletter",), "N" * 200, "confirmed")
            store.save_subscriber(conn, person, NOW)

    first, code, err = _into_a_closed_pipe(settings, "subscribers", "export")

    assert first.startswith("email,name,language,lists,status,")
    assert (code, "Traceback" in err, "BrokenPipe" in err) == (141, False, False), err


def test_items_json_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    news = [
        {
            "url": f"https://cluster.example/news/{n}",
            "published": "2026-11-20",
            "title": {"de": f"Meldung {n}"},
            "summary": {"de": "Ein Absatz."},
        }
        for n in range(3)
    ]
    (tmp_path / "news.yaml").write_text(yaml.safe_dump(news, allow_unicode=True), encoding="utf-8")
    settings = _sqlite_settings(
        tmp_path, sources=[{"name": "news", "type": "manual", "url": "news.yaml", "language": "de"}]
    )
    assert cli.main(["gather", "--config", str(settings.config_path)]) == 0

    # ``items --json`` writes its answer at once; a reader gone before it is the case that stays
    # reproducible whatever the pipe holds
    _, code, err = _into_a_closed_pipe(settings, "items", "--json", lines=0)

    assert (code, "Traceback" in err, "BrokenPipe" in err) == (141, False, False), err
