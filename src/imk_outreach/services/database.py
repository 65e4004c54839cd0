"""One Engine per database URL for the life of the process."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from imk_outreach.config import Settings, database_url
from imk_outreach.db import store
from imk_outreach.errors import ImkError

# The default data folder beside config.yaml (``database_url``'s and ``media_dir``'s default): made when
# missing, so a fresh clone works. Any other missing folder of a SQLite path is an error (a typo).
DATA_FOLDER = "var"

_engines: dict[str, Engine] = {}


def engine_for(settings: Settings) -> Engine:
    """The migrated Engine for the configured database.

    :raises MissingVariableError: ``database_url`` names an environment variable that is not set.
    :raises DatabaseError: the database cannot be opened or migrated, or a SQLite file's folder does
        not exist.
    """
    url = _prepared_url(settings)
    if url not in _engines:
        _engines[url] = store.open_database(url)
    return _engines[url]


def sqlite_folder_problem(settings: Settings) -> str | None:
    """Why the configured SQLite file cannot be made (its folder does not exist and is not the default
    data folder), None when it can or the database is not SQLite. Reads nothing but the file system.

    :raises MissingVariableError: ``database_url`` names an environment variable that is not set.
    """
    path = sqlite_path(settings)
    if path is None or path.parent.is_dir() or _is_data_folder(settings, path.parent):
        return None
    return f"the folder {path.parent} does not exist; fix the path or create the folder first"


def sqlite_path(settings: Settings) -> Path | None:
    """The configured SQLite file (absolute), None for another database.

    :raises MissingVariableError: ``database_url`` names an environment variable that is not set.
    """
    return store.sqlite_file(database_url(settings))


def _is_data_folder(settings: Settings, folder: Path) -> bool:
    return folder == settings.resolve_path(DATA_FOLDER)


def _prepared_url(settings: Settings) -> str:
    """The database URL, with the default data folder made if the SQLite file goes there."""
    url = database_url(settings)
    path = store.sqlite_file(url)
    if path is not None and not path.parent.exists() and _is_data_folder(settings, path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
    return url


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
    engine = store.open_database(_prepared_url(settings), migrate=False)
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
