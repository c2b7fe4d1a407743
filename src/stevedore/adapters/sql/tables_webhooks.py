"""SQL adapter: the webhooks tables, on the one shared `metadata` of tables.py (which imports this module last)."""

from __future__ import annotations

import sqlalchemy as sa

from stevedore.adapters.sql.tables import Timestamp, byte_ordered_name, metadata

# A namespace's webhooks. The namespace by name, not a key: a personal namespace has no row until it has members.
# The secret is kept as it is (it signs every delivery); it is shown once, when made, and never logged.
webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("namespace", byte_ordered_name(), nullable=False),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("secret", sa.String(256), nullable=False),
    sa.Column("events", sa.String(64), nullable=False),  # "push delete"
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("created_by", sa.String(255), nullable=True),
    # A push reads its namespace's webhooks: one indexed query.
    sa.Index("ix_webhooks_namespace", "namespace"),
    sqlite_autoincrement=True,
)

# The outbox and delivery log: one row per webhook and event, written in the transaction of the push or deletion.
# A deliverer claims a due pending row by setting `claimed_until` (a lease) and `claim` (whose lease it is).
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("webhook_id", sa.Integer, sa.ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("event_id", sa.String(64), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # pending, sent, failed
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", Timestamp, nullable=True),  # NULL once sent or failed
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.String(512), nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("sent_at", Timestamp, nullable=True),
    sa.Column("claimed_until", Timestamp, nullable=True),
    sa.Column("claim", sa.String(32), nullable=True),
    # What is due (pending rows only have a next attempt); a webhook's log, newest first.
    sa.Index("ix_webhook_deliveries_next_attempt_at", "next_attempt_at"),
    sa.Index("ix_webhook_deliveries_webhook_id_id", "webhook_id", "id"),
    sa.Index("ix_webhook_deliveries_created_at", "created_at"),  # the log's pruning
    sqlite_autoincrement=True,
)
