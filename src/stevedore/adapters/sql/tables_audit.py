"""SQL adapter: the audit tables, on the one shared `metadata` of tables.py (which imports this module last)."""

from __future__ import annotations

import sqlalchemy as sa

from stevedore.adapters.sql.tables import Timestamp, byte_ordered_name, metadata

# One row per event, never updated. No foreign key to accounts: an event outlives the account it names (the id is
# never reused, and the name is kept as text beside it).
audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", Timestamp, nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("actor_id", sa.Integer, nullable=True),
    sa.Column("actor_name", sa.String(255), nullable=True),
    sa.Column("address", sa.String(64), nullable=True),
    sa.Column("namespace", byte_ordered_name(), nullable=True),
    sa.Column("target", sa.String(512), nullable=True),
    sa.Column("detail", sa.String(1024), nullable=True),
    # Newest first, filtered by one of these: each index ends with the id the page is ordered by.
    sa.Index("ix_audit_events_actor_name_id", "actor_name", "id"),
    sa.Index("ix_audit_events_namespace_id", "namespace", "id"),
    sa.Index("ix_audit_events_action_id", "action", "id"),
    # SQLite would otherwise hand out ids again after the newest rows went: paging goes by id.
    sqlite_autoincrement=True,
)
