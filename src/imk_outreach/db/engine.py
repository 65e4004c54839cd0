"""Engines and migrations, and the small SQL helpers every aggregate module shares."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    event,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from imk_outreach.errors import DatabaseError

MIGRATIONS = Path(__file__).with_name("migrations")
_CHUNK = 500


def insert_for(conn: Connection, table: Any) -> Any:
    """INSERT in the connection's dialect (both have ON CONFLICT)."""
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


def chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    """``values`` in slices small enough for an IN (...) list."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


# -- engine and migrations -------------------------------------------------------------------------


def _alembic_config(connection: Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL: safe against process crashes, fewer fsyncs
    cursor.close()


def redacted_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparseable URL is shown as given
        return url


def open_database(url: str, migrate: bool = True) -> Engine:
    """An Engine for ``url`` with the schema migrated to the newest revision.

    :raises DatabaseError: the URL is wrong or the server cannot be reached.
    """
    shown = redacted_url(url)
    try:
        if url.startswith("sqlite:///") and ":memory:" not in url:
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, future=True)
    except (SQLAlchemyError, ValueError, ImportError) as exc:
        raise DatabaseError(shown, f"cannot use this database URL: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    if migrate:
        try:
            upgrade(engine)
        except SQLAlchemyError as exc:
            engine.dispose()
            orig = getattr(exc, "orig", None)
            reason = (str(orig or exc).strip().splitlines() or ["unknown error"])[0]
            raise DatabaseError(shown, f"cannot open or migrate: {reason}") from exc
    return engine


def upgrade(engine: Engine) -> None:
    """Run pending Alembic migrations (cheap when the schema is current)."""
    with engine.begin() as conn:
        head = ScriptDirectory.from_config(_alembic_config(conn)).get_current_head()
        if MigrationContext.configure(conn).get_current_revision() == head:
            return
        command.upgrade(_alembic_config(conn), "head")


def schema_revisions(engine: Engine) -> tuple[str | None, str]:
    """(the database's Alembic revision, None for an empty database; the newest this code knows).

    :raises DatabaseError: the database cannot be reached.
    """
    try:
        with engine.connect() as conn:
            head = ScriptDirectory.from_config(_alembic_config(conn)).get_current_head()
            current = MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None)
        reason = (str(orig or exc).strip().splitlines() or ["unknown error"])[0]
        raise DatabaseError(redacted_url(str(engine.url)), f"cannot connect: {reason}") from exc
    assert head is not None
    return current, head
