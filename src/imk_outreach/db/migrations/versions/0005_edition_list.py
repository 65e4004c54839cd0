"""the list an edition was queued for

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("editions", sa.Column("list_name", sa.String(100)))


def downgrade() -> None:
    with op.batch_alter_table("editions") as batch:
        batch.drop_column("list_name")
