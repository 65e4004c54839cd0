"""database_url: a SQLite folder that does not exist is an error, a new database is announced once,
and PostgreSQL URLs as providers write them (postgresql://, postgres://) work."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from imk_outreach import cli
from imk_outreach.config import load_settings
from imk_outreach.db import store
from imk_outreach.errors import DatabaseError
from imk_outreach.services.database import dispose_all, engine_for, sqlite_folder_problem

CREATED = "created new database at"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text + "sources: []\n", encoding="utf-8")
    return path


def test_a_sqlite_path_whose_folder_is_missing_is_an_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "database_url: sqlite:///var/typo/x.db\n")
    assert cli.main(["items", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"the folder {tmp_path / 'var' / 'typo'} does not exist" in err and "database_url" in err
    assert not (tmp_path / "var").exists()  # nothing was made, not even the default data folder


def test_open_database_refuses_a_missing_folder_and_makes_nothing(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="does not exist"):
        store.open_database(f"sqlite:///{tmp_path / 'nope' / 'x.db'}")
    assert list(tmp_path.iterdir()) == []


def test_the_default_data_folder_is_made_and_a_new_database_announced_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "")  # the default sqlite:///var/imk-outreach.db
    assert cli.main(["items", "--config", str(path)]) == 0
    database = (tmp_path / "var" / "imk-outreach.db").resolve()
    assert database.is_file()
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if CREATED in line] == [
        f"WARNING imk_outreach.db.engine: {CREATED} {database}"
    ]
    dispose_all()  # as a new process would
    assert cli.main(["items", "--config", str(path)]) == 0
    assert CREATED not in capsys.readouterr().err


def test_a_new_file_in_an_existing_folder_is_announced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "data").mkdir()
    settings = load_settings(write(tmp_path, "database_url: sqlite:///data/news.db\n"))
    caplog.set_level(logging.WARNING, logger="imk_outreach.db.engine")
    engine_for(settings)
    assert any(
        f"{CREATED} {(tmp_path / 'data' / 'news.db').resolve()}" == r.getMessage() for r in caplog.records
    )


def test_check_reports_the_missing_folder_as_a_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "timezone: Europe/Berlin\ndatabase_url: sqlite:///var/typo/x.db\n")
    settings = load_settings(path)
    assert sqlite_folder_problem(settings) is not None
    assert cli.main(["check", "--json", "--config", str(path)]) == 1
    [problem] = json.loads(capsys.readouterr().out)["problems"]
    assert (problem["key"], problem["line"], problem["file"]) == ("database_url", 2, str(path))
    assert "var/typo does not exist" in problem["message"]
    assert not (tmp_path / "var").exists()


def test_check_accepts_the_default_data_folder_before_it_exists(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""))
    assert sqlite_folder_problem(settings) is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@db.example/imk", "postgresql+psycopg://u:p@db.example/imk"),
        ("postgres://u@db.example:5433/imk", "postgresql+psycopg://u@db.example:5433/imk"),
        ("postgresql+psycopg://u@db.example/imk", "postgresql+psycopg://u@db.example/imk"),
        ("sqlite:///var/x.db", "sqlite:///var/x.db"),
    ],
)
def test_postgres_urls_get_the_psycopg_driver(url: str, expected: str) -> None:
    assert store.with_driver(url) == expected


@pytest.mark.postgres
@pytest.mark.parametrize("scheme", ["postgresql://", "postgres://"])
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_plain_postgres_urls_open_a_real_server(
    db_url: str, scheme: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = scheme + db_url.removeprefix("postgresql+psycopg://")
    path = write(tmp_path, f"database_url: '{plain}'\n")
    assert cli.main(["items", "--json", "--config", str(path)]) == 0
    assert json.loads(capsys.readouterr().out) == {"items": []}
    engine = engine_for(load_settings(path))
    assert engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
