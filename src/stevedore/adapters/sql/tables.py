"""SQL adapter: the schema, as SQLAlchemy Core tables. Alembic migrations build it; this module describes it."""

from __future__ import annotations

import sqlalchemy as sa

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def byte_ordered_name(length: int = 255) -> sa.types.TypeEngine[str]:
    """A string that sorts by bytes on every database: SQLite's default BINARY collation, PostgreSQL's "C"."""
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


Timestamp = sa.DateTime(timezone=True)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("password_hash", sa.String(128), nullable=False),
    sa.Column("is_admin", sa.Boolean, nullable=False, default=False),
    sa.Column("is_active", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", Timestamp, nullable=False),
    # Goes up whenever the account's tokens must end (disable, new password); tokens carry a stamp of it.
    sa.Column("token_generation", sa.Integer, nullable=False, server_default="0", default=0),
    # SQLite would otherwise give a deleted account's id to the next one (and its tokens with it).
    sqlite_autoincrement=True,
)
# Names and e-mail addresses are unique ignoring case (names are lowercase by grammar; this holds for any writer).
sa.Index("uq_accounts_username_lower", sa.func.lower(accounts.c.username), unique=True)
sa.Index("uq_accounts_email_lower", sa.func.lower(accounts.c.email), unique=True)

invites = sa.Table(
    "invites",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("code_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("created_by", sa.Integer, sa.ForeignKey("accounts.id", ondelete="SET NULL"), nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.Column("used_at", Timestamp, nullable=True),
    sa.Column("used_by", sa.Integer, sa.ForeignKey("accounts.id", ondelete="SET NULL"), nullable=True),
    sa.Column("revoked_at", Timestamp, nullable=True),
    sa.Column("revoked_by", sa.Integer, sa.ForeignKey("accounts.id", ondelete="SET NULL"), nullable=True),
)

repositories = sa.Table(
    "repositories",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", byte_ordered_name(), nullable=False, unique=True),
    sa.Column("created_at", Timestamp, nullable=False),
)

blobs = sa.Table(
    "blobs",
    metadata,
    sa.Column("digest", sa.String(160), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    # Where the blob store put the bytes when it chose the place (S3: the upload's object key, relative to the
    # prefix); NULL: the store derives it from the digest (the folder store).
    sa.Column("storage_key", sa.String(1024), nullable=True),
)

repository_blobs = sa.Table(
    "repository_blobs",
    metadata,
    sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("digest", sa.String(160), sa.ForeignKey("blobs.digest"), primary_key=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index("ix_repository_blobs_digest", "digest"),
)

manifests = sa.Table(
    "manifests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id", ondelete="CASCADE"), nullable=False),
    sa.Column("digest", sa.String(160), nullable=False),
    sa.Column("media_type", sa.String(255), nullable=False),
    sa.Column("artifact_type", sa.String(255), nullable=True),
    sa.Column("subject_digest", sa.String(160), nullable=True),
    sa.Column("annotations", sa.Text, nullable=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.UniqueConstraint("repository_id", "digest", name="uq_manifests_repository_id_digest"),
    sa.Index("ix_manifests_repository_id_subject_digest", "repository_id", "subject_digest"),
)

# What a manifest points at: blobs (config, layers) and child manifests (an index's entries).
manifest_references = sa.Table(
    "manifest_references",
    metadata,
    sa.Column("manifest_id", sa.Integer, sa.ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("digest", sa.String(160), primary_key=True),
    sa.Index("ix_manifest_references_digest", "digest"),
)

tags = sa.Table(
    "tags",
    metadata,
    sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", byte_ordered_name(128), primary_key=True),
    sa.Column("manifest_id", sa.Integer, sa.ForeignKey("manifests.id", ondelete="CASCADE"), nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    # Who pushed the tag last: an account's name (robots' `namespace+name` too), not a key, so it outlives the
    # account. NULL for tags pushed before it was recorded, or set without a caller.
    sa.Column("pushed_by", sa.String(255), nullable=True),
    sa.Index("ix_tags_manifest_id", "manifest_id"),
    # A repository's tags by date (keyset pages), and the latest pushes of all repositories (the front page).
    sa.Index("ix_tags_repository_id_updated_at", "repository_id", "updated_at", "name"),
    sa.Index("ix_tags_updated_at", "updated_at"),
)

uploads = sa.Table(
    "uploads",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id", ondelete="CASCADE"), nullable=False),
    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=True),
    sa.Column("digest_algorithm", sa.String(16), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index("ix_uploads_account_id", "account_id"),
)

# Tombstones of finished and cancelled upload sessions, kept while their tickets are valid (domain/upload_tickets.py):
# a ticket works once. No foreign key: a session closed before its first byte never had a row.
closed_uploads = sa.Table(
    "closed_uploads",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("closed_at", Timestamp, nullable=False),
    sa.Index("ix_closed_uploads_closed_at", "closed_at"),
)

# A page session: a signed cookie carries a random id, the state lives here (keyed by the id's SHA-256) so every
# process and node sees it.
web_sessions = sa.Table(
    "web_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=True),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("last_seen_at", Timestamp, nullable=False),
    sa.Index("ix_web_sessions_account_id", "account_id"),
    sa.Index("ix_web_sessions_last_seen_at", "last_seen_at"),
    sa.Index("ix_web_sessions_created_at", "created_at"),
)

# The one-time code that lets whoever holds it create the first administrator of an empty installation: one row at
# most (id 1); the code is derived from `seed` with the secret key and stored only as a hash.
setup_codes = sa.Table(
    "setup_codes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seed", sa.String(64), nullable=False),
    sa.Column("code_hash", sa.String(64), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
)

# A claimed or created namespace (the first path component of repository names). An account's own namespace needs
# no row until someone else is given a right on it.
namespaces = sa.Table(
    "namespaces",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", byte_ordered_name(), nullable=False, unique=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("created_by", sa.Integer, sa.ForeignKey("accounts.id", ondelete="SET NULL"), nullable=True),
)

namespace_members = sa.Table(
    "namespace_members",
    metadata,
    sa.Column("namespace_id", sa.Integer, sa.ForeignKey("namespaces.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("right", sa.String(16), nullable=False),
    sa.Index("ix_namespace_members_account_id", "account_id"),
)

# Tables kept in their own modules, registered on `metadata` when they are imported: import them last.
from stevedore.adapters.sql import (  # noqa: E402, F401
    tables_access_tokens,
    tables_audit,
    tables_jobs,
    tables_login_backoff,
    tables_password_resets,
    tables_quotas,
    tables_rules,
    tables_tag_history,
    tables_webhooks,
)
