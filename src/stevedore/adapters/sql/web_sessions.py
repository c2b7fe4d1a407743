"""SQL adapter: the server-side state of page sessions, keyed by a hash of the id the cookie carries."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from stevedore.adapters.sql.engine import Database
from stevedore.adapters.sql.tables import web_sessions


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value  # SQLite hands back naive datetimes


@dataclass(frozen=True)
class StoredWebSession:
    id_hash: str
    account_id: int | None
    data: dict[str, Any]
    created_at: datetime
    last_seen_at: datetime


class SqlWebSessionStore:
    def __init__(self, session: Database) -> None:
        self.session = session

    def get(self, id_hash: str) -> StoredWebSession | None:
        row = self.session.execute(sa.select(web_sessions).where(web_sessions.c.id_hash == id_hash)).first()
        if row is None:
            return None
        return StoredWebSession(
            id_hash=row.id_hash,
            account_id=row.account_id,
            data=json.loads(row.data),
            created_at=_utc(row.created_at),
            last_seen_at=_utc(row.last_seen_at),
        )

    def add(self, id_hash: str, account_id: int | None, data: dict[str, Any], now: datetime) -> None:
        self.session.execute(
            sa.insert(web_sessions).values(
                id_hash=id_hash, account_id=account_id, data=json.dumps(data), created_at=now, last_seen_at=now
            )
        )

    def update(self, id_hash: str, account_id: int | None, data: dict[str, Any], now: datetime) -> None:
        self.session.execute(
            sa.update(web_sessions)
            .where(web_sessions.c.id_hash == id_hash)
            .values(account_id=account_id, data=json.dumps(data), last_seen_at=now)
        )

    def touch(self, id_hash: str, now: datetime) -> None:
        self.session.execute(sa.update(web_sessions).where(web_sessions.c.id_hash == id_hash).values(last_seen_at=now))

    def delete(self, id_hash: str) -> None:
        self.session.execute(sa.delete(web_sessions).where(web_sessions.c.id_hash == id_hash))

    def delete_for_account(self, account_id: int) -> None:
        self.session.execute(sa.delete(web_sessions).where(web_sessions.c.account_id == account_id))

    def delete_expired(self, *, seen_before: datetime, created_before: datetime) -> None:
        self.session.execute(
            sa.delete(web_sessions).where(
                sa.or_(web_sessions.c.last_seen_at < seen_before, web_sessions.c.created_at < created_before)
            )
        )
