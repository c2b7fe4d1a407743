"""SQL adapter: the rules tables, on the one shared `metadata` of tables.py (which imports this module last)."""

from __future__ import annotations

import sqlalchemy as sa

from stevedore.adapters.sql.tables import Timestamp, byte_ordered_name, metadata

# Immutable-tag and retention rules (domain/rules.py), per namespace or per repository of it. Keyed by the
# namespace's name, not its row: an account's own namespace has no row in `namespaces`. `repository` NULL: the whole
# namespace; else a full repository name in it. The retention parameters are NULL when not set (and always for
# immutable rules). `created_by` is an account's name, kept as text so that it outlives the account.
tag_rules = sa.Table(
    "tag_rules",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("namespace", byte_ordered_name(), nullable=False),
    sa.Column("repository", byte_ordered_name(), nullable=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("pattern", sa.String(255), nullable=False),
    sa.Column("keep_newest", sa.Integer, nullable=True),
    sa.Column("keep_days", sa.Integer, nullable=True),
    sa.Column("untagged_days", sa.Integer, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("created_by", sa.String(255), nullable=True),
    sa.CheckConstraint("kind IN ('immutable', 'retention')", name="kind_known"),
    sa.CheckConstraint(
        "(keep_newest IS NULL OR keep_newest >= 0) AND (keep_days IS NULL OR keep_days >= 0) "
        "AND (untagged_days IS NULL OR untagged_days >= 0)",
        name="parameters_not_negative",
    ),
    # A write that changes a tag reads its namespace's immutable rules (one probe); gc reads the retention ones.
    sa.Index("ix_tag_rules_namespace_kind", "namespace", "kind"),
    sa.Index("ix_tag_rules_kind", "kind"),
    sqlite_autoincrement=True,
)
