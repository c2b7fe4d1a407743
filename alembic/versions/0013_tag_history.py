"""Tag history (`tag_history`): every move of a tag, kept with time, digests and who did it, so that the pages can
show it and put a tag back on an earlier manifest.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tag_history",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column(
            "repository_id",
            sa.Integer,
            sa.ForeignKey("repositories.id", ondelete="CASCADE", name="fk_tag_history_repository_id_repositories"),
            nullable=False,
        ),
        sa.Column("tag", sa.String(128).with_variant(sa.String(128, collation="C"), "postgresql"), nullable=False),
        sa.Column("old_digest", sa.String(160), nullable=True),
        sa.Column("new_digest", sa.String(160), nullable=True),
        sa.Column("actor", sa.String(255), nullable=True),
        sa.Column("cause", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tag_history"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_tag_history_repository_id_tag_at", "tag_history", ["repository_id", "tag", "at"])
    op.create_index("ix_tag_history_repository_id_old_digest", "tag_history", ["repository_id", "old_digest"])
    op.create_index("ix_tag_history_at", "tag_history", ["at"])


def downgrade() -> None:
    op.drop_index("ix_tag_history_at", table_name="tag_history")
    op.drop_index("ix_tag_history_repository_id_old_digest", table_name="tag_history")
    op.drop_index("ix_tag_history_repository_id_tag_at", table_name="tag_history")
    op.drop_table("tag_history")
