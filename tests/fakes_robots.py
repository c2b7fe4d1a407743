"""In-memory RobotStore for unit tests (kept apart from tests/fakes.py): robots are accounts named `namespace+name`."""

from __future__ import annotations

from stevedore.domain.access_tokens import AccessToken
from stevedore.domain.model import ROBOT_SEPARATOR, Account
from tests.fakes import InMemoryAccountStore
from tests.fakes_access_tokens import InMemoryAccessTokenStore


class InMemoryRobotStore:
    def __init__(self, accounts: InMemoryAccountStore, tokens: InMemoryAccessTokenStore) -> None:
        self.accounts = accounts
        self.tokens = tokens

    def robots_of(self, namespace: str) -> list[tuple[Account, AccessToken | None]]:
        prefix = namespace + ROBOT_SEPARATOR
        found = []
        for account in sorted(self.accounts.accounts.values(), key=lambda a: a.username):
            if account.username.startswith(prefix) and account.id is not None:
                live = [t for t in self.tokens.list_for(account.id) if t.revoked_at is None]
                found.append((account, live[0] if live else None))
        return found
