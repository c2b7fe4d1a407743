"""SQL adapter: the quotas tables, on the one shared `metadata` of tables.py (which imports this module last)."""

from __future__ import annotations

import sqlalchemy as sa

from stevedore.adapters.sql.tables import Timestamp, byte_ordered_name, metadata

# A namespace's storage quota (domain/quotas.py). Keyed by the namespace's name, not its row: an account's own
# namespace has no row in `namespaces`. No row means no quota, so an ordinary push pays one primary-key look-up;
# NULL in a column means no limit of that kind. `updated_by` is an account's name, kept as text to outlive it.
namespace_quotas = sa.Table(
    "namespace_quotas",
    metadata,
    sa.Column("namespace", byte_ordered_name(), primary_key=True),
    sa.Column("max_bytes", sa.BigInteger, nullable=True),
    sa.Column("max_repositories", sa.Integer, nullable=True),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("updated_by", sa.String(255), nullable=True),
    sa.CheckConstraint("max_bytes IS NULL OR max_bytes >= 0", name="max_bytes_not_negative"),
    sa.CheckConstraint("max_repositories IS NULL OR max_repositories >= 0", name="max_repositories_not_negative"),
)
