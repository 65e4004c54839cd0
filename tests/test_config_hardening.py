"""Config that cannot hurt: ``public_url`` is a plain http(s) base, ``secret_key`` is long enough, and
``check`` refuses secrets written in plain text, ``$NAME`` without braces and variables set but empty."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from imk_outreach import cli
from imk_outreach.config import MissingVariableError, SecretRef, SecretValueError, load_settings, reveal
from imk_outreach.errors import ConfigErrors
from imk_outreach.services import tokens

VARIABLE = "IMK_TEST_HARDEN_SECRET"
OTHER = "IMK_TEST_HARDEN_OTHER"


@pytest.fixture(autouse=True)
def _unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (VARIABLE, OTHER, "IMK_PUBLIC_URL", "IMK_SMTP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


def write(tmp_path: Path, text: str) -> Path:
    """config.yaml with ``text``; ``sources: []`` comes first unless the text has its own."""
    path = tmp_path / "config.yaml"
    path.write_text(text if "sources:" in text else "sources: []\n" + text, encoding="utf-8")
    return path


def errors_of(path: Path) -> list[Any]:
    with pytest.raises(ConfigErrors) as info:
        load_settings(path)
    return info.value.errors


def check_json(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = cli.main(["check", "--json", "--config", str(path)])
    return code, json.loads(capsys.readouterr().out)


# -- public_url ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("ftp://news.example.org", "use an absolute http(s) URL"),
        ("news.example.org", "use an absolute http(s) URL"),
        ("javascript:alert(1)", "use an absolute http(s) URL"),
        ("https://", "use an absolute http(s) URL"),
        ("https:///news", "use an absolute http(s) URL"),
        ("https://news.example.org:99999", "is not a valid URL"),
        ("https://admin:pw@news.example.org", "no user name or password"),
        ("https://news.example.org/a/../admin", "no '.', '..' or empty parts"),
        ("https://news.example.org/%2e%2e/admin", "no '.', '..' or empty parts"),
        ("https://news.example.org//evil.example", "no '.', '..' or empty parts"),
        ("https://news.example.org/news?next=/x", "no query"),
        ("https://news.example.org/#top", "fragment"),
        ("https://news.example.org/a\\b", "no spaces, backslashes or control characters"),
        ("https://news.example.org/a b", "no spaces, backslashes or control characters"),
    ],
)
def test_public_url_must_be_a_plain_http_base(tmp_path: Path, value: str, why: str) -> None:
    [error] = errors_of(write(tmp_path, f"public_url: '{value}'\n"))
    assert (error.key_path, error.location.line) == ("public_url", 2)
    assert why in error.message and repr(value) in error.message


def test_public_url_from_the_environment_is_checked_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMK_PUBLIC_URL", "ftp://news.example.org")
    [error] = errors_of(write(tmp_path, "public_url: https://news.example.org\n"))
    assert error.key_path == "public_url" and "ftp://news.example.org" in error.message


def test_public_url_is_normalised(tmp_path: Path) -> None:
    """Lower-case scheme and host, no trailing slash (links are built as ``public_url + "/..."``)."""
    for value, expected in [
        ("https://news.example.org/", "https://news.example.org"),
        ("HTTPS://News.Example.org/imk/", "https://news.example.org/imk"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ]:
        assert load_settings(write(tmp_path, f"public_url: '{value}'\n")).public_url == expected, value


# -- secret_key ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("written", [True, False], ids=["in-file", "from-environment"])
def test_a_short_secret_key_fails_check_and_where_links_are_signed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], written: bool
) -> None:
    short = secrets.token_urlsafe(8)
    if not written:
        monkeypatch.setenv(VARIABLE, short)
    path = write(tmp_path, f"secret_key: {short if written else '${' + VARIABLE + '}'}\n")
    settings = load_settings(path)  # commands that sign nothing keep working
    with pytest.raises(SecretValueError) as info:
        tokens.secret_key(settings)
    assert str(info.value).startswith(f"{path}:2:1: secret_key: is {len(short)} characters long")
    assert "at least 32" in str(info.value) and "secrets.token_urlsafe(32)" in str(info.value)
    assert info.value.exit_code == 1 and short not in str(info.value)
    code, report = check_json(path, capsys)
    assert code == 1
    [problem] = [p for p in report["problems"] if "characters long" in p["message"]]
    assert (problem["key"], problem["line"]) == ("secret_key", 2)
    if not written:
        long_enough = secrets.token_urlsafe(32)
        monkeypatch.setenv(VARIABLE, long_enough)  # fixed in the environment: no reload needed
        assert tokens.secret_key(settings) == long_enough
        assert check_json(path, capsys)[0] == 0


# -- secrets in plain text -----------------------------------------------------------------------------


PLAIN = "hunter2-" + "x" * 32


@pytest.mark.parametrize(
    ("text", "key", "line", "hint", "fixed"),
    [
        (
            f"smtp:\n  username: mailer\n  password: {PLAIN}\n",
            "smtp.password",
            4,
            "write ${IMK_SMTP_PASSWORD} here and export IMK_SMTP_PASSWORD",
            "smtp:\n  username: mailer\n  password: ${" + VARIABLE + "}\n",
        ),
        (
            f"secret_key: {PLAIN}\n",
            "secret_key",
            2,
            "secrets.token_urlsafe(32)",
            "secret_key: ${" + VARIABLE + "}\n",
        ),
        (
            f"database_url: postgresql://imk:{PLAIN}@db.example/imk\n",
            "database_url",
            2,
            "write scheme://user:${IMK_DB_PASSWORD}@host/... and export IMK_DB_PASSWORD",
            "database_url: postgresql://imk:${" + VARIABLE + "}@db.example/imk\n",
        ),
        (
            f"sources:\n  - {{name: a, type: rss, url: 'https://reader:{PLAIN}@feeds.example/a.xml'}}\n",
            "sources[0].url",
            2,
            "the password in this URL",
            "sources:\n  - {name: a, type: rss, url: 'https://reader:${"
            + VARIABLE
            + "}@feeds.example/a.xml'}\n",
        ),
    ],
    ids=["smtp.password", "secret_key", "database_url", "url-with-password"],
)
def test_a_secret_in_plain_text_fails_check_naming_the_key_but_not_the_secret(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    text: str,
    key: str,
    line: int,
    hint: str,
    fixed: str,
) -> None:
    path = write(tmp_path, text)
    load_settings(path)  # loading still works: only check refuses it
    code, report = check_json(path, capsys)
    assert code == 1
    [problem] = report["problems"]
    assert (problem["key"], problem["line"], problem["file"]) == (key, line, str(path))
    assert "plain text" in problem["message"] and hint in problem["message"]
    assert PLAIN not in json.dumps(report)
    monkeypatch.setenv(VARIABLE, secrets.token_urlsafe(32))
    write(tmp_path, fixed)  # the same key as a reference (a user name may stay plain)
    code, report = check_json(path, capsys)
    assert (code, report["problems"]) == (0, [])


@pytest.mark.parametrize(
    ("text", "key", "name"),
    [
        ("smtp:\n  password: $IMK_SMTP_PASSWORD\n", "smtp.password", "IMK_SMTP_PASSWORD"),
        ("sender: {email: '$" + OTHER + "@cluster.example'}\n", "sender.email", OTHER),
    ],
)
def test_a_reference_without_braces_fails_check_suggesting_the_braces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str, name: str
) -> None:
    # A dollar sign in ordinary text (a price, a pun) is not taken for a reference.
    path = write(tmp_path, text + "name: {de: 'Preis 5$, Spar$chwein', en: 'US$ 5'}\n")
    code, report = check_json(path, capsys)
    assert code == 1
    [problem] = report["problems"]
    assert problem["key"] == key and problem["line"] is not None
    assert f"${name} is taken literally" in problem["message"]
    assert f"write ${{{name}}}" in problem["message"]


# -- variables set but empty -----------------------------------------------------------------------------


def test_a_variable_set_but_empty_counts_as_unset_with_its_own_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(VARIABLE, "")
    path = write(tmp_path, "smtp:\n  host: mail.example\n  password: ${" + VARIABLE + "}\n")
    settings = load_settings(path)
    assert isinstance(settings.smtp.password, SecretRef)
    with pytest.raises(MissingVariableError) as info:
        reveal(settings.smtp.password)
    assert str(info.value) == (
        f"smtp.password: environment variable {VARIABLE} is set but empty ({path} line 4); "
        "export it before running"
    )
    code, report = check_json(path, capsys)
    assert code == 1
    [problem] = report["problems"]
    assert problem["key"] == "smtp.password" and problem["line"] == 4
    assert f"environment variable {VARIABLE} is set but empty" in problem["message"]
    assert not [w for w in report["warnings"] if w["key"] == "smtp.password"]  # a problem, not also a warning


def test_an_empty_variable_in_a_key_that_is_not_a_secret_fails_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VARIABLE, "")
    [error] = errors_of(write(tmp_path, "sender: {email: '${" + OTHER + "}${" + VARIABLE + "}@x.example'}\n"))
    assert error.key_path == "sender.email" and error.location.line == 2
    assert error.message == (
        f"environment variable {OTHER} is not set; environment variable {VARIABLE} is set but empty"
    )
