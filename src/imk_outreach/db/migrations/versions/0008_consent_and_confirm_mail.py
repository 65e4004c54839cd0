"""consent evidence kept as events, the consent wording versioned, tokens that are never reused, and
outbox rows without an edition (the confirmation mail goes through the outbox too)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import secrets
from typing import Any

import sqlalchemy as sa
from alembic import op

from imk_outreach.db.tables import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consent_texts",
        sa.Column("version", sa.String(100), primary_key=True),
        sa.Column("language", sa.String(8), primary_key=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "consent_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "subscriber_id", sa.Integer(), sa.ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("ip_hash", sa.String(64)),
        sa.Column("consent_version", sa.String(100)),
        sa.Column("language", sa.String(8)),
        sa.Column("source", sa.String(200)),
        sa.Column("note", sa.Text()),
        sa.Column("detail", sa.Text()),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_consent_events_subscriber", "consent_events", ["subscriber_id", "id"])
    _events_from_rows(op.get_bind())
    op.add_column("subscribers", sa.Column("token_nonce", sa.String(32)))
    subscribers = sa.table("subscribers", sa.column("id", sa.Integer), sa.column("token_nonce", sa.String))
    conn = op.get_bind()
    for (subscriber_id,) in conn.execute(sa.select(subscribers.c.id)).all():
        conn.execute(
            subscribers.update()
            .where(subscribers.c.id == subscriber_id)
            .values(token_nonce=secrets.token_hex(16))
        )
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("edition_id", existing_type=sa.Integer(), nullable=True)
    op.create_index("ix_outbox_subscriber", "outbox", ["subscriber_id"])


_subscribers = sa.table(
    "subscribers",
    *(sa.column(name) for name in ("id", "language", "status", "ip_hash", "source", "consent_version")),
    sa.column("bounce_reason"),
    *(
        sa.column(name, UTCDateTime)
        for name in ("signup_at", "confirmed_at", "unsubscribed_at", "updated_at")
    ),
)
_EVENT_COLUMNS = (
    "subscriber_id",
    "kind",
    "ip_hash",
    "consent_version",
    "language",
    "source",
    "note",
    "detail",
)
_events = sa.table(
    "consent_events", *(sa.column(name) for name in _EVENT_COLUMNS), sa.column("at", UTCDateTime)
)
_FROM_ROW = '{"recorded": "from the subscriber row, before consent events were kept"}'


def _events_from_rows(conn: sa.Connection) -> None:
    """The evidence a subscriber row kept before there were events becomes their first events, so a
    later sign-up that overwrites the row loses none of it."""
    for row in conn.execute(sa.select(_subscribers).order_by(_subscribers.c.id)):
        events = sorted(_row_events(row), key=lambda event: event["at"])
        if events:
            conn.execute(_events.insert(), events)


def _row_events(row: Any) -> list[dict[str, Any]]:
    def event(kind: str, at: Any, **values: Any) -> dict[str, Any]:
        empty = dict.fromkeys(_EVENT_COLUMNS)
        fixed = {
            "subscriber_id": row.id,
            "language": row.language,
            "detail": _FROM_ROW,
            "kind": kind,
            "at": at,
        }
        return {**empty, **fixed, **values}

    events = []
    if row.signup_at is not None:
        source = row.source or ""
        kind = "import" if source.startswith("import:") else "add" if source == "cli" else "signup"
        version = row.consent_version
        events.append(
            event(kind, row.signup_at, ip_hash=row.ip_hash, source=row.source, consent_version=version)
        )
    if row.confirmed_at is not None:
        events.append(event("confirm", row.confirmed_at, consent_version=row.consent_version))
    if row.unsubscribed_at is not None:
        events.append(event("unsubscribe", row.unsubscribed_at))
    if row.status == "bounced":
        events.append(event("bounce", row.updated_at, note=row.bounce_reason))
    return events


def downgrade() -> None:
    op.drop_index("ix_outbox_subscriber", "outbox")
    op.execute("DELETE FROM outbox WHERE edition_id IS NULL")
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("edition_id", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("token_nonce")
    op.drop_index("ix_consent_events_subscriber", "consent_events")
    op.drop_table("consent_events")
    op.drop_table("consent_texts")
