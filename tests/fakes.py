"""In-memory fakes of the domain's ports, for unit tests that need no database, files or network."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from stevedore.domain.errors import AccountExists, TokenInvalid
from stevedore.domain.model import Account, Invite


class FixedClock:
    def __init__(self, now: datetime | None = None) -> None:
        self.current = now or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


class PlainPasswordHasher:
    """Not bcrypt: a salted-less SHA-256, so unit tests run fast. Still compares in constant time."""

    def hash(self, password: str) -> str:
        return "sha256$" + hashlib.sha256(password.encode()).hexdigest()

    def verify(self, password: str, hashed: str) -> bool:
        return hmac.compare_digest(self.hash(password), hashed)


class InMemoryTokenSigner:
    def __init__(self) -> None:
        self.issued: dict[str, dict[str, Any]] = {}

    def sign(self, claims: dict[str, Any]) -> str:
        token = f"t{len(self.issued)}"
        self.issued[token] = json.loads(json.dumps(claims))
        return token

    def verify(self, token: str) -> dict[str, Any]:
        if token not in self.issued:
            raise TokenInvalid()
        return dict(self.issued[token])


class InMemoryAccountStore:
    def __init__(self) -> None:
        self.accounts: dict[int, Account] = {}
        self.invites: dict[int, Invite] = {}

    def get(self, account_id: int) -> Account | None:
        return self.accounts.get(account_id)

    def by_username(self, username: str) -> Account | None:
        return next((a for a in self.accounts.values() if a.username == username), None)

    def add(self, account: Account) -> Account:
        if self.by_username(account.username):
            raise AccountExists()
        stored = replace(account, id=len(self.accounts) + 1)
        self.accounts[stored.id] = stored  # type: ignore[index]
        return stored

    def count(self) -> int:
        return len(self.accounts)

    def add_invite(self, invite: Invite) -> Invite:
        stored = replace(invite, id=len(self.invites) + 1)
        self.invites[stored.id] = stored  # type: ignore[index]
        return stored

    def invite_by_code_hash(self, code_hash: str) -> Invite | None:
        return next((i for i in self.invites.values() if i.code_hash == code_hash), None)

    def mark_invite_used(self, invite: Invite, account_id: int, when: datetime) -> None:
        stored = self.invites[invite.id]  # type: ignore[index]
        stored.used_at, stored.used_by = when, account_id
