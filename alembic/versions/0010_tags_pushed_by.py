"""Who pushed a tag: the pusher's name on each tag, and the indexes of the tags pages' date order.

`tags.pushed_by` is the account name of the last push that set the tag (a robot's `namespace+name` too): a name,
not a foreign key, so it outlives the account; NULL for tags pushed before this revision. The two indexes serve
a repository's tags newest first (keyset pages) and the front page's latest pushes across repositories.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tags") as batch:
        batch.add_column(sa.Column("pushed_by", sa.String(255), nullable=True))
    op.create_index("ix_tags_repository_id_updated_at", "tags", ["repository_id", "updated_at", "name"])
    op.create_index("ix_tags_updated_at", "tags", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_tags_updated_at", table_name="tags")
    op.drop_index("ix_tags_repository_id_updated_at", table_name="tags")
    with op.batch_alter_table("tags") as batch:
        batch.drop_column("pushed_by")
