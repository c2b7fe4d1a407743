"""Account ids are never reused; uploads are found by account.

SQLite hands a deleted row's id to the next insert unless the table says AUTOINCREMENT: a deleted account's tokens
would then name the next account. PostgreSQL's sequences never go back, so only SQLite's table is rebuilt (with
foreign-key enforcement off for the rebuild, see env.py, so nothing that references an account is touched).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _rebuild_accounts(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "accounts", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ) as batch:
        batch.alter_column("id", autoincrement=True)


def upgrade() -> None:
    _rebuild_accounts(True)
    op.create_index("ix_uploads_account_id", "uploads", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_uploads_account_id", table_name="uploads")
    _rebuild_accounts(False)
