"""The audit log: one `audit_events` row per thing that happened, with no foreign key (events outlive accounts).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("actor_id", sa.Integer, nullable=True),
        sa.Column("actor_name", sa.String(255), nullable=True),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("namespace", sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql"), nullable=True),
        sa.Column("target", sa.String(512), nullable=True),
        sa.Column("detail", sa.String(1024), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_events_actor_name_id", "audit_events", ["actor_name", "id"])
    op.create_index("ix_audit_events_namespace_id", "audit_events", ["namespace", "id"])
    op.create_index("ix_audit_events_action_id", "audit_events", ["action", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_action_id", table_name="audit_events")
    op.drop_index("ix_audit_events_namespace_id", table_name="audit_events")
    op.drop_index("ix_audit_events_actor_name_id", table_name="audit_events")
    op.drop_table("audit_events")
