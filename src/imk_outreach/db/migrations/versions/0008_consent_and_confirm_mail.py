"""consent evidence kept as events, the consent wording versioned, tokens that are never reused, and
outbox rows without an edition (the confirmation mail goes through the outbox too)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import secrets

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
