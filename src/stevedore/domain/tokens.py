"""Domain layer: registry access tokens (docker's token flow) — issue scoped, expiring tokens and refresh tokens,
and say who a presented token stands for.

Access tokens carry the claims of docker's token specification (`iss`, `sub`, `aud`, `exp`, `nbf`, `iat`, `jti`,
`access`), so other registries can verify them too. Both kinds name the account by its id, which is never reused,
and carry a stamp of the account's current credentials: a password change, a disable or a deletion ends every token
and refresh token at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from stevedore.domain.access import Access
from stevedore.domain.access_tokens import AccessToken
from stevedore.domain.errors import InvalidInput, TokenInvalid
from stevedore.domain.model import Account, Scope
from stevedore.domain.ports import AccountStore, Clock, TokenSigner

# How far a token's `nbf` may lie in the future: the clocks of an installation's nodes drift a little.
CLOCK_SKEW_SECONDS = 30


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int
    issued_at: str
    granted: list[Scope]
    refresh_token: str | None = None


@dataclass(frozen=True)
class TokenHolder:
    """Who a verified access token stands for, and what it grants."""

    account: Account
    scopes: tuple[Scope, ...]
    # The personal access token the login was made with (its id), which the caller checks is still usable.
    access_token_id: int | None = None


@dataclass(frozen=True)
class RefreshHolder:
    """Who a verified refresh token stands for, and the personal access token its login was made with, if any."""

    account: Account
    access_token_id: int | None = None


def credential_stamp(account: Account, key: bytes) -> str:
    """A short keyed fingerprint of the account's current credentials: it changes with the password hash and the
    token generation (which a disable raises)."""
    message = f"{account.id}\0{account.token_generation}\0{account.password_hash}".encode()
    return base64.urlsafe_b64encode(hmac.new(key, message, hashlib.sha256).digest()[:16]).rstrip(b"=").decode()


class TokenService:
    def __init__(
        self,
        access_signer: TokenSigner,
        refresh_signer: TokenSigner,
        accounts: AccountStore,
        clock: Clock,
        *,
        issuer: str,
        stamp_key: bytes,
        ttl_seconds: int = 300,
        refresh_ttl_seconds: int = 90 * 24 * 3600,
        access: Access,
    ) -> None:
        self.access_signer = access_signer
        self.refresh_signer = refresh_signer
        self.accounts = accounts
        self.clock = clock
        self.issuer = issuer
        self.stamp_key = stamp_key
        self.ttl = max(60, ttl_seconds)
        self.refresh_ttl = refresh_ttl_seconds
        self.access = access

    def issue(
        self,
        account: Account,
        requested: Iterable[Scope],
        *,
        service: str,
        offline: bool,
        audiences: Iterable[str] | None = None,
        own_service: str | None = None,
        access_token: AccessToken | None = None,
    ) -> IssuedToken:
        """A token for the part of `requested` that the account may have. Asking for more is not an error; asking
        for a service outside `audiences` (when given) is. With `own_service`, a token for any other service (a
        registry that trusts ours) grants push only on a right held now: the claim of a first push happens in our
        own push, which a push to that registry never is. With `access_token` (a login made with a personal access
        token), only what both the account and the token allow is granted, and both tokens name it (`pat`): they
        end when it is revoked or expires."""
        if audiences is not None and service not in set(audiences):
            raise InvalidInput(f"this registry issues no tokens for the service {service!r}")
        now = int(self.clock.now().timestamp())
        granted = self.access.grant(account, requested, by_claim=own_service is None or service == own_service)
        if access_token is not None:
            granted = access_token.limit(granted)
        stamp = credential_stamp(account, self.stamp_key)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": account.username,
            "aud": service,
            "exp": now + self.ttl,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
            "access": [{"type": s.type, "name": s.name, "actions": sorted(s.actions)} for s in granted],
            "uid": account.id,
            "cred": stamp,
        }
        if access_token is not None:
            claims["pat"] = access_token.id
        refresh = None
        if offline:
            refresh = self.refresh_signer.sign(
                {
                    "typ": "refresh",
                    "iss": self.issuer,
                    "sub": account.username,
                    "uid": account.id,
                    "cred": stamp,
                    "iat": now,
                    "exp": now + self.refresh_ttl,
                    "jti": secrets.token_urlsafe(16),
                    **({"pat": access_token.id} if access_token is not None else {}),
                }
            )
        return IssuedToken(
            token=self.access_signer.sign(claims),
            expires_in=self.ttl,
            issued_at=self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            granted=granted,
            refresh_token=refresh,
        )

    def holder_of_access_token(self, token: str, *, service: str) -> TokenHolder:
        """The account and scopes of an access token issued by us for `service`. Raises TokenInvalid."""
        claims = self.access_signer.verify(token)
        now = self.clock.now().timestamp()
        if claims.get("iss") != self.issuer or not _audience_includes(claims.get("aud"), service):
            raise TokenInvalid()
        if not _is_number(claims.get("exp")) or claims["exp"] < now:
            raise TokenInvalid("token expired")
        if _is_number(claims.get("nbf")) and claims["nbf"] > now + CLOCK_SKEW_SECONDS:
            raise TokenInvalid("token not valid yet")
        account = self._account(claims)
        try:
            scopes = tuple(Scope(s["type"], s["name"], frozenset(s["actions"])) for s in claims.get("access") or [])
        except (KeyError, TypeError) as exc:
            raise TokenInvalid() from exc
        return TokenHolder(account, scopes, _access_token_id(claims))

    def account_for_refresh_token(self, token: str) -> Account:
        return self.holder_of_refresh_token(token).account

    def holder_of_refresh_token(self, token: str) -> RefreshHolder:
        """The account of a refresh token, and the personal access token its login was made with (the caller checks
        that it is still usable). Raises TokenInvalid."""
        claims = self.refresh_signer.verify(token)
        if claims.get("typ") != "refresh" or claims.get("iss") != self.issuer or not _is_number(claims.get("exp")):
            raise TokenInvalid()
        if claims["exp"] < self.clock.now().timestamp():
            raise TokenInvalid("refresh token expired")
        return RefreshHolder(self._account(claims), _access_token_id(claims))

    def _account(self, claims: dict[str, Any]) -> Account:
        """The active account a token names, if its credentials are still those the token was issued under."""
        account_id = claims.get("uid")
        if not isinstance(account_id, int) or isinstance(account_id, bool):
            raise TokenInvalid()
        account = self.accounts.get(account_id)
        if account is None or not account.is_active or account.username != claims.get("sub"):
            raise TokenInvalid()
        stamp = claims.get("cred")
        if not isinstance(stamp, str) or not hmac.compare_digest(stamp, credential_stamp(account, self.stamp_key)):
            raise TokenInvalid("the account's credentials changed")
        return account


def _access_token_id(claims: dict[str, Any]) -> int | None:
    value = claims.get("pat")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TokenInvalid()
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _audience_includes(audience: object, service: str) -> bool:
    if isinstance(audience, str):
        return hmac.compare_digest(audience.encode(), service.encode())
    if isinstance(audience, list):
        return any(isinstance(a, str) and a == service for a in audience)
    return False
