"""Rules per namespace or repository (`tag_rules`): immutable tags and retention.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _name() -> sa.types.TypeEngine[str]:
    return sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "tag_rules",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("namespace", _name(), nullable=False),
        sa.Column("repository", _name(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("pattern", sa.String(255), nullable=False),
        sa.Column("keep_newest", sa.Integer, nullable=True),
        sa.Column("keep_days", sa.Integer, nullable=True),
        sa.Column("untagged_days", sa.Integer, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_tag_rules"),
        sa.CheckConstraint("kind IN ('immutable', 'retention')", name="ck_tag_rules_kind_known"),
        sa.CheckConstraint(
            "(keep_newest IS NULL OR keep_newest >= 0) AND (keep_days IS NULL OR keep_days >= 0) "
            "AND (untagged_days IS NULL OR untagged_days >= 0)",
            name="ck_tag_rules_parameters_not_negative",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_tag_rules_namespace_kind", "tag_rules", ["namespace", "kind"])
    op.create_index("ix_tag_rules_kind", "tag_rules", ["kind"])


def downgrade() -> None:
    op.drop_index("ix_tag_rules_kind", table_name="tag_rules")
    op.drop_index("ix_tag_rules_namespace_kind", table_name="tag_rules")
    op.drop_table("tag_rules")
