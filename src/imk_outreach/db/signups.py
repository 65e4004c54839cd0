"""Web sign-ups of the last while, counted for the limits against mail bombing."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, func, select, text

from imk_outreach.db.tables import signup_attempts

__all__ = ["count_signups", "forget_signups", "lock_signups", "record_signup"]

# Any fixed number: the key of the PostgreSQL advisory lock that serialises sign-ups.
_SIGNUP_LOCK = 0x1A5_516E


def lock_signups(conn: Connection) -> None:
    """Let one sign-up at a time count and record (until this transaction ends), so two at once cannot
    both slip under a limit, nor both insert the same new address. Call it first in the transaction:
    on SQLite it takes the write lock (``BEGIN IMMEDIATE``). Sign-ups are few; the wait is short."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SIGNUP_LOCK})


def count_signups(
    conn: Connection, since: datetime, client_key: str | None = None, mailbox_key: str | None = None
) -> int:
    """Sign-ups recorded after ``since``: all of them, or those of one client or one mailbox."""
    query = select(func.count()).select_from(signup_attempts).where(signup_attempts.c.at > since)
    if client_key is not None:
        query = query.where(signup_attempts.c.client_key == client_key)
    if mailbox_key is not None:
        query = query.where(signup_attempts.c.mailbox_key == mailbox_key)
    return int(conn.execute(query).scalar_one())


def record_signup(conn: Connection, at: datetime, client_key: str | None, mailbox_key: str) -> None:
    conn.execute(signup_attempts.insert().values(at=at, client_key=client_key, mailbox_key=mailbox_key))


def forget_signups(conn: Connection, before: datetime) -> int:
    """Delete the sign-ups recorded before ``before`` (no limit looks back that far)."""
    statement = signup_attempts.delete().where(signup_attempts.c.at < before)
    return int(conn.execute(statement).rowcount or 0)
