"""SQL adapter: the LoginFailureStore port over the login_failures table, atomic on SQLite and PostgreSQL alike.

Holding keys (a reservation reads and counts in one transaction, with no other reservation of the same keys in
between): on PostgreSQL a transaction-scoped advisory lock per key, taken in a fixed order (no deadlock), which works
for keys with no row yet, unlike SELECT ... FOR UPDATE; on SQLite the caller's transaction is a writer's
(`write_sessions`, BEGIN IMMEDIATE), which holds the whole database until it ends."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from stevedore.adapters.sql.engine import Database, dialect_name
from stevedore.adapters.sql.tables_login_backoff import login_failures
from stevedore.domain.login_backoff import BackoffKey, Failures, KeyKind

t = login_failures


class SqlLoginFailureStore:
    def __init__(self, session: Database) -> None:
        self.session = session

    def hold(self, keys: Sequence[BackoffKey]) -> None:
        if dialect_name(self.session) != "postgresql":
            return  # SQLite: the writer's transaction holds the database lock already
        for lock_id in sorted({_lock_id(key) for key in keys}):
            self.session.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_id)))

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
        insert = postgresql.insert if dialect_name(self.session) == "postgresql" else sqlite.insert
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

    def record_known(self, key: BackoffKey, at: datetime) -> None:
        insert = postgresql.insert if dialect_name(self.session) == "postgresql" else sqlite.insert
        self.session.execute(
            insert(t)
            .values(kind=key.kind.value, key=key.value, failures=0, last_failure_at=at)
            .on_conflict_do_update(index_elements=[t.c.kind, t.c.key], set_={"last_failure_at": at})
        )

    def reset(self, key: BackoffKey) -> None:
        self.session.execute(sa.delete(t).where(t.c.kind == key.kind.value, t.c.key == key.value))

    def release(self, key: BackoffKey) -> None:
        this = sa.and_(t.c.kind == key.kind.value, t.c.key == key.value)
        self.session.execute(sa.update(t).where(this, t.c.failures > 0).values(failures=t.c.failures - 1))
        self.session.execute(sa.delete(t).where(this, t.c.failures <= 0))

    def forget(self, kind: KeyKind, *, before: datetime) -> None:
        stale = sa.and_(t.c.kind == kind.value, t.c.last_failure_at < before)
        if dialect_name(self.session) != "postgresql":
            self.session.execute(sa.delete(t).where(stale))  # SQLite: this transaction holds the database
            return
        # Other keys' rows another reservation holds (it is updating them in its own transaction) are skipped, left
        # for a later cleanup: waiting for them while holding this reservation's own rows could deadlock the two.
        unlocked = sa.select(t.c.kind, t.c.key).where(stale).with_for_update(skip_locked=True)
        self.session.execute(sa.delete(t).where(sa.tuple_(t.c.kind, t.c.key).in_(unlocked)))


def _lock_id(key: BackoffKey) -> int:
    """A signed 64-bit advisory lock id for the key (two keys sharing one only wait for each other)."""
    digest = hashlib.sha256(f"login_failures\0{key.kind.value}\0{key.value}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything in the domain is aware UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
