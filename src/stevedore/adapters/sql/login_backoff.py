"""SQL adapter: the LoginFailureStore port over the login_failures table, atomic on SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from stevedore.adapters.sql.tables_login_backoff import login_failures
from stevedore.domain.login_backoff import BackoffKey, Failures, KeyKind

t = login_failures


class SqlLoginFailureStore:
    def __init__(self, session: Session) -> None:
        self.session = session

    def read(self, keys: Sequence[BackoffKey]) -> dict[BackoffKey, Failures]:
        if not keys:
            return {}
        wanted = {(key.kind.value, key.value): key for key in keys}
        query = sa.select(t.c.kind, t.c.key, t.c.failures, t.c.last_failure_at).where(
            sa.or_(*(sa.and_(t.c.kind == kind, t.c.key == value) for kind, value in wanted))
        )
        return {
            wanted[(row.kind, row.key)]: Failures(row.failures, _aware(row.last_failure_at))
            for row in self.session.execute(query)
        }

    def record_failure(self, key: BackoffKey, at: datetime, *, forget_before: datetime) -> Failures:
        # One statement: INSERT .. ON CONFLICT DO UPDATE is atomic on both databases, so failures counted at once by
        # several processes or nodes all count. In the SET clause the columns are the row already there.
        insert = postgresql.insert if self.session.get_bind().dialect.name == "postgresql" else sqlite.insert
        statement = (
            insert(t)
            .values(kind=key.kind.value, key=key.value, failures=1, last_failure_at=at)
            .on_conflict_do_update(
                index_elements=[t.c.kind, t.c.key],
                set_={
                    "failures": sa.case((t.c.last_failure_at < forget_before, 1), else_=t.c.failures + 1),
                    "last_failure_at": at,
                },
            )
            .returning(t.c.failures, t.c.last_failure_at)
        )
        row = self.session.execute(statement).one()
        return Failures(row.failures, _aware(row.last_failure_at))

    def reset(self, key: BackoffKey) -> None:
        self.session.execute(sa.delete(t).where(t.c.kind == key.kind.value, t.c.key == key.value))

    def forget(self, kind: KeyKind, *, before: datetime) -> None:
        self.session.execute(sa.delete(t).where(t.c.kind == kind.value, t.c.last_failure_at < before))


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything in the domain is aware UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
