"""``users add|list|remove``: exit codes and one-line messages, in-process with ``--password-stdin``,
and the prompting path in a pseudo-terminal (pexpect), on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import pexpect
import pytest

from imk_outreach.config import Settings
from imk_outreach.services import staff
from imk_outreach.services.database import dispose_all
from tests.conftest import ConfigFactory
from tests.support.subscribers import run_cli

COMMAND = str(Path(sys.executable).parent / "imk-outreach")
GOOD = "lange-sichere-wortkette"
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def settings(make_settings: ConfigFactory) -> Settings:
    settings = make_settings([], public_url="https://news.example.org")
    assert staff.list_users(settings) == []  # the database is made here, so the commands say nothing of it
    return settings


def add(
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stdin: str,
    *args: str,
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return run_cli(settings, capsys, "users", "add", *args)


def signs_in(settings: Settings, name: str, password: str) -> bool:
    return staff.authenticate(settings, name, password, "192.0.2.1") is not None


def test_add_with_the_password_on_stdin(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = add(
        settings,
        capsys,
        monkeypatch,
        GOOD + "\r\n",
        "anna",
        "--password-stdin",
        "--email",
        "anna@example.org",
    )
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "added staff user anna (language of the browser, email anna@example.org)",
        "they sign in at https://news.example.org/admin/login",
    ]
    code, out, _ = add(
        settings, capsys, monkeypatch, "Kx7#mPq2vL9w\n", "bert", "--password-stdin", "--language", "en"
    )
    assert code == 0 and out.startswith("added staff user bert (language en)\n")
    assert signs_in(settings, "anna", GOOD) and signs_in(settings, "bert", "Kx7#mPq2vL9w")
    assert not signs_in(settings, "anna", GOOD + "\r")


@pytest.mark.parametrize(
    ("name", "stdin", "message"),
    [
        ("anna", "kurz\n", "password too short: at least 12 characters"),
        ("anna", "", "password too short: at least 12 characters"),
        ("anna", "Passwort2026\n", "password is too common: it is on the list of common passwords"),
        ("anna", "qwertzuiop12\n", "password is too common: it is on the list of common passwords"),
        ("anna", "Anna12345678\n", "password is too easy to guess: it is the user name"),
        (
            "Anna Maria",
            GOOD + "\n",
            "user name 'Anna Maria' is not valid: use 1 to 64 lower-case letters, digits, '.', '-' or '_'",
        ),
    ],
)
def test_refused_add_is_one_line_and_exit_1(
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    stdin: str,
    message: str,
) -> None:
    code, out, err = add(settings, capsys, monkeypatch, stdin, name, "--password-stdin")
    assert (code, out, err) == (1, "", f"error: {message}\n")
    assert staff.list_users(settings) == []


def test_a_second_user_of_the_same_name_is_refused(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert add(settings, capsys, monkeypatch, GOOD + "\n", "anna", "--password-stdin")[0] == 0
    code, out, err = add(settings, capsys, monkeypatch, "Kx7#mPq2vL9w\n", "Anna", "--password-stdin")
    assert (code, out, err) == (1, "", "error: a staff user named 'anna' exists already\n")
    assert signs_in(settings, "anna", GOOD)


def test_without_a_terminal_the_password_must_come_on_stdin(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = add(settings, capsys, monkeypatch, GOOD + "\n", "anna")
    assert (code, out) == (1, "")
    assert err == "error: no terminal to ask for the password on; pipe it in with --password-stdin\n"
    assert staff.list_users(settings) == []


def test_a_language_not_offered_is_a_usage_error(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit) as caught:
        add(settings, capsys, monkeypatch, GOOD + "\n", "anna", "--password-stdin", "--language", "fr")
    assert caught.value.code == 2
    assert "invalid choice: 'fr'" in capsys.readouterr().err


def test_list_and_remove(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(settings, capsys, "users", "list")
    assert (code, out) == (0, "No staff users yet. Add one with 'imk-outreach users add NAME'.\n")
    anna = staff.add_user(settings, "anna", GOOD, email="anna@example.org", now=NOW)
    staff.add_user(settings, "bert", "Kx7#mPq2vL9w", language="en", now=NOW)
    session = staff.start_session(settings, anna)
    code, out, _ = run_cli(settings, capsys, "users", "list")
    assert code == 0
    created = NOW.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M")
    rows = [re.split(r"\s*│\s*", line.strip("│ ")) for line in out.splitlines() if line.startswith("│")]
    assert rows == [["anna", "anna@example.org", "browser", created], ["bert", "-", "en", created]]

    code, out, err = run_cli(settings, capsys, "users", "remove", "anna")
    assert (code, out, err) == (0, "removed staff user anna (signed out everywhere)\n", "")
    assert staff.session_for(settings, session.token) is None
    assert [user.name for user in staff.list_users(settings)] == ["bert"]
    code, out, err = run_cli(settings, capsys, "users", "remove", "anna")
    assert (code, out) == (1, "")
    assert err == "error: no staff user named 'anna' (see 'imk-outreach users list')\n"


# -- asked on a terminal ---------------------------------------------------------------------------


def spawn(settings: Settings, *args: str) -> pexpect.spawn:
    dispose_all()  # SQLite: no connection of this process stays open while the command writes
    argv = ["users", "add", *args, "--config", str(settings.config_path)]
    return pexpect.spawn(COMMAND, argv, timeout=60, encoding="utf-8", dimensions=(40, 200))


def finish(child: pexpect.spawn) -> tuple[int, str]:
    child.expect(pexpect.EOF)
    child.close()
    return int(child.exitstatus if child.exitstatus is not None else -1), child.before or ""


def test_the_password_is_asked_twice_without_echo(settings: Settings) -> None:
    child = spawn(settings, "anna")
    child.expect("Password for anna: ")
    child.sendline(GOOD)
    child.expect("The same password again: ")
    child.sendline(GOOD)
    code, output = finish(child)
    assert code == 0, output
    assert "added staff user anna (language of the browser)" in output
    assert GOOD not in output  # never echoed
    assert signs_in(settings, "anna", GOOD)


def test_two_different_passwords_add_nobody(settings: Settings) -> None:
    child = spawn(settings, "anna")
    child.expect("Password for anna: ")
    child.sendline(GOOD)
    child.expect("The same password again: ")
    child.sendline(GOOD + "x")
    code, output = finish(child)
    assert code == 1
    assert output.strip() == "error: the passwords do not match; nothing was added"
    assert staff.list_users(settings) == []


def test_a_refused_password_is_not_asked_for_again(settings: Settings) -> None:
    child = spawn(settings, "anna")
    child.expect("Password for anna: ")
    child.sendline("Hallo12345678")
    code, output = finish(child)
    assert code == 1
    assert output.strip() == "error: password is too common: it is on the list of common passwords"
    assert staff.list_users(settings) == []


def test_an_existing_name_is_refused_before_asking(settings: Settings) -> None:
    staff.add_user(settings, "anna", GOOD, now=NOW)
    code, output = finish(spawn(settings, "anna"))
    assert code == 1
    assert output.strip() == "error: a staff user named 'anna' exists already"
