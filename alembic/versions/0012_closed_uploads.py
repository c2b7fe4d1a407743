"""Tombstones of finished and cancelled upload sessions (`closed_uploads`): upload ids are now signed tickets that a
POST hands out without writing anything, and a session's row appears only with its first bytes, so a spent ticket
is told from a fresh one by its tombstone, kept while the ticket is valid.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "closed_uploads",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_closed_uploads_closed_at", "closed_uploads", ["closed_at"])


def downgrade() -> None:
    op.drop_index("ix_closed_uploads_closed_at", table_name="closed_uploads")
    op.drop_table("closed_uploads")
