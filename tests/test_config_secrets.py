"""Secrets resolved when a command needs them: ``${ENV}`` in credential keys waits until use."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine

from imk_outreach import cli
from imk_outreach.config import MissingVariableError, SecretRef, load_settings, reveal
from imk_outreach.errors import ConfigErrors
from imk_outreach.services import compose, dispatch, tokens
from imk_outreach.services.mailserver import DkimKeyError, require_smtp, smtp_options
from tests.conftest import ConfigFactory
from tests.support.smtpserver import PASSWORD, USER, SmtpTestServer

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
VARIABLE = "IMK_TEST_SMTP_PASSWORD"
REF = "${" + VARIABLE + "}"
CAMPAIGN = """\
name: digest
list: newsletter
languages: [de, en]
min_items: 1
subject: {de: "Digest {{ edition.date|month }}", en: "Digest {{ edition.date|month }}"}
sections:
  - {id: film, heading: {de: Film, en: Film}, select: {tags: [film], since: 30d}}
"""
NEWS = """\
- {url: https://example.org/news/dreh, published: 2026-11-20, title: Drehstart, summary: Es geht los.}
- {url: https://example.org/news/kino, published: 2026-11-21, title: Kinotag, summary: Alle ins Kino.}
"""


@pytest.fixture(autouse=True)
def _unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (VARIABLE, "IMK_TEST_USER", "IMK_TEST_SECRET", "IMK_TEST_DB_PASSWORD", "IMK_TEST_PORT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    with time_machine.travel(NOW, tick=True):
        yield


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text("utf-8").splitlines(), 1) if text in line)


# -- loading -----------------------------------------------------------------------------------------


def test_unset_password_loads_and_fails_at_use_naming_key_variable_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "sources: []\nsmtp:\n  host: mail.example\n  password: " + REF + "\n")
    settings = load_settings(path)
    assert isinstance(settings.smtp.password, SecretRef)
    [ref] = settings.unresolved()
    assert (ref.key, ref.missing()) == ("smtp.password", (VARIABLE,))
    with pytest.raises(MissingVariableError) as info:
        smtp_options(settings)
    assert str(info.value) == (
        f"smtp.password: environment variable {VARIABLE} is not set ({path} line 4); export it before running"
    )
    assert info.value.exit_code == 1


def test_a_variable_exported_after_loading_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(write(tmp_path, "sources: []\nsmtp: {username: 'u-${IMK_TEST_USER}'}\n"))
    monkeypatch.setenv("IMK_TEST_USER", "mailer")
    assert settings.unresolved() == []
    assert smtp_options(settings).username == "u-mailer"


def test_set_variables_are_expanded_at_load_in_any_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMK_TEST_USER", "presse")
    monkeypatch.setenv(VARIABLE, "pw")
    text = (
        "sources: []\nsender: {email: '${IMK_TEST_USER}@cluster.example'}\n"
        "public_url: https://${IMK_TEST_USER}.cluster.example\n"
        "smtp: {password: '" + REF + "'}\n"
    )
    settings = load_settings(write(tmp_path, text))
    assert settings.sender.email == "presse@cluster.example"
    assert settings.public_url == "https://presse.cluster.example"
    assert settings.smtp.password == "pw" and reveal(settings.smtp.password) == "pw"
    assert settings.unresolved() == []


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("smtp: {port: '${IMK_TEST_PORT}'}\n", "smtp.port"),
        ("sender: {email: '${IMK_TEST_USER}@x.example'}\n", "sender.email"),
        ("name: {de: '${IMK_TEST_USER}'}\n", "name.de"),
    ],
)
def test_an_unset_variable_in_a_key_that_is_not_a_secret_fails_at_load(
    tmp_path: Path, text: str, key: str
) -> None:
    with pytest.raises(ConfigErrors) as info:
        load_settings(write(tmp_path, "sources: []\n" + text))
    [error] = info.value.errors
    assert error.key_path == key and "is not set" in error.message and error.location.line == 2
    assert "export it before running" in str(error)


def test_unset_secret_key_fails_where_links_are_signed(tmp_path: Path, db_url: str) -> None:
    settings = load_settings(
        write(tmp_path, f"database_url: '{db_url}'\nsources: []\nsecret_key: ${{IMK_TEST_SECRET}}\n")
    )
    with pytest.raises(
        MissingVariableError, match=r"^secret_key: environment variable IMK_TEST_SECRET is not set"
    ):
        tokens.secret_key(settings)


def test_unreadable_dkim_key_names_the_key(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, "sources: []\nsmtp: {dkim: {key_file: keys/dkim.pem, selector: s1}}\n")
    )
    with pytest.raises(DkimKeyError, match=r"^smtp.dkim.key_file: cannot read .*keys/dkim.pem"):
        require_smtp(settings)


# -- commands ------------------------------------------------------------------------------------------


def _site(make_settings: ConfigFactory, tmp_path: Path, server: SmtpTestServer, **extra: Any) -> list[str]:
    (tmp_path / "news.yaml").write_text(NEWS, "utf-8")
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "digest.yaml").write_text(CAMPAIGN, "utf-8")
    settings = make_settings(
        [{"name": "news", "type": "manual", "url": "news.yaml", "tags": ["film"]}],
        smtp={"host": server.host, "port": server.port, "username": USER, "password": REF},
        **extra,
    )
    return ["--config", str(settings.config_path)]


def test_reading_commands_work_without_the_smtp_password(
    make_settings: ConfigFactory,
    tmp_path: Path,
    smtp_server_factory: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = smtp_server_factory(auth=True)
    config = _site(make_settings, tmp_path, server)
    assert cli.main(["check", *config]) == 0
    assert cli.main(["gather", *config]) == 0
    assert cli.main(["items", "--json", *config]) == 0
    assert cli.main(["preview", "digest", "--out", str(tmp_path / "p"), *config]) == 0
    assert cli.main(["editions", *config]) == 0
    out, err = capsys.readouterr()
    assert VARIABLE not in err
    assert (
        f"warning: {tmp_path / 'config.yaml'}:" in out
        and f"smtp.password: environment variable {VARIABLE}" in out
    )
    assert (tmp_path / "p").is_dir()
    assert server.sessions() == []


def test_check_json_lists_the_unset_variable_as_a_warning(
    make_settings: ConfigFactory,
    tmp_path: Path,
    smtp_server: SmtpTestServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = _site(make_settings, tmp_path, smtp_server, secret_key="${IMK_TEST_SECRET}")
    assert cli.main(["check", "--json", *config]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and data["problems"] == []
    unset = {w["key"]: w for w in data["warnings"] if "is not set" in w["message"]}
    assert set(unset) == {"smtp.password", "secret_key"}
    assert VARIABLE in unset["smtp.password"]["message"] and unset["smtp.password"]["line"] is not None
    assert unset["smtp.password"]["file"] == str(tmp_path / "config.yaml")


def test_send_test_and_deliver_fail_naming_the_variable(
    make_settings: ConfigFactory,
    tmp_path: Path,
    smtp_server_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = smtp_server_factory(auth=True)
    config = _site(make_settings, tmp_path, server)
    settings = load_settings(config[1])
    assert cli.main(["gather", *config]) == 0
    assert cli.main(["subscribers", "add", "leser@example.org", "--language", "de", *config]) == 0
    capsys.readouterr()
    assert cli.main(["send", "digest", "--test-to", "staff@example.org", *config]) == 1
    assert f"smtp.password: environment variable {VARIABLE} is not set" in capsys.readouterr().err

    monkeypatch.setenv(VARIABLE, PASSWORD)  # queue with the password, then deliver without it
    draft = compose.compose(settings, "digest", NOW).edition
    assert draft is not None
    compose.approve(settings, draft.id, by="test", now=NOW)
    assert dispatch.send(settings, "digest", NOW).queued == 1
    monkeypatch.delenv(VARIABLE)
    assert cli.main(["deliver", "--quiet", *config]) == 1
    assert f"smtp.password: environment variable {VARIABLE} is not set" in capsys.readouterr().err
    [status] = dispatch.status(settings)
    assert status.counts["queued"] == 1 and status.counts["sent"] == 0
    assert server.sessions() == []  # nothing was even tried

    monkeypatch.setenv(VARIABLE, PASSWORD)
    assert cli.main(["deliver", "--quiet", *config]) == 0
    assert [m.user for m in server.messages] == [USER]


def test_send_refuses_to_queue_without_the_password(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    config = _site(make_settings, tmp_path, smtp_server)
    settings = load_settings(config[1])
    assert cli.main(["gather", *config]) == 0
    draft = compose.compose(settings, "digest", NOW).edition
    assert draft is not None
    compose.approve(settings, draft.id, by="test", now=NOW)
    with pytest.raises(MissingVariableError, match=VARIABLE):
        dispatch.send(settings, "digest", NOW)
    assert dispatch.status(settings) == [] or dispatch.status(settings)[0].counts["queued"] == 0


def test_an_unset_database_password_spares_check_and_stops_database_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "database_url: postgresql://imk:${IMK_TEST_DB_PASSWORD}@127.0.0.1/imk\nsources: []\n"
    path = write(tmp_path, text)
    assert cli.main(["check", "--config", str(path)]) == 0
    assert "database_url: environment variable IMK_TEST_DB_PASSWORD is not set" in capsys.readouterr().out
    assert cli.main(["items", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: database_url: environment variable IMK_TEST_DB_PASSWORD is not set")
    assert f"({path} line 1)" in err
