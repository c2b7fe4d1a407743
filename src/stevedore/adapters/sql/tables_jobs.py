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

# One row per `stevedore gc` that changed something or failed (the command line's, cron's or the periodic one's):
# what /metrics shows of garbage collection, summed over every node (web/metrics.py).
gc_runs = sa.Table(
    "gc_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("started_at", Timestamp, nullable=False),
    sa.Column("finished_at", Timestamp, nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),  # "command line" or "periodic"
    sa.Column("succeeded", sa.Boolean, nullable=False),
    sa.Column("objects", sa.BigInteger, nullable=False),  # blobs deleted, rows and bytes
    sa.Column("bytes_freed", sa.BigInteger, nullable=False),
    sa.Column("tags_removed", sa.Integer, nullable=False),  # by retention
    sa.Column("manifests_removed", sa.Integer, nullable=False),
    sa.Column("uploads_aborted", sa.Integer, nullable=False),
    sa.Index("ix_gc_runs_finished_at", "finished_at"),
)
