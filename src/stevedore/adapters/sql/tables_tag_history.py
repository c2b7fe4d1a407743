"""SQL adapter: the tag history table, on the one shared `metadata` of tables.py (which imports this module last)."""

from __future__ import annotations

import sqlalchemy as sa

from stevedore.adapters.sql.tables import Timestamp, byte_ordered_name, metadata

# Every move of a tag: created (old NULL), moved, put back ("restore") or deleted (new NULL), when and by whom (an
# account's name, kept as text so it outlives the account). Digests, not manifest ids: the history outlives the
# manifests it names, and a restore checks that the digest is still held.
tag_history = sa.Table(
    "tag_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id", ondelete="CASCADE"), nullable=False),
    sa.Column("tag", byte_ordered_name(128), nullable=False),
    sa.Column("old_digest", sa.String(160), nullable=True),
    sa.Column("new_digest", sa.String(160), nullable=True),
    sa.Column("actor", sa.String(255), nullable=True),
    sa.Column("cause", sa.String(16), nullable=False),
    sa.Column("at", Timestamp, nullable=False),
    # A tag's history, newest first; what a repository's tags pointed at lately (gc keeps those manifests); pruning.
    sa.Index("ix_tag_history_repository_id_tag_at", "repository_id", "tag", "at"),
    sa.Index("ix_tag_history_repository_id_old_digest", "repository_id", "old_digest"),
    sa.Index("ix_tag_history_at", "at"),
    sqlite_autoincrement=True,
)
