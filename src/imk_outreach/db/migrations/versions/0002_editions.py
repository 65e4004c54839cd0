"""editions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from imk_outreach.db.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "editions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("campaign", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("date", UTCDateTime(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("sections", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(64)),
        sa.Column("approved_by", sa.String(200)),
        sa.Column("approved_at", UTCDateTime()),
        sa.Column("approved_hash", sa.String(64)),
        sa.Column("skip_reason", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_editions"),
    )
    op.create_index("ix_editions_campaign", "editions", ["campaign"])
    op.create_table(
        "edition_items",
        sa.Column("edition_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(40), nullable=False),
        sa.Column("section", sa.String(100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["edition_id"], ["editions.id"], name="fk_edition_items_edition_id_editions", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name="fk_edition_items_item_id_items"),
        sa.PrimaryKeyConstraint("edition_id", "item_id", name="pk_edition_items"),
    )


def downgrade() -> None:
    op.drop_table("edition_items")
    op.drop_table("editions")
