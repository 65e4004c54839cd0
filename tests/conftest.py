"""Shared fixtures: a real PostgreSQL server, a SQLite file, a local HTTP server, config files."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, text

from imk_outreach.config import Settings, load_settings
from imk_outreach.services.database import dispose_all
from tests.support.httpserver import FixtureServer
from tests.support.postgres import PostgresServer, start_server
from tests.support.smtpserver import smtp_server, smtp_server_factory  # noqa: F401

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_db_counter = itertools.count()
CLOCK_SHIFT_DIR = Path(__file__).parent / "support" / "clockshift"


def pytest_configure(config: pytest.Config) -> None:
    """``IMK_TEST_CLOCK_SHIFT=+400d``: the whole suite, child processes included, runs on a moved clock
    (see tests/support/clockshift/sitecustomize.py)."""
    if os.environ.get("IMK_TEST_CLOCK_SHIFT"):
        paths = [str(CLOCK_SHIFT_DIR), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        os.environ["PYTHONPATH"] = os.pathsep.join(paths)
        import importlib.util

        spec = importlib.util.spec_from_file_location("_imk_clockshift", CLOCK_SHIFT_DIR / "sitecustomize.py")
        assert spec is not None and spec.loader is not None
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    try:
        server = start_server()
    except RuntimeError as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL tests are required in CI: {exc}")
        pytest.skip(f"PostgreSQL not available: {exc}")
    yield server
    server.stop()


def _create_database(server: PostgresServer) -> str:
    name = f"imk_test_{os.getpid()}_{next(_db_counter)}"
    engine = create_engine(server.admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server.url(name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: a SQLite file, then the same test on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return _create_database(request.getfixturevalue("pg_server"))


@pytest.fixture(autouse=True)
def _dispose_engines() -> Iterator[None]:
    yield
    dispose_all()


@pytest.fixture
def http_server() -> Iterator[FixtureServer]:
    server = FixtureServer(FIXTURES).start()
    yield server
    server.stop()


ConfigFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path, db_url: str) -> ConfigFactory:
    """Write a config.yaml into tmp_path with these sources (and extra keys) and load it."""

    def factory(sources: list[dict[str, Any]], **extra: Any) -> Settings:
        data: dict[str, Any] = {"database_url": db_url, "sources": sources, **extra}
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return load_settings(path)

    return factory
