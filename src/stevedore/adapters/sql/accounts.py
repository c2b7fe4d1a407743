"""SQL adapter: the AccountStore port over the accounts and invites tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stevedore.adapters.sql.tables import accounts, invites
from stevedore.domain.errors import AccountExists
from stevedore.domain.model import Account, Invite


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything in the domain is aware UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _account(row: Any) -> Account:
    return Account(
        id=row.id,
        username=row.username,
        email=row.email,
        password_hash=row.password_hash,
        is_admin=row.is_admin,
        is_active=row.is_active,
        created_at=_utc(row.created_at),
        token_generation=row.token_generation,
    )


def _invite(row: Any) -> Invite:
    return Invite(
        id=row.id,
        code_hash=row.code_hash,
        email=row.email,
        created_by=row.created_by,
        created_at=_utc(row.created_at),  # type: ignore[arg-type]
        expires_at=_utc(row.expires_at),  # type: ignore[arg-type]
        used_at=_utc(row.used_at),
        used_by=row.used_by,
    )


class SqlAccountStore:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, account_id: int) -> Account | None:
        row = self.session.execute(sa.select(accounts).where(accounts.c.id == account_id)).first()
        return _account(row) if row else None

    def by_username(self, username: str) -> Account | None:
        row = self.session.execute(sa.select(accounts).where(accounts.c.username == username)).first()
        return _account(row) if row else None

    def add(self, account: Account) -> Account:
        try:
            with self.session.begin_nested():
                result = self.session.execute(
                    sa.insert(accounts)
                    .values(
                        username=account.username,
                        email=account.email,
                        password_hash=account.password_hash,
                        is_admin=account.is_admin,
                        is_active=account.is_active,
                        created_at=account.created_at,
                    )
                    .returning(accounts.c.id)
                )
                account.id = int(result.scalar_one())
        except IntegrityError as exc:
            raise AccountExists(f"the user {account.username!r} already exists") from exc
        return account

    def update(self, account: Account) -> None:
        self.session.execute(
            sa.update(accounts)
            .where(accounts.c.id == account.id)
            .values(
                email=account.email,
                password_hash=account.password_hash,
                is_admin=account.is_admin,
                is_active=account.is_active,
                token_generation=account.token_generation,
            )
        )

    def delete(self, account: Account) -> None:
        self.session.execute(sa.delete(accounts).where(accounts.c.id == account.id))

    def count(self) -> int:
        return int(self.session.execute(sa.select(sa.func.count()).select_from(accounts)).scalar_one())

    def add_invite(self, invite: Invite) -> Invite:
        result = self.session.execute(
            sa.insert(invites)
            .values(
                code_hash=invite.code_hash,
                email=invite.email,
                created_by=invite.created_by,
                created_at=invite.created_at,
                expires_at=invite.expires_at,
            )
            .returning(invites.c.id)
        )
        invite.id = int(result.scalar_one())
        return invite

    def invite_by_code_hash(self, code_hash: str) -> Invite | None:
        row = self.session.execute(sa.select(invites).where(invites.c.code_hash == code_hash)).first()
        return _invite(row) if row else None

    def mark_invite_used(self, invite: Invite, account_id: int, when: datetime) -> None:
        self.session.execute(
            sa.update(invites).where(invites.c.id == invite.id).values(used_at=when, used_by=account_id)
        )
        invite.used_at, invite.used_by = when, account_id
