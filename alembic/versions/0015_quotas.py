"""Storage quotas per namespace (`namespace_quotas`): the most bytes and repositories a namespace may hold.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "namespace_quotas",
        sa.Column(
            "namespace", sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql"), nullable=False
        ),
        sa.Column("max_bytes", sa.BigInteger, nullable=True),
        sa.Column("max_repositories", sa.Integer, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("namespace", name="pk_namespace_quotas"),
        sa.CheckConstraint("max_bytes IS NULL OR max_bytes >= 0", name="ck_namespace_quotas_max_bytes_not_negative"),
        sa.CheckConstraint(
            "max_repositories IS NULL OR max_repositories >= 0",
            name="ck_namespace_quotas_max_repositories_not_negative",
        ),
    )


def downgrade() -> None:
    op.drop_table("namespace_quotas")
