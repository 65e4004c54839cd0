"""subscribers and outbox

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from imk_outreach.db.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("signup_at", UTCDateTime()),
        sa.Column("confirmed_at", UTCDateTime()),
        sa.Column("unsubscribed_at", UTCDateTime()),
        sa.Column("consent_version", sa.String(100)),
        sa.Column("ip_hash", sa.String(64)),
        sa.Column("source", sa.String(200)),
        sa.Column("bounce_reason", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_subscribers"),
        sa.UniqueConstraint("email_key", name="uq_subscribers_email_key"),
    )
    op.create_index("ix_subscribers_status", "subscribers", ["status"])
    op.create_table(
        "subscriber_lists",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("list", sa.String(100), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_subscriber_lists_subscriber_id_subscribers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subscriber_id", "list", name="pk_subscriber_lists"),
    )
    op.create_index("ix_subscriber_lists_list", "subscriber_lists", ["list"])
    op.create_table(
        "erased_addresses",
        sa.Column("email_hash", sa.String(64), nullable=False),
        sa.Column("erased_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("email_hash", name="pk_erased_addresses"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("edition_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(100), nullable=False),
        sa.Column("subscriber_id", sa.Integer()),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("claimed_by", sa.String(100)),
        sa.Column("lease_until", UTCDateTime()),
        sa.Column("message_id", sa.String(300)),
        sa.Column("reply", sa.Text()),
        sa.Column("error", sa.Text()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["edition_id"], ["editions.id"], name="fk_outbox_edition_id_editions"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_outbox_subscriber_id_subscribers",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint(
            "edition_id", "channel", "subscriber_id", name="uq_outbox_edition_channel_recipient"
        ),
    )
    op.create_index("ix_outbox_state_next_attempt_at", "outbox", ["state", "next_attempt_at"])
    op.create_table(
        "app_settings",
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_app_settings"),
    )


def downgrade() -> None:
    op.drop_table("app_settings")
    op.drop_table("outbox")
    op.drop_table("erased_addresses")
    op.drop_table("subscriber_lists")
    op.drop_table("subscribers")
