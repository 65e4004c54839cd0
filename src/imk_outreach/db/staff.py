"""Staff users of the web app, their sessions and their failed sign-ins (for the throttle)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, or_, select, update

from imk_outreach.db.tables import staff_login_attempts, staff_sessions, staff_users

__all__ = [
    "SessionRow",
    "UserRow",
    "delete_login_attempt",
    "delete_session",
    "delete_sessions_of",
    "delete_user",
    "earlier_login_attempts",
    "forget_login_attempts",
    "forget_sessions",
    "insert_session",
    "insert_user",
    "list_users",
    "record_login_attempt",
    "session_by_hash",
    "set_password_hash",
    "set_user_language",
    "touch_session",
    "user_by_id",
    "user_by_name",
]


@dataclass(frozen=True)
class UserRow:
    id: int
    name: str
    email: str | None
    language: str | None
    password_hash: str
    created_at: datetime


@dataclass(frozen=True)
class SessionRow:
    token_hash: str
    user_id: int
    csrf: str
    created_at: datetime
    last_seen_at: datetime


_USER_COLUMNS = (
    staff_users.c.id,
    staff_users.c.name,
    staff_users.c.email,
    staff_users.c.language,
    staff_users.c.password_hash,
    staff_users.c.created_at,
)


def _user(row: Any) -> UserRow:
    return UserRow(
        id=int(row.id),
        name=row.name,
        email=row.email,
        language=row.language,
        password_hash=row.password_hash,
        created_at=row.created_at,
    )


# -- users -----------------------------------------------------------------------------------------


def insert_user(
    conn: Connection, name: str, email: str | None, language: str | None, password_hash: str, now: datetime
) -> UserRow:
    """Add a user; the UNIQUE name raises IntegrityError when one of that name exists."""
    values = {"name": name, "email": email, "language": language, "password_hash": password_hash}
    statement = staff_users.insert().values(**values, created_at=now, updated_at=now)
    user_id = conn.execute(statement.returning(staff_users.c.id)).scalar_one()
    return UserRow(int(user_id), name, email, language, password_hash, now)


def user_by_name(conn: Connection, name: str) -> UserRow | None:
    row = conn.execute(select(*_USER_COLUMNS).where(staff_users.c.name == name)).one_or_none()
    return _user(row) if row is not None else None


def user_by_id(conn: Connection, user_id: int) -> UserRow | None:
    row = conn.execute(select(*_USER_COLUMNS).where(staff_users.c.id == user_id)).one_or_none()
    return _user(row) if row is not None else None


def list_users(conn: Connection) -> list[UserRow]:
    """Every staff user, by name."""
    return [_user(row) for row in conn.execute(select(*_USER_COLUMNS).order_by(staff_users.c.name))]


def delete_user(conn: Connection, user_id: int) -> None:
    """Delete a user and their sessions (explicitly: not every database enforces the cascade)."""
    delete_sessions_of(conn, user_id)
    conn.execute(delete(staff_users).where(staff_users.c.id == user_id))


def set_password_hash(conn: Connection, user_id: int, password_hash: str, now: datetime) -> None:
    statement = update(staff_users).where(staff_users.c.id == user_id)
    conn.execute(statement.values(password_hash=password_hash, updated_at=now))


def set_user_language(conn: Connection, user_id: int, language: str, now: datetime) -> bool:
    """Store the user's language; False when there is no such user."""
    statement = update(staff_users).where(staff_users.c.id == user_id)
    return bool(conn.execute(statement.values(language=language, updated_at=now)).rowcount)


# -- sessions --------------------------------------------------------------------------------------


def insert_session(conn: Connection, token_hash: str, user_id: int, csrf: str, now: datetime) -> None:
    values = {"token_hash": token_hash, "user_id": user_id, "csrf": csrf}
    conn.execute(staff_sessions.insert().values(**values, created_at=now, last_seen_at=now))


def session_by_hash(conn: Connection, token_hash: str) -> tuple[SessionRow, UserRow] | None:
    """The session with this token hash and its user, None when there is none."""
    query = (
        select(staff_sessions, *_USER_COLUMNS)
        .join(staff_users, staff_users.c.id == staff_sessions.c.user_id)
        .where(staff_sessions.c.token_hash == token_hash)
    )
    row = conn.execute(query).one_or_none()
    if row is None:
        return None
    session = SessionRow(row.token_hash, int(row.user_id), row.csrf, row.created_at, row.last_seen_at)
    return session, _user(row)


def touch_session(conn: Connection, token_hash: str, now: datetime) -> None:
    statement = update(staff_sessions).where(staff_sessions.c.token_hash == token_hash)
    conn.execute(statement.values(last_seen_at=now))


def delete_session(conn: Connection, token_hash: str) -> None:
    conn.execute(delete(staff_sessions).where(staff_sessions.c.token_hash == token_hash))


def delete_sessions_of(conn: Connection, user_id: int) -> int:
    result = conn.execute(delete(staff_sessions).where(staff_sessions.c.user_id == user_id))
    return int(result.rowcount or 0)


def forget_sessions(conn: Connection, idle_before: datetime, started_before: datetime) -> int:
    """Delete the sessions last used before ``idle_before`` or begun before ``started_before``."""
    stale = or_(staff_sessions.c.last_seen_at < idle_before, staff_sessions.c.created_at < started_before)
    return int(conn.execute(delete(staff_sessions).where(stale)).rowcount or 0)


# -- failed sign-ins -------------------------------------------------------------------------------


def record_login_attempt(conn: Connection, client_key: str, at: datetime) -> int:
    """Count a sign-in of this client (until it is deleted again); returns its id."""
    statement = staff_login_attempts.insert().values(at=at, client_key=client_key)
    return int(conn.execute(statement.returning(staff_login_attempts.c.id)).scalar_one())


def earlier_login_attempts(
    conn: Connection, client_key: str, since: datetime, before_id: int
) -> list[datetime]:
    """When this client's counted attempts after ``since`` and before the attempt ``before_id`` were
    made, oldest first."""
    query = (
        select(staff_login_attempts.c.at)
        .where(
            staff_login_attempts.c.client_key == client_key,
            staff_login_attempts.c.at > since,
            staff_login_attempts.c.id < before_id,
        )
        .order_by(staff_login_attempts.c.at, staff_login_attempts.c.id)
    )
    return list(conn.execute(query).scalars())


def delete_login_attempt(conn: Connection, attempt_id: int) -> None:
    conn.execute(delete(staff_login_attempts).where(staff_login_attempts.c.id == attempt_id))


def forget_login_attempts(conn: Connection, before: datetime) -> int:
    """Delete the attempts made at or before ``before`` (the throttle counts only later ones)."""
    statement = delete(staff_login_attempts).where(staff_login_attempts.c.at <= before)
    return int(conn.execute(statement).rowcount or 0)
