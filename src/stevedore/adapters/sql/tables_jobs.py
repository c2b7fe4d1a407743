"""SQL adapter: the periodic jobs' leases, on the one shared `metadata` of tables.py (which imports this module
last)."""

from __future__ import annotations

import sqlalchemy as sa

from stevedore.adapters.sql.tables import Timestamp, metadata

# One row per periodic job (domain/periodic.py): who holds it until when, when it last started and ended, and how.
job_leases = sa.Table(
    "job_leases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(255), nullable=True),
    sa.Column("lease_until", Timestamp, nullable=True),
    sa.Column("last_started_at", Timestamp, nullable=True),
    sa.Column("last_finished_at", Timestamp, nullable=True),
    sa.Column("last_outcome", sa.String(255), nullable=True),
)
