"""Accounts: ids are never reused, and a token generation; uploads are found by account.

SQLite hands a deleted row's id to the next insert unless the table says AUTOINCREMENT: a deleted account's tokens
would then name the next account. PostgreSQL's sequences never go back, so only SQLite's table is rebuilt (with
foreign-key enforcement off for the rebuild, see env.py, so nothing that references an account is touched).

`token_generation` goes up when an account's tokens must end (a disable, a new password): tokens carry a stamp of
it, so re-enabling an account does not bring its old tokens back.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _sqlite() -> bool:
    return bool(op.get_bind().dialect.name == "sqlite")


def upgrade() -> None:
    with op.batch_alter_table(
        "accounts", recreate="always" if _sqlite() else "auto", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.add_column(sa.Column("token_generation", sa.Integer, nullable=False, server_default="0"))
    op.create_index("ix_uploads_account_id", "uploads", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_uploads_account_id", table_name="uploads")
    with op.batch_alter_table(
        "accounts", recreate="always" if _sqlite() else "auto", table_kwargs={"sqlite_autoincrement": False}
    ) as batch:
        batch.drop_column("token_generation")
