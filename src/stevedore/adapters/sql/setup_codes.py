"""SQL adapter: the SetupCodeStore port over the one-row setup_codes table."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from stevedore.adapters.sql.engine import Database
from stevedore.adapters.sql.tables import setup_codes

_THE_ROW = 1


class SqlSetupCodeStore:
    def __init__(self, session: Database) -> None:
        self.session = session

    def issue_if_absent(self, seed: str, code_hash: str, now: datetime) -> tuple[str, str]:
        # The primary key makes it atomic: a second process's insert waits for the first and then fails.
        try:
            with self.session.begin_nested():
                self.session.execute(
                    sa.insert(setup_codes).values(id=_THE_ROW, seed=seed, code_hash=code_hash, created_at=now)
                )
        except IntegrityError:
            pass
        stored = self.current()
        assert stored is not None
        return stored

    def current(self) -> tuple[str, str] | None:
        row = self.session.execute(
            sa.select(setup_codes.c.seed, setup_codes.c.code_hash).where(setup_codes.c.id == _THE_ROW)
        ).first()
        return (row.seed, row.code_hash) if row else None

    def consume(self, code_hash: str) -> bool:
        result = self.session.execute(
            sa.delete(setup_codes).where(setup_codes.c.id == _THE_ROW, setup_codes.c.code_hash == code_hash)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]
