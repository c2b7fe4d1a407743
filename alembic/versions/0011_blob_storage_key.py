"""Where a blob's bytes are: `blobs.storage_key`, the object key the blob store chose (S3 keeps an upload's
completed object at the key its multipart upload started with, since the digest is not known before the end);
NULL for blobs whose place the store derives from the digest (the folder store, and every blob before this).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("blobs") as batch:
        batch.add_column(sa.Column("storage_key", sa.String(1024), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("blobs") as batch:
        batch.drop_column("storage_key")
