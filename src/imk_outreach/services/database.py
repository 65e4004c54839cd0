"""One Engine per database URL for the life of the process."""

from __future__ import annotations

from sqlalchemy import Engine

from imk_outreach.config import Settings, database_url
from imk_outreach.db import store

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
