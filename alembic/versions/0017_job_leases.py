"""Leases of periodic jobs (`job_leases`): the periodic gc inside the app runs on one node at a time; and the record
of gc runs (`gc_runs`), which /metrics sums.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_leases",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(255), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_outcome", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_job_leases"),
    )
    op.create_table(
        "gc_runs",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("succeeded", sa.Boolean, nullable=False),
        sa.Column("objects", sa.BigInteger, nullable=False),
        sa.Column("bytes_freed", sa.BigInteger, nullable=False),
        sa.Column("tags_removed", sa.Integer, nullable=False),
        sa.Column("manifests_removed", sa.Integer, nullable=False),
        sa.Column("uploads_aborted", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gc_runs"),
    )
    op.create_index("ix_gc_runs_finished_at", "gc_runs", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_gc_runs_finished_at", table_name="gc_runs")
    op.drop_table("gc_runs")
    op.drop_table("job_leases")
