"""item images are stored copies: image_source keeps the URL a copy was made from

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_items = sa.table("items", sa.column("image", sa.Text), sa.column("image_source", sa.Text))
_sources = sa.table("sources", sa.column("etag", sa.Text), sa.column("last_modified", sa.Text))


def upgrade() -> None:
    op.add_column("items", sa.Column("image_source", sa.Text()))
    # `image` now names a stored copy (media/<sha256>.jpg). A URL stored before is where a copy has
    # to come from; editions no longer show it. Forgetting the validators makes the next gather read
    # every source in full, so the copies are made then instead of when a source next changes.
    op.execute(
        _items.update().where(_items.c.image.is_not(None)).values(image_source=_items.c.image, image=None)
    )
    op.execute(_sources.update().values(etag=None, last_modified=None))


def downgrade() -> None:
    op.execute(_items.update().where(_items.c.image_source.is_not(None)).values(image=_items.c.image_source))
    with op.batch_alter_table("items") as batch:
        batch.drop_column("image_source")
