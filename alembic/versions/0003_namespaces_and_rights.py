"""Namespaces, their members and rights.

A namespace gets a row when a first push claims it or an administrator creates it; members hold pull, push or admin.
Repositories pushed before this revision stay in namespaces without a row, which no push can claim: an administrator
gives them (`stevedore namespace create NAME --owner USER`).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _byte_ordered_name(length: int = 255) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "namespaces",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", _byte_ordered_name(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Integer, nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"], ["accounts.id"], name="fk_namespaces_created_by_accounts", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_namespaces"),
        sa.UniqueConstraint("name", name="uq_namespaces_name"),
    )
    op.create_table(
        "namespace_members",
        sa.Column("namespace_id", sa.Integer, nullable=False),
        sa.Column("account_id", sa.Integer, nullable=False),
        sa.Column("right", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["namespaces.id"],
            name="fk_namespace_members_namespace_id_namespaces",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_namespace_members_account_id_accounts", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("namespace_id", "account_id", name="pk_namespace_members"),
    )
    op.create_index("ix_namespace_members_account_id", "namespace_members", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_namespace_members_account_id", table_name="namespace_members")
    op.drop_table("namespace_members")
    op.drop_table("namespaces")
