"""Initial schema: accounts, invites, repositories, blobs and their links, manifests, tags, uploads.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def byte_ordered_name(length: int) -> sa.types.TypeEngine[str]:
    # Names paged by `last` sort by bytes on both databases (PostgreSQL's "C" collation, SQLite's BINARY).
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("password_hash", sa.String(128), nullable=False),
        sa.Column("is_admin", sa.Boolean, nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.UniqueConstraint("username", name="uq_accounts_username"),
    )
    op.create_table(
        "invites",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("created_by", sa.Integer, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.Column("used_at", Timestamp, nullable=True),
        sa.Column("used_by", sa.Integer, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_invites"),
        sa.UniqueConstraint("code_hash", name="uq_invites_code_hash"),
        sa.ForeignKeyConstraint(
            ["created_by"], ["accounts.id"], name="fk_invites_created_by_accounts", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(["used_by"], ["accounts.id"], name="fk_invites_used_by_accounts", ondelete="SET NULL"),
    )
    op.create_table(
        "repositories",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", byte_ordered_name(255), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_repositories"),
        sa.UniqueConstraint("name", name="uq_repositories_name"),
    )
    op.create_table(
        "blobs",
        sa.Column("digest", sa.String(160), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("digest", name="pk_blobs"),
    )
    op.create_table(
        "repository_blobs",
        sa.Column("repository_id", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(160), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("repository_id", "digest", name="pk_repository_blobs"),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name="fk_repository_blobs_repository_id_repositories",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["digest"], ["blobs.digest"], name="fk_repository_blobs_digest_blobs"),
    )
    op.create_index("ix_repository_blobs_digest", "repository_blobs", ["digest"])
    op.create_table(
        "manifests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("repository_id", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(160), nullable=False),
        sa.Column("media_type", sa.String(255), nullable=False),
        sa.Column("artifact_type", sa.String(255), nullable=True),
        sa.Column("subject_digest", sa.String(160), nullable=True),
        sa.Column("annotations", sa.Text, nullable=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_manifests"),
        sa.UniqueConstraint("repository_id", "digest", name="uq_manifests_repository_id_digest"),
        sa.ForeignKeyConstraint(
            ["repository_id"], ["repositories.id"], name="fk_manifests_repository_id_repositories", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_manifests_repository_id_subject_digest", "manifests", ["repository_id", "subject_digest"])
    op.create_table(
        "manifest_references",
        sa.Column("manifest_id", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(160), nullable=False),
        sa.PrimaryKeyConstraint("manifest_id", "kind", "digest", name="pk_manifest_references"),
        sa.ForeignKeyConstraint(
            ["manifest_id"], ["manifests.id"], name="fk_manifest_references_manifest_id_manifests", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_manifest_references_digest", "manifest_references", ["digest"])
    op.create_table(
        "tags",
        sa.Column("repository_id", sa.Integer, nullable=False),
        sa.Column("name", byte_ordered_name(128), nullable=False),
        sa.Column("manifest_id", sa.Integer, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("repository_id", "name", name="pk_tags"),
        sa.ForeignKeyConstraint(
            ["repository_id"], ["repositories.id"], name="fk_tags_repository_id_repositories", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["manifest_id"], ["manifests.id"], name="fk_tags_manifest_id_manifests", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_tags_manifest_id", "tags", ["manifest_id"])
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("repository_id", sa.Integer, nullable=False),
        sa.Column("account_id", sa.Integer, nullable=True),
        sa.Column("digest_algorithm", sa.String(16), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_uploads"),
        sa.ForeignKeyConstraint(
            ["repository_id"], ["repositories.id"], name="fk_uploads_repository_id_repositories", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_uploads_account_id_accounts", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    op.drop_table("uploads")
    op.drop_index("ix_tags_manifest_id", table_name="tags")
    op.drop_table("tags")
    op.drop_index("ix_manifest_references_digest", table_name="manifest_references")
    op.drop_table("manifest_references")
    op.drop_index("ix_manifests_repository_id_subject_digest", table_name="manifests")
    op.drop_table("manifests")
    op.drop_index("ix_repository_blobs_digest", table_name="repository_blobs")
    op.drop_table("repository_blobs")
    op.drop_table("blobs")
    op.drop_table("repositories")
    op.drop_table("invites")
    op.drop_table("accounts")
