"""SQL adapter: the RobotStore port — robot accounts (`namespace+name`) with their secrets' tokens, in one query."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from stevedore.adapters.sql.access_tokens import _token
from stevedore.adapters.sql.accounts import _account
from stevedore.adapters.sql.engine import Database
from stevedore.adapters.sql.tables import accounts
from stevedore.adapters.sql.tables_access_tokens import access_tokens
from stevedore.domain.access_tokens import AccessToken
from stevedore.domain.model import ROBOT_SEPARATOR, Account


def _credential(row: Any) -> AccessToken | None:
    if row.token_id is None:
        return None
    return _token(_TokenRow(row))


class _TokenRow:
    """The token's columns of a joined row, under the names `_token` reads."""

    def __init__(self, row: Any) -> None:
        self.id = row.token_id
        self.account_id = row.id
        self.name = row.token_name
        self.scope = row.token_scope
        self.namespaces = row.token_namespaces
        self.secret_hash = row.token_secret_hash
        self.created_at = row.token_created_at
        self.expires_at = row.token_expires_at
        self.last_used_at = row.token_last_used_at
        self.revoked_at = row.token_revoked_at


class SqlRobotStore:
    def __init__(self, session: Database) -> None:
        self.session = session

    def robots_of(self, namespace: str) -> list[tuple[Account, AccessToken | None]]:
        prefix = namespace + ROBOT_SEPARATOR
        live = access_tokens.c.revoked_at.is_(None)
        rows = self.session.execute(
            sa.select(
                accounts,
                access_tokens.c.id.label("token_id"),
                access_tokens.c.name.label("token_name"),
                access_tokens.c.scope.label("token_scope"),
                access_tokens.c.namespaces.label("token_namespaces"),
                access_tokens.c.secret_hash.label("token_secret_hash"),
                access_tokens.c.created_at.label("token_created_at"),
                access_tokens.c.expires_at.label("token_expires_at"),
                access_tokens.c.last_used_at.label("token_last_used_at"),
                access_tokens.c.revoked_at.label("token_revoked_at"),
            )
            .outerjoin(access_tokens, sa.and_(access_tokens.c.account_id == accounts.c.id, live))
            # A prefix compare, not LIKE: `_` in a namespace is a plain character.
            .where(sa.func.substr(accounts.c.username, 1, len(prefix)) == prefix)
            .order_by(accounts.c.username, access_tokens.c.id.desc())
        )
        found: dict[str, tuple[Account, AccessToken | None]] = {}
        for row in rows:
            if row.username not in found:  # the newest live token comes first
                found[row.username] = (_account(row), _credential(row))
        return list(found.values())
