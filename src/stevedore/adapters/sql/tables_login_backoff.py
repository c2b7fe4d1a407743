"""SQL adapter: the login backoff table, on the one shared `metadata` of tables.py (which imports this module last)."""

from __future__ import annotations

import sqlalchemy as sa

from stevedore.adapters.sql.tables import Timestamp, metadata
from stevedore.domain.login_backoff import KEY_COLUMN_LENGTH

# Failed password logins per key (domain/login_backoff.py): `kind` is "account" (the name as typed, lowercased) or
# "address" (IPv4 whole, IPv6 by its /64); `key` is bounded (long or unprintable keys are stored as a hash). No foreign
# key: unknown names count too. When a key is blocked is not stored: it follows from the count and the last failure by
# the rule. Kind "known" is an (account, address) pair that logged in with the password (the key a hash of both,
# `failures` 0, `last_failure_at` the last such login, renewed at most daily): exempt from the account's block.
login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("key", sa.String(KEY_COLUMN_LENGTH), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("last_failure_at", Timestamp, nullable=False),
    # Forgotten keys are dropped by age.
    sa.Index("ix_login_failures_last_failure_at", "last_failure_at"),
)
