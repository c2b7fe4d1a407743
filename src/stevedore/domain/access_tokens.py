"""Domain layer: personal access tokens — named secrets that stand in for a person's password (in `docker login`,
Basic auth and the token endpoint) with a scope, optionally limited to some namespaces, optionally expiring.

The secret (`stv_` + 32 random url-safe bytes) is shown once and stored only as its SHA-256: a random secret needs no
slow hash, so a token costs no bcrypt run. A token never grants more than its account may do at the moment it is used
(the caller intersects `AccessToken.allows` with `Access.may`), and the account is checked on every use, so a disabled
account's tokens stop at once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from stevedore.domain.errors import InvalidInput, NotFound
from stevedore.domain.model import Account, RepositoryName, Scope
from stevedore.domain.namespaces import namespace_of
from stevedore.domain.ports import Clock

TOKEN_PREFIX = "stv_"
SECRET_BYTES = 32
MAX_NAME_LENGTH = 100
MAX_NAMESPACES = 20
MAX_EXPIRY_DAYS = 3650
# How stale `last_used_at` may get before a use writes it again: one write a minute per token, not one a request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# One path component of the repository-name grammar, as user names and namespaces are.
_NAMESPACE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")


class AccessTokenUnknown(NotFound):
    """No such token among the caller's own (another account's token is unknown too, never 'forbidden')."""


class TokenScope(StrEnum):
    """What a token may do, each including the ones before it."""

    PULL = "pull"
    PUSH = "push"
    DELETE = "delete"

    @property
    def actions(self) -> frozenset[str]:
        return {
            TokenScope.PULL: frozenset({"pull"}),
            TokenScope.PUSH: frozenset({"pull", "push"}),
            TokenScope.DELETE: frozenset({"pull", "push", "delete"}),
        }[self]

    @property
    def label(self) -> str:
        return {TokenScope.PULL: "pull", TokenScope.PUSH: "pull, push", TokenScope.DELETE: "pull, push, delete"}[self]


@dataclass(frozen=True)
class AccessToken:
    id: int | None
    account_id: int
    name: str
    scope: TokenScope
    # Empty: every namespace the account may use.
    namespaces: tuple[str, ...]
    secret_hash: str
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    def state(self, now: datetime) -> str:
        """`revoked`, `expired` or `active`."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def is_usable(self, now: datetime) -> bool:
        return self.state(now) == "active"

    def allows(self, action: str, repository: str) -> bool:
        """Does the token itself (whatever the account may) allow `action` on `repository`?"""
        if action not in self.scope.actions:
            return False
        if not self.namespaces:
            return True
        try:
            name = RepositoryName.parse(repository)
        except InvalidInput:
            return False
        return namespace_of(name) in self.namespaces

    def limit(self, granted: Iterable[Scope]) -> list[Scope]:
        """The part of `granted` (what the account may have) that this token allows: the intersection."""
        kept: list[Scope] = []
        for scope in granted:
            if scope.type == "repository":
                actions = frozenset(a for a in scope.actions if self.allows(a, scope.name))
                if actions:
                    kept.append(Scope(scope.type, scope.name, actions))
            elif scope.type == "registry" and scope.name == "catalog":
                kept.append(scope)  # the catalog lists only what the account may pull; a token adds nothing to it
        return kept


@dataclass(frozen=True)
class IssuedAccessToken:
    token: AccessToken
    secret: str  # shown once, never stored


class AccessTokenStore(Protocol):
    """Where tokens are kept. `add` returns the token with its id; the others never raise for an unknown id."""

    def add(self, token: AccessToken) -> AccessToken: ...

    def get(self, token_id: int) -> AccessToken | None: ...

    def by_secret_hash(self, secret_hash: str) -> AccessToken | None: ...

    def list_for(self, account_id: int) -> list[AccessToken]:
        """Newest first."""
        ...

    def revoke(self, token_id: int, at: datetime) -> None: ...

    def touch(self, token_id: int, at: datetime) -> None:
        """Set `last_used_at`."""
        ...


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_token(password: str) -> bool:
    return password.startswith(TOKEN_PREFIX)


def parse_namespaces(text: str) -> tuple[str, ...]:
    """`team, ada  other` -> ('ada', 'other', 'team'): names separated by commas or spaces, each one path component
    of the repository-name grammar. Raises InvalidInput."""
    names = sorted({n for n in re.split(r"[\s,]+", text.strip()) if n})
    if len(names) > MAX_NAMESPACES:
        raise InvalidInput(f"a token may be limited to {MAX_NAMESPACES} namespaces at most")
    for name in names:
        if len(name) > 255 or not _NAMESPACE.fullmatch(name):
            raise InvalidInput(f"{name!r} is not a namespace name (lowercase letters, digits, '.', '_' or '-')")
    return tuple(names)


class AccessTokenService:
    def __init__(self, store: AccessTokenStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def create(
        self,
        account: Account,
        *,
        name: str,
        scope: TokenScope | str,
        namespaces: Iterable[str] = (),
        expires_in_days: int | None = None,
    ) -> IssuedAccessToken:
        name = name.strip()
        if not name:
            raise InvalidInput("a token needs a name")
        if len(name) > MAX_NAME_LENGTH or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
            raise InvalidInput(f"a token name is one line of at most {MAX_NAME_LENGTH} characters")
        try:
            scope = TokenScope(scope)
        except ValueError as exc:
            raise InvalidInput("the scope must be pull, push or delete") from exc
        if expires_in_days is not None and not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
            raise InvalidInput(f"the expiry must be between 1 and {MAX_EXPIRY_DAYS} days")
        if account.id is None or not account.is_active:
            raise InvalidInput("only an active account has tokens")
        now = self.clock.now()
        secret = TOKEN_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
        token = self.store.add(
            AccessToken(
                id=None,
                account_id=account.id,
                name=name,
                scope=scope,
                namespaces=tuple(sorted(set(namespaces))),
                secret_hash=hash_secret(secret),
                created_at=now,
                expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
            )
        )
        return IssuedAccessToken(token, secret)

    def list_for(self, account: Account) -> list[AccessToken]:
        return [] if account.id is None else self.store.list_for(account.id)

    def revoke(self, account: Account, token_id: int) -> AccessToken:
        """Revoke one of the account's own tokens (again is harmless). Raises AccessTokenUnknown."""
        token = self.store.get(token_id)
        if token is None or token.account_id != account.id:
            raise AccessTokenUnknown(f"you have no token {token_id}")
        if token.revoked_at is None:
            now = self.clock.now()
            self.store.revoke(token_id, now)
            token = replace(token, revoked_at=now)
        return token

    def usable(self, token_id: int, account: Account) -> AccessToken | None:
        """The token, if it still belongs to `account` and is neither revoked nor expired (for logins made with it)."""
        token = self.store.get(token_id)
        if token is None or token.account_id != account.id or not token.is_usable(self.clock.now()):
            return None
        return token

    def authenticate(self, secret: str) -> AccessToken | None:
        """The usable token with this secret, or None; its last use is noted at most once a minute. The caller
        checks the account (active, the user name given) on every use."""
        if not looks_like_token(secret):
            return None
        secret_hash = hash_secret(secret)
        token = self.store.by_secret_hash(secret_hash)
        if token is None or not hmac.compare_digest(token.secret_hash, secret_hash):
            return None
        now = self.clock.now()
        if not token.is_usable(now):
            return None
        if token.id is not None and (token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION):
            self.store.touch(token.id, now)
            token = replace(token, last_used_at=now)
        return token
