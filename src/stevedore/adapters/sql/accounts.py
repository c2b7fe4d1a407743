"""SQL adapter: the AccountStore port over the accounts and invites tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from stevedore.adapters.sql.engine import Database
from stevedore.adapters.sql.tables import accounts, invites
from stevedore.domain.errors import AccountExists, InviteUnknown
from stevedore.domain.model import ROBOT_SEPARATOR, Account, Invite, InviteRecord


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
        revoked_at=_utc(row.revoked_at),
        revoked_by=row.revoked_by,
    )


# Every authenticated request reads its account: built once, not per request.
_ACCOUNT_BY_ID = sa.select(accounts).where(accounts.c.id == sa.bindparam("account_id"))


class SqlAccountStore:
    def __init__(self, session: Database) -> None:
        self.session = session

    def get(self, account_id: int) -> Account | None:
        row = self.session.execute(_ACCOUNT_BY_ID, {"account_id": account_id}).first()
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
            # A writer that got there first (the domain checks before it adds): the name or the e-mail is taken.
            raise AccountExists(f"the user {account.username!r} or its e-mail address exists already") from exc
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

    def disable_robots_of(self, namespace: str) -> int:
        prefix = namespace + ROBOT_SEPARATOR
        disabled = self.session.execute(
            sa.update(accounts)
            .where(sa.func.substr(accounts.c.username, 1, len(prefix)) == prefix, accounts.c.is_active.is_(True))
            .values(is_active=False, token_generation=accounts.c.token_generation + 1)
        )
        return int(disabled.rowcount or 0)  # type: ignore[attr-defined]

    def delete_robots_of(self, namespace: str) -> int:
        prefix = namespace + ROBOT_SEPARATOR  # a prefix compare, not LIKE: `_` in a name is a plain character
        deleted = self.session.execute(
            sa.delete(accounts).where(sa.func.substr(accounts.c.username, 1, len(prefix)) == prefix)
        )
        return int(deleted.rowcount or 0)  # type: ignore[attr-defined]

    def count(self) -> int:
        return int(self.session.execute(sa.select(sa.func.count()).select_from(accounts)).scalar_one())

    def count_active_admins(self) -> int:
        # FOR UPDATE (PostgreSQL): a second transaction removing an administrator waits here for the first, then
        # counts without the one it removed. SQLite has no row locks; its writers hold the database's lock already.
        query = sa.select(accounts.c.id).where(accounts.c.is_admin.is_(True), accounts.c.is_active.is_(True))
        return len(self.session.execute(query.with_for_update()).all())

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

    def count_invites_by(self, account_id: int, since: datetime) -> int:
        query = sa.select(sa.func.count()).where(invites.c.created_by == account_id, invites.c.created_at >= since)
        return int(self.session.execute(query).scalar_one())

    def invite_by_code_hash(self, code_hash: str) -> Invite | None:
        row = self.session.execute(sa.select(invites).where(invites.c.code_hash == code_hash)).first()
        return _invite(row) if row else None

    def mark_invite_used(self, invite: Invite, account_id: int, when: datetime) -> None:
        # Conditional, so two sign-ups racing with one code cannot both win: the loser's transaction rolls back.
        result = self.session.execute(
            sa.update(invites)
            .where(invites.c.id == invite.id, invites.c.used_at.is_(None), invites.c.revoked_at.is_(None))
            .values(used_at=when, used_by=account_id)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise InviteUnknown()
        invite.used_at, invite.used_by = when, account_id

    def by_email(self, email: str) -> Account | None:
        row = self.session.execute(
            sa.select(accounts).where(sa.func.lower(accounts.c.email) == email.lower())  # uq_accounts_email_lower
        ).first()
        return _account(row) if row else None

    def invite(self, invite_id: int) -> Invite | None:
        row = self.session.execute(sa.select(invites).where(invites.c.id == invite_id)).first()
        return _invite(row) if row else None

    def mark_invite_revoked(self, invite: Invite, account_id: int | None, when: datetime) -> None:
        # Only an unused invite: a sign-up that commits meanwhile keeps its invite used, not revoked.
        self.session.execute(
            sa.update(invites)
            .where(invites.c.id == invite.id, invites.c.used_at.is_(None), invites.c.revoked_at.is_(None))
            .values(revoked_at=when, revoked_by=account_id)
        )
        invite.revoked_at, invite.revoked_by = when, account_id

    def invite_records(
        self, *, limit: int, before_id: int | None = None, created_by: int | None = None
    ) -> list[InviteRecord]:
        inviter, user, revoker = accounts.alias("inviter"), accounts.alias("user"), accounts.alias("revoker")
        query = (
            sa.select(
                invites,
                inviter.c.username.label("invited_by_name"),
                user.c.username.label("used_by_name"),
                revoker.c.username.label("revoked_by_name"),
            )
            .select_from(
                invites.outerjoin(inviter, inviter.c.id == invites.c.created_by)
                .outerjoin(user, user.c.id == invites.c.used_by)
                .outerjoin(revoker, revoker.c.id == invites.c.revoked_by)
            )
            .order_by(invites.c.id.desc())
            .limit(limit)
        )
        if before_id is not None:
            query = query.where(invites.c.id < before_id)
        if created_by is not None:
            query = query.where(invites.c.created_by == created_by)
        return [
            InviteRecord(_invite(row), row.invited_by_name, row.used_by_name, row.revoked_by_name)
            for row in self.session.execute(query)
        ]
