"""``imk-outreach subscribers import|add|remove|export|erase`` and ``serve``: output, JSON shapes and exit
codes (0 done, 1 bad input, 2 usage, 3 some rows rejected), on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from imk_outreach import cli
from imk_outreach.config import Settings
from imk_outreach.services import subscriptions
from tests.support.smtpserver import SmtpTestServer
from tests.support.subscribers import mails_to, run_cli, subscriber_settings

CONFIRMED = ("--status", "confirmed", "--consent-note", "sign-up forms of the cluster day 2026")
BAD_FILE = """email,name,language,lists
erika@example.org,Erika Mustermann,de,newsletter;film
bad@,Broken,de,newsletter
jane@example.com,Jane Doe,en,newsletter
kofi@example.com,Kofi,en,podcast
"""


@pytest.fixture
def settings(make_settings: Any, smtp_server: SmtpTestServer) -> Settings:
    return subscriber_settings(make_settings, smtp_server)


run = run_cli


def _file(tmp_path: Path, text: str, name: str = "people.csv") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_import_prints_counts_and_each_rejected_line_and_exits_3(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = _file(tmp_path, BAD_FILE)
    code, out, _ = run(settings, capsys, "subscribers", "import", path, *CONFIRMED)

    assert code == 3
    assert out.splitlines() == [
        f"{path}: read as UTF-8, separated by ','",
        "line 2: erika@example.org: added (confirmed)",
        "line 3: bad@: rejected: invalid address (There must be something after the @-sign.)",
        "line 4: jane@example.com: added (confirmed)",
        "line 5: kofi@example.com: rejected: unknown list 'podcast' (known: newsletter, film)",
        "imported 2, updated 0, unchanged 0, rejected 2",
    ]


def test_import_json_and_a_clean_reimport_exits_0(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = _file(tmp_path, BAD_FILE)
    code, out, _ = run(settings, capsys, "subscribers", "import", path, "--json", *CONFIRMED)

    assert code == 3
    data = json.loads(out)
    assert (data.pop("encoding"), data.pop("delimiter")) == ("UTF-8", ",")
    assert [(o["line"], o["action"], o["status"]) for o in data.pop("lines")] == [
        (2, "added", "confirmed"),
        (3, "rejected", None),
        (4, "added", "confirmed"),
        (5, "rejected", None),
    ]
    assert data == {
        "imported": 2,
        "updated": 0,
        "unchanged": 0,
        "rejected": [
            {
                "line": 3,
                "email": "bad@",
                "reason": "invalid address (There must be something after the @-sign.)",
            },
            {
                "line": 5,
                "email": "kofi@example.com",
                "reason": "unknown list 'podcast' (known: newsletter, film)",
            },
        ],
        "mailed": 0,
        "mail_failures": [],
        "ignored_columns": [],
    }
    good = _file(tmp_path, "email,name\nerika@example.org,Erika Mustermann\njane@example.com,\n", "good.csv")
    code, out, _ = run(settings, capsys, "subscribers", "import", good, *CONFIRMED)
    assert code == 0 and out.splitlines()[1:] == [
        "line 2: erika@example.org: unchanged (confirmed)",
        "line 3: jane@example.com: unchanged (confirmed)",
        "imported 0, updated 0, unchanged 2, rejected 0",
    ]


def test_pending_import_sends_confirmation_mails(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    path = _file(tmp_path, "email,language\nanna@example.org,de\nben@example.org,en\n")
    code, out, _ = run(settings, capsys, "subscribers", "import", path, "--status", "pending")

    assert code == 0
    assert "confirmation mails queued: 2 (sent by deliver, worker or run)" in out
    assert run(settings, capsys, "deliver")[0] == 0
    assert mails_to(smtp_server, "ben@example.org")[0]["Content-Language"] == "en"


def test_an_unreadable_import_file_is_exit_1_with_one_line(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(settings, capsys, "subscribers", "import", str(tmp_path / "missing.csv"))
    assert (code, out) == (1, "")
    assert err == f"error: {tmp_path / 'missing.csv'}: file not found\n"
    code, _, err = run(settings, capsys, "subscribers", "import", _file(tmp_path, "name\nErika\n"))
    assert code == 1 and "the header row has no 'email' column" in err


def test_add_remove_and_their_errors(
    settings: Settings, capsys: pytest.CaptureFixture[str], smtp_server: SmtpTestServer
) -> None:
    code, out, _ = run(
        settings, capsys, "subscribers", "add", "Ben@Example.org", "--name", "Ben", "--language", "en",
        "--list", "film", "--list", "newsletter",
    )  # fmt: skip
    assert code == 0
    assert out == "added Ben@example.org (confirmed; language en; lists film, newsletter)\n"

    code, _, err = run(settings, capsys, "subscribers", "add", "ben@example.org")
    assert code == 1 and err == "error: Ben@example.org is already a subscriber (confirmed)\n"
    code, _, err = run(settings, capsys, "subscribers", "add", "carl@", "--list", "newsletter")
    assert code == 1 and err.startswith("error: invalid address")
    code, _, err = run(settings, capsys, "subscribers", "add", "carl@example.org", "--list", "podcast")
    assert code == 1 and "unknown list 'podcast'" in err

    code, out, _ = run(settings, capsys, "subscribers", "add", "dora@example.org", "--status", "pending")
    assert code == 0 and "confirmation mail queued for dora@example.org" in out
    assert run(settings, capsys, "deliver")[0] == 0
    assert smtp_server.recipients() == ["dora@example.org"]

    code, out, _ = run(settings, capsys, "subscribers", "remove", "BEN@example.org")
    assert code == 0 and out.startswith("unsubscribed Ben@example.org")
    code, _, err = run(settings, capsys, "subscribers", "remove", "nobody@example.org")
    assert code == 1 and err == "error: no subscriber with the address 'nobody@example.org'\n"


def test_export_csv_and_json(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    subscriptions.add(settings, "ben@example.org", "Ben", "en", ["newsletter", "film"])
    subscriptions.add(settings, "anna@example.org", "Anna, Dr.", "de", ["newsletter"])

    code, out, _ = run(settings, capsys, "subscribers", "export")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert out.splitlines()[0] == (
        "email,name,language,lists,status,signup_at,confirmed_at,consent_version,source,"
        "unsubscribed_at,bounce_reason,consent_history"
    )
    assert [(r["email"], r["name"], r["lists"]) for r in rows] == [
        ("ben@example.org", "Ben", "film;newsletter"),
        ("anna@example.org", "Anna, Dr.", "newsletter"),
    ]
    assert rows[0]["status"] == "confirmed" and rows[0]["source"] == "cli" and rows[0]["confirmed_at"]

    code, out, _ = run(settings, capsys, "subscribers", "export", "--format", "json")
    data = json.loads(out)
    assert code == 0 and list(data) == ["subscribers"]
    assert data["subscribers"][0]["lists"] == ["film", "newsletter"]
    assert list(data["subscribers"][0]) == list(subscriptions.EXPORT_JSON_FIELDS)

    code, out, _ = run(
        settings, capsys, "subscribers", "export", "--format", "json", "--email", "ANNA@example.org"
    )
    assert [s["email"] for s in json.loads(out)["subscribers"]] == ["anna@example.org"]
    code, out, _ = run(
        settings, capsys, "subscribers", "export", "--format", "json", "--email", "x@example.org"
    )
    assert code == 1 and out == ""


def test_an_empty_export_is_still_valid(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert json.loads(run(settings, capsys, "subscribers", "export", "--format", "json")[1]) == {
        "subscribers": []
    }
    assert run(settings, capsys, "subscribers", "export")[1].count("\n") == 1  # the header row only


def test_erase_then_the_address_is_gone_and_not_reimported(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    subscriptions.add(settings, "ben@example.org", "Ben")
    code, out, _ = run(settings, capsys, "subscribers", "erase", "ben@example.org", "--yes")
    assert code == 0 and out.startswith("erased ben@example.org")

    assert "ben@example.org" not in run(settings, capsys, "subscribers", "export")[1]
    again = _file(tmp_path, "email\nben@example.org\n")
    code, out, _ = run(settings, capsys, "subscribers", "import", again, "--status", "pending")
    assert code == 3 and "line 2: ben@example.org: rejected: was erased; not re-imported" in out
    code, _, err = run(settings, capsys, "subscribers", "erase", "ben@example.org", "--yes")
    assert code == 1 and "no subscriber" in err


@pytest.mark.parametrize(
    "args",
    [
        ["subscribers"],
        ["subscribers", "import"],
        ["subscribers", "import", "x.csv", "--status", "bounced"],
        ["subscribers", "add", "a@example.org", "--status", "unsubscribed"],
        ["subscribers", "export", "--format", "xml"],
        ["serve", "--port", "eighty"],
    ],
)
def test_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(args)
    assert caught.value.code == 2
    assert "usage:" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_runs_the_web_app(settings: Settings) -> None:
    port = _free_port()
    command = [sys.executable, "-m", "imk_outreach", "serve", "--config", str(settings.config_path)]
    process = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        response = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/subscribe?lang=en", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert response is not None, process.communicate(timeout=5)[0]
        assert response.status_code == 200
        assert '<html lang="en">' in response.text and "Subscribe to our newsletter" in response.text
    finally:
        process.terminate()
        process.wait(timeout=10)
