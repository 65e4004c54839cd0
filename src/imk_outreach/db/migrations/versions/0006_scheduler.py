"""the scheduler: campaign schedules and runs, live processes

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from imk_outreach.db.tables import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaign_schedules",
        sa.Column("campaign", sa.String(100), primary_key=True),
        sa.Column("schedule", sa.Text, nullable=False),
        sa.Column("checked_until", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("campaign", name="pk_campaign_schedules"),
    )
    op.create_table(
        "campaign_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("campaign", sa.String(100), nullable=False),
        sa.Column("due_at", UTCDateTime, nullable=False),
        sa.Column("deadline", UTCDateTime, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("edition_id", sa.Integer),
        sa.Column("missed", sa.Integer, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("notified_at", UTCDateTime),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_campaign_runs"),
        sa.ForeignKeyConstraint(
            ["edition_id"], ["editions.id"], name="fk_campaign_runs_edition_id_editions", ondelete="SET NULL"
        ),
        sa.UniqueConstraint("campaign", "due_at", name="uq_campaign_runs_campaign_due_at"),
    )
    op.create_index("ix_campaign_runs_state", "campaign_runs", ["state"])
    op.create_table(
        "processes",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("heartbeat_at", UTCDateTime, nullable=False),
        sa.Column("state", sa.String(40), nullable=False),
        sa.Column("info", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_processes"),
    )


def downgrade() -> None:
    op.drop_table("processes")
    op.drop_index("ix_campaign_runs_state", "campaign_runs")
    op.drop_table("campaign_runs")
    op.drop_table("campaign_schedules")
