"""Domain layer: registry access tokens (docker's token flow) — issue scoped, expiring tokens and refresh tokens."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from stevedore.domain import access
from stevedore.domain.errors import TokenInvalid
from stevedore.domain.model import Account, Scope
from stevedore.domain.ports import AccountStore, Clock, TokenSigner


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int
    issued_at: str
    granted: list[Scope]
    refresh_token: str | None = None


class TokenService:
    def __init__(
        self,
        signer: TokenSigner,
        accounts: AccountStore,
        clock: Clock,
        *,
        ttl_seconds: int = 300,
        refresh_ttl_seconds: int = 90 * 24 * 3600,
    ) -> None:
        self.signer = signer
        self.accounts = accounts
        self.clock = clock
        self.ttl = max(60, ttl_seconds)
        self.refresh_ttl = refresh_ttl_seconds

    def issue(self, account: Account, requested: Iterable[Scope], *, service: str, offline: bool) -> IssuedToken:
        """A token for the part of `requested` that the account may have. Asking for more is not an error."""
        now = self.clock.now()
        granted = access.grant(account, requested)
        claims: dict[str, Any] = {
            "typ": "access",
            "sub": account.username,
            "sub_id": account.id,
            "aud": service,
            "iat": int(now.timestamp()),
            "exp": int(now.timestamp()) + self.ttl,
            "jti": secrets.token_urlsafe(12),
            "access": [{"type": s.type, "name": s.name, "actions": sorted(s.actions)} for s in granted],
        }
        refresh = None
        if offline:
            refresh = self.signer.sign(
                {
                    "typ": "refresh",
                    "sub": account.username,
                    "sub_id": account.id,
                    "iat": int(now.timestamp()),
                    "exp": int(now.timestamp()) + self.refresh_ttl,
                    "jti": secrets.token_urlsafe(12),
                }
            )
        return IssuedToken(
            token=self.signer.sign(claims),
            expires_in=self.ttl,
            issued_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            granted=granted,
            refresh_token=refresh,
        )

    def account_for_refresh_token(self, token: str) -> Account:
        claims = self.signer.verify(token)
        if claims.get("typ") != "refresh" or not isinstance(claims.get("exp"), int):
            raise TokenInvalid()
        if claims["exp"] < self.clock.now().timestamp():
            raise TokenInvalid("refresh token expired")
        account = self.accounts.get(int(claims.get("sub_id") or 0))
        if account is None or not account.is_active or account.username != claims.get("sub"):
            raise TokenInvalid()
        return account
