"""SQL adapter: the PasswordResetStore port over the password_resets table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from stevedore.adapters.sql.engine import Database
from stevedore.adapters.sql.tables_password_resets import password_resets
from stevedore.domain.password_resets import PasswordReset, PasswordResetUnknown


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything in the domain is aware UTC.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _reset(row: Any) -> PasswordReset:
    return PasswordReset(
        id=row.id,
        account_id=row.account_id,
        code_hash=row.code_hash,
        created_at=_utc(row.created_at),  # type: ignore[arg-type]
        expires_at=_utc(row.expires_at),  # type: ignore[arg-type]
        created_by=row.created_by,
        used_at=_utc(row.used_at),
        revoked_at=_utc(row.revoked_at),
    )


class SqlPasswordResetStore:
    def __init__(self, session: Database) -> None:
        self.session = session

    def add(self, reset: PasswordReset) -> PasswordReset:
        result = self.session.execute(
            sa.insert(password_resets)
            .values(
                account_id=reset.account_id,
                code_hash=reset.code_hash,
                created_at=reset.created_at,
                expires_at=reset.expires_at,
                created_by=reset.created_by,
            )
            .returning(password_resets.c.id)
        )
        reset.id = int(result.scalar_one())
        return reset

    def by_code_hash(self, code_hash: str) -> PasswordReset | None:
        row = self.session.execute(sa.select(password_resets).where(password_resets.c.code_hash == code_hash)).first()
        return _reset(row) if row else None

    def latest_for(self, account_id: int) -> PasswordReset | None:
        row = self.session.execute(
            sa.select(password_resets)
            .where(password_resets.c.account_id == account_id)
            .order_by(password_resets.c.id.desc())
            .limit(1)
        ).first()
        return _reset(row) if row else None

    def revoke_open(self, account_id: int, when: datetime) -> int:
        result = self.session.execute(
            sa.update(password_resets)
            .where(
                password_resets.c.account_id == account_id,
                password_resets.c.used_at.is_(None),
                password_resets.c.revoked_at.is_(None),
            )
            .values(revoked_at=when)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def mark_used(self, reset: PasswordReset, when: datetime) -> None:
        # Conditional, so two uses racing with one code cannot both win: the loser's transaction rolls back.
        result = self.session.execute(
            sa.update(password_resets)
            .where(
                password_resets.c.id == reset.id,
                password_resets.c.used_at.is_(None),
                password_resets.c.revoked_at.is_(None),
            )
            .values(used_at=when)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise PasswordResetUnknown()
        reset.used_at = when
