"""social posts in the outbox (post key, rendered post, the platform's address of it) and the state
of each social channel (paused, platform session)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from imk_outreach.db.tables import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN and a unique index: no table rebuild on SQLite (it would have to carry the partial
    # index of confirmation mails over)
    op.add_column("outbox", sa.Column("post_key", sa.String(200)))
    op.add_column("outbox", sa.Column("payload", sa.JSON()))
    op.add_column("outbox", sa.Column("remote_url", sa.Text()))
    op.add_column("outbox", sa.Column("scheduled_at", UTCDateTime))
    op.create_index("ix_outbox_channel_scheduled", "outbox", ["channel", "scheduled_at"])
    op.create_index(
        "uq_outbox_edition_channel_post", "outbox", ["edition_id", "channel", "post_key"], unique=True
    )
    op.create_table(
        "channel_states",
        sa.Column("channel", sa.String(100), primary_key=True),
        sa.Column("paused_at", UTCDateTime),
        sa.Column("paused_reason", sa.Text()),
        sa.Column("checked_at", UTCDateTime),
        sa.Column("checked_as", sa.Text()),
        sa.Column("session", sa.Text()),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("channel_states")
    op.drop_index("uq_outbox_edition_channel_post", "outbox")
    op.drop_index("ix_outbox_channel_scheduled", "outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("scheduled_at")
        batch.drop_column("remote_url")
        batch.drop_column("payload")
        batch.drop_column("post_key")
