"""Invites: revocable, and usernames and e-mails unique ignoring case.

Invites get `revoked_at` and `revoked_by`. Unique indexes on lower(username) and lower(email) (functional indexes,
which SQLite and PostgreSQL both have) make names and addresses unique ignoring case for every writer. Names are
lowercase by grammar already; e-mail addresses may differ only in case in an existing database: then the upgrade
stops and names the accounts, so an administrator decides which keeps the address (nothing is changed silently).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _refuse_duplicates(column: str) -> None:
    rows = (
        op.get_bind()
        .execute(
            sa.text(
                f"SELECT lower({column}) AS value, username FROM accounts WHERE lower({column}) IN "
                f"(SELECT lower({column}) FROM accounts WHERE {column} IS NOT NULL "
                f"GROUP BY lower({column}) HAVING count(*) > 1) ORDER BY 1, 2"
            )
        )
        .all()
    )
    if rows:
        shared: dict[str, list[str]] = {}
        for value, username in rows:
            shared.setdefault(value, []).append(username)
        listing = "; ".join(f"{value!r}: {', '.join(names)}" for value, names in shared.items())
        raise RuntimeError(
            f"accounts share a {column} that differs only in case ({listing}): give all but one of each another "
            f"{column} (or none: UPDATE accounts SET {column} = NULL WHERE username = '...') and upgrade again"
        )


def upgrade() -> None:
    _refuse_duplicates("username")
    _refuse_duplicates("email")
    with op.batch_alter_table("invites") as batch:
        batch.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column(
                "revoked_by",
                sa.Integer,
                sa.ForeignKey("accounts.id", name="fk_invites_revoked_by_accounts", ondelete="SET NULL"),
                nullable=True,
            )
        )
    op.create_index("uq_accounts_username_lower", "accounts", [sa.text("lower(username)")], unique=True)
    op.create_index("uq_accounts_email_lower", "accounts", [sa.text("lower(email)")], unique=True)


def downgrade() -> None:
    op.drop_index("uq_accounts_email_lower", table_name="accounts")
    op.drop_index("uq_accounts_username_lower", table_name="accounts")
    with op.batch_alter_table("invites") as batch:
        batch.drop_constraint("fk_invites_revoked_by_accounts", type_="foreignkey")
        batch.drop_column("revoked_by")
        batch.drop_column("revoked_at")
