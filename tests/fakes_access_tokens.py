"""In-memory AccessTokenStore for unit tests (kept apart from tests/fakes.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from stevedore.domain.access_tokens import AccessToken


class InMemoryAccessTokenStore:
    def __init__(self) -> None:
        self.tokens: dict[int, AccessToken] = {}
        self.touches = 0

    def add(self, token: AccessToken) -> AccessToken:
        stored = replace(token, id=len(self.tokens) + 1)
        self.tokens[stored.id or 0] = stored
        return stored

    def get(self, token_id: int) -> AccessToken | None:
        return self.tokens.get(token_id)

    def by_secret_hash(self, secret_hash: str) -> AccessToken | None:
        return next((t for t in self.tokens.values() if t.secret_hash == secret_hash), None)

    def list_for(self, account_id: int) -> list[AccessToken]:
        return sorted((t for t in self.tokens.values() if t.account_id == account_id), key=lambda t: -(t.id or 0))

    def revoke(self, token_id: int, at: datetime) -> None:
        token = self.tokens[token_id]
        if token.revoked_at is None:
            self.tokens[token_id] = replace(token, revoked_at=at)

    def touch(self, token_id: int, at: datetime) -> None:
        self.touches += 1
        self.tokens[token_id] = replace(self.tokens[token_id], last_used_at=at)
