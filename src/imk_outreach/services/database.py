"""One Engine per database URL for the life of the process."""

from __future__ import annotations

from sqlalchemy import Engine

from imk_outreach.config import Settings, database_url
from imk_outreach.db import store
from imk_outreach.errors import ImkError

_engines: dict[str, Engine] = {}


def engine_for(settings: Settings) -> Engine:
    """The migrated Engine for the configured database.

    :raises DatabaseError: the database cannot be opened or migrated.
    """
    url = database_url(settings)
    if url not in _engines:
        _engines[url] = store.open_database(url)
    return _engines[url]


def dispose_all() -> None:
    """Close every pooled connection (tests, and before a process forks workers)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


class SchemaOutdated(ImkError):
    """The database's schema is older than this version of the program."""

    def __init__(self, url: str, current: str, head: str) -> None:
        super().__init__(
            f"the database {url} has schema revision {current}, this version needs {head}: "
            "run 'imk-outreach db upgrade' first (back the database up before; see docs/operations.md)"
        )


def schema_state(settings: Settings) -> tuple[str | None, str]:
    """(current revision or None for a new database, newest revision), without migrating.

    :raises DatabaseError: the database cannot be reached.
    """
    engine = store.open_database(database_url(settings), migrate=False)
    try:
        return store.schema_revisions(engine)
    finally:
        engine.dispose()


def require_current_schema(settings: Settings) -> bool:
    """For long-running processes: a new database is created (True: it was new), an old schema is
    refused, since other processes may still run the old code against it.

    :raises SchemaOutdated: the schema needs ``db upgrade``.
    """
    current, head = schema_state(settings)
    if current is not None and current != head:
        raise SchemaOutdated(store.redacted_url(database_url(settings)), current, head)
    engine_for(settings)
    return current is None


def upgrade(settings: Settings) -> tuple[str | None, str]:
    """``db upgrade``: run the pending migrations; returns (revision before, revision now)."""
    before, head = schema_state(settings)
    engine_for(settings)
    return before, head
