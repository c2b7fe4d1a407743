"""SQL adapter: the administrators' list of user accounts, a read model paged in SQL (by user name)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from stevedore.adapters.sql.accounts import _account
from stevedore.adapters.sql.engine import Database
from stevedore.adapters.sql.tables import accounts
from stevedore.domain.model import Account


@dataclass(frozen=True)
class UserPage:
    accounts: list[Account]
    next_after: str | None  # pass as `after` for the next page; None on the last page


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class SqlUserList:
    """People's accounts by user name: robot accounts (`namespace+name`, managed on namespace pages) are left out."""

    def __init__(self, session: Database) -> None:
        self.session = session

    def page(self, *, name_contains: str = "", after: str | None = None, limit: int = 50) -> UserPage:
        query = sa.select(accounts).where(~accounts.c.username.contains("+", autoescape=True))
        if name_contains:
            query = query.where(
                sa.func.lower(accounts.c.username).like(f"%{_like_escaped(name_contains.lower())}%", escape="\\")
            )
        if after:
            query = query.where(accounts.c.username > after)
        rows = self.session.execute(query.order_by(accounts.c.username).limit(limit + 1)).all()
        found = [_account(row) for row in rows[:limit]]
        return UserPage(found, found[-1].username if len(rows) > limit and found else None)
