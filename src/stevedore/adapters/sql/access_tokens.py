"""SQL adapter: the AccessTokenStore port over the access_tokens table."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from stevedore.adapters.sql.engine import Database
from stevedore.adapters.sql.tables_access_tokens import access_tokens
from stevedore.domain.access_tokens import AccessToken, TokenScope

log = logging.getLogger(__name__)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _token(row: Any) -> AccessToken:
    created_at = _utc(row.created_at)
    assert created_at is not None
    return AccessToken(
        id=row.id,
        account_id=row.account_id,
        name=row.name,
        scope=TokenScope(row.scope),
        namespaces=tuple(row.namespaces.split()),
        secret_hash=row.secret_hash,
        created_at=created_at,
        expires_at=_utc(row.expires_at),
        last_used_at=_utc(row.last_used_at),
        revoked_at=_utc(row.revoked_at),
    )


class SqlAccessTokenStore:
    """With `touch_sessions`, `touch` writes in a short transaction of its own (a token used by a GET, or by a
    request that fails, is still noted as used), and a failure to note it never fails the request."""

    def __init__(self, session: Database, touch_sessions: Callable[[], Session] | None = None) -> None:
        self.session = session
        self.touch_sessions = touch_sessions

    def add(self, token: AccessToken) -> AccessToken:
        token_id = self.session.execute(
            sa.insert(access_tokens)
            .values(
                account_id=token.account_id,
                name=token.name,
                scope=token.scope.value,
                namespaces=" ".join(token.namespaces),
                secret_hash=token.secret_hash,
                created_at=token.created_at,
                expires_at=token.expires_at,
                last_used_at=token.last_used_at,
                revoked_at=token.revoked_at,
            )
            .returning(access_tokens.c.id)
        ).scalar_one()
        return replace(token, id=int(token_id))

    def get(self, token_id: int) -> AccessToken | None:
        row = self.session.execute(sa.select(access_tokens).where(access_tokens.c.id == token_id)).first()
        return None if row is None else _token(row)

    def by_secret_hash(self, secret_hash: str) -> AccessToken | None:
        row = self.session.execute(sa.select(access_tokens).where(access_tokens.c.secret_hash == secret_hash)).first()
        return None if row is None else _token(row)

    def list_for(self, account_id: int) -> list[AccessToken]:
        rows = self.session.execute(
            sa.select(access_tokens).where(access_tokens.c.account_id == account_id).order_by(access_tokens.c.id.desc())
        )
        return [_token(row) for row in rows]

    def revoke(self, token_id: int, at: datetime) -> None:
        self.session.execute(
            sa.update(access_tokens)
            .where(access_tokens.c.id == token_id, access_tokens.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )

    def touch(self, token_id: int, at: datetime) -> None:
        statement = sa.update(access_tokens).where(access_tokens.c.id == token_id).values(last_used_at=at)
        if self.touch_sessions is None:
            self.session.execute(statement)
            return
        session = self.touch_sessions()
        try:
            session.execute(statement)
            session.commit()
        except SQLAlchemyError:
            session.rollback()
            log.warning("could not note the last use of access token %s", token_id, exc_info=True)
        finally:
            session.close()
