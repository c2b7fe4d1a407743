"""SQL adapter: the access tokens tables, on the one shared `metadata` of tables.py (which imports this module last)."""

from __future__ import annotations

import sqlalchemy as sa

from stevedore.adapters.sql.tables import Timestamp, metadata

# A personal access token: only the SHA-256 of its secret is kept. `namespaces` is the space-separated list the token
# is limited to ('' for none); the names are checked by the domain before they get here.
access_tokens = sa.Table(
    "access_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("namespaces", sa.Text, nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=True),
    sa.Column("last_used_at", Timestamp, nullable=True),
    sa.Column("revoked_at", Timestamp, nullable=True),
    sa.Index("ix_access_tokens_account_id", "account_id"),
)
