"""sign-ups of the last while for the limits against mail bombing, and an index of the confirmation
mails in the outbox (the waiting ones are claimed before the rows of a campaign)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from imk_outreach.db.tables import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_CONFIRMATIONS = "edition_id IS NULL"


def upgrade() -> None:
    op.create_table(
        "signup_attempts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("client_key", sa.String(64)),
        sa.Column("mailbox_key", sa.String(64), nullable=False),
    )
    op.create_index("ix_signup_attempts_at", "signup_attempts", ["at"])
    op.create_index("ix_signup_attempts_client", "signup_attempts", ["client_key", "at"])
    op.create_index("ix_signup_attempts_mailbox", "signup_attempts", ["mailbox_key", "at"])
    op.create_index(
        "ix_outbox_confirmations",
        "outbox",
        ["state", "next_attempt_at"],
        sqlite_where=sa.text(_CONFIRMATIONS),
        postgresql_where=sa.text(_CONFIRMATIONS),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_confirmations", "outbox")
    op.drop_index("ix_signup_attempts_mailbox", "signup_attempts")
    op.drop_index("ix_signup_attempts_client", "signup_attempts")
    op.drop_index("ix_signup_attempts_at", "signup_attempts")
    op.drop_table("signup_attempts")
