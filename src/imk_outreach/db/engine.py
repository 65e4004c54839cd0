"""Engines and migrations, and the small SQL helpers every aggregate module shares."""

from __future__ import annotations

import logging
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
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import SQLAlchemyError

from imk_outreach.errors import DatabaseError

log = logging.getLogger(__name__)
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
    # Deleted and overwritten content is zeroed, not only unlinked: an erased subscriber's address must
    # not stay readable in the free space of a page (see purge_deleted for the -wal file).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


# The tables an erasure deletes from or rewrites; PostgreSQL vacuums the small ones at once (the outbox,
# large and busy, is left to autovacuum: docs/subscribers.md says what that means).
_VACUUMED_AFTER_ERASE = ("subscribers", "subscriber_lists", "consent_events")


def purge_deleted(engine: Engine) -> bool:
    """After an erasure committed: make the deleted rows go from the files as far as the database can.

    SQLite (``secure_delete`` on, so the pages themselves carry zeros): ``wal_checkpoint(TRUNCATE)``
    copies the new pages into the database file and empties the ``-wal`` file, which still holds the
    old page images. PostgreSQL: ``VACUUM`` of the people tables, so their dead row versions are
    removed now rather than at the next autovacuum.

    :returns: False when it could not finish now (another process is reading the SQLite database,
        or the role may not vacuum); the caller says so, nothing is undone.
    """
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            if conn.dialect.name == "sqlite":
                busy, _, _ = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
                return not busy
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"VACUUM {', '.join(_VACUUMED_AFTER_ERASE)}")
            return True
    except SQLAlchemyError as exc:
        log.warning("after an erasure: could not clear deleted rows from the database files: %s", exc)
        return False


def _without_detail(context: ExceptionContext) -> None:
    """PostgreSQL's errors carry a DETAIL line quoting the values of the row or key at fault ("Key
    (email_key)=(x@y) already exists"), and an error message may end up in a log: the message keeps
    every other line (the detail stays readable in ``exc.orig.diag.message_detail``)."""
    for error in (context.original_exception, context.sqlalchemy_exception):
        if error is not None and error.args and isinstance(error.args[0], str) and "DETAIL:" in error.args[0]:
            kept = [line for line in error.args[0].splitlines() if not line.startswith("DETAIL:")]
            error.args = ("\n".join(kept), *error.args[1:])


def redacted_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparseable URL is shown as given
        return url


def with_driver(url: str) -> str:
    """``postgresql://`` and ``postgres://`` (as hosting providers hand them out) with the psycopg 3
    driver this program ships with (``postgresql+psycopg://``); other URLs as given."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (as written: relative paths stay relative); None for other databases,
    in-memory ones and ``file:`` URIs."""
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - open_database reports a bad URL
        return None
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return None if database.startswith("file:") else Path(database)


def open_database(url: str, migrate: bool = True) -> Engine:
    """An Engine for ``url`` with the schema migrated to the newest revision. A SQLite file is created
    when missing, but never its folder (a typo in the path must not silently make a new, empty
    database); a database set up from nothing is logged once.

    :raises DatabaseError: the URL is wrong, a SQLite file's folder does not exist, or the server cannot
        be reached.
    """
    url = with_driver(url)
    shown = redacted_url(url)
    path = sqlite_file(url)
    if path is not None and not path.parent.is_dir():
        raise DatabaseError(
            shown,
            f"the folder {path.parent} does not exist; check the path in database_url for a typo, "
            "or create the folder first",
        )
    try:
        # hide_parameters: an error message or log line never shows the values of a statement
        # (subscribers' addresses and names)
        engine = create_engine(url, future=True, hide_parameters=True)
    except (SQLAlchemyError, ValueError, ImportError) as exc:
        raise DatabaseError(shown, f"cannot use this database URL: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    if engine.dialect.name == "postgresql":
        event.listen(engine, "handle_error", _without_detail)
    if migrate:
        try:
            before = _upgrade(engine)
        except SQLAlchemyError as exc:
            engine.dispose()
            orig = getattr(exc, "orig", None)
            reason = (str(orig or exc).strip().splitlines() or ["unknown error"])[0]
            raise DatabaseError(shown, f"cannot open or migrate: {reason}") from exc
        if before is None:  # loud on purpose: a new, empty database is how a wrong path shows
            if path is not None:
                log.warning("created new database at %s", path.resolve())
            else:
                log.warning("set up the tables of new database %s", shown)
    return engine


def upgrade(engine: Engine) -> None:
    """Run pending Alembic migrations (cheap when the schema is current)."""
    _upgrade(engine)


def _upgrade(engine: Engine) -> str | None:
    """Migrate to the newest revision; :returns: the revision before (None: the database was empty)."""
    with engine.begin() as conn:
        head = ScriptDirectory.from_config(_alembic_config(conn)).get_current_head()
        current = MigrationContext.configure(conn).get_current_revision()
        if current != head:
            command.upgrade(_alembic_config(conn), "head")
        return current


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
