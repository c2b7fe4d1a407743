"""Adapters: the TokenSigner port, twice.

- `JwtTokenSigner`: registry access tokens as standard JWTs (RFC 7519) signed with an asymmetric key (ES256 or
  RS256, `kid` in the header) by PyJWT, so other registries (CNCF Distribution's `auth: token`) can verify them
  with nothing but our published certificate or JWKS.
- `HmacTokenSigner`: opaque tokens only Stevedore reads (refresh tokens): HMAC-SHA256 over compact JSON, keyed by
  the installation secret narrowed per purpose. They are not JWTs, so no JWT verifier can mistake one for access.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import jwt

from stevedore.adapters.token_keys import TokenSigningKey
from stevedore.domain.errors import TokenInvalid


class JwtTokenSigner:
    """Signs with the first key; verifies the signature with whichever key the header's `kid` names. Claims (expiry,
    audience, issuer) are the domain's to check, with its clock."""

    def __init__(self, keys: Sequence[TokenSigningKey], *, cache_size: int = 4096) -> None:
        if not keys:
            raise ValueError("at least one signing key is needed")
        self.keys = list(keys)
        self._by_kid = {key.kid: key for key in self.keys}
        # A client sends the same token on every request of a push; an ES256 check costs ~0.3 ms, a look-up nothing.
        # Only good signatures are kept (a signature stays good; expiry is checked by the caller every time).
        self._verified: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def sign(self, claims: dict[str, Any]) -> str:
        key = self.keys[0]
        return jwt.encode(claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid, "typ": "JWT"})

    def verify(self, token: str) -> dict[str, Any]:
        with self._lock:
            claims = self._verified.get(token)
            if claims is not None:
                self._verified.move_to_end(token)
                return copy.deepcopy(claims)
        claims = self._verify_signature(token)
        with self._lock:
            self._verified[token] = claims
            while len(self._verified) > self._cache_size:
                self._verified.popitem(last=False)
        return copy.deepcopy(claims)

    def _verify_signature(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            key = self._by_kid.get(header.get("kid", ""))
            if key is None or header.get("alg") != key.algorithm:
                raise TokenInvalid()
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=[key.algorithm],
                options={
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise TokenInvalid() from exc
        if not isinstance(claims, dict):
            raise TokenInvalid()
        return claims

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.jwk() for key in self.keys]}

    def certificates_pem(self) -> str:
        return "".join(key.certificate_pem() for key in self.keys)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class HmacTokenSigner:
    def __init__(self, secret_key: bytes, purpose: str = "registry-token") -> None:
        # One installation secret, narrowed per purpose, so a token for one use never verifies for another.
        self._key = hmac.new(secret_key, purpose.encode(), hashlib.sha256).digest()

    def sign(self, claims: dict[str, Any]) -> str:
        payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        signature = _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())
        return f"{payload}.{signature}"

    def verify(self, token: str) -> dict[str, Any]:
        payload, sep, signature = (token or "").partition(".")
        if not sep:
            raise TokenInvalid()
        expected = _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise TokenInvalid()
        try:
            claims = json.loads(_unb64(payload))
        except ValueError as exc:
            raise TokenInvalid() from exc
        if not isinstance(claims, dict):
            raise TokenInvalid()
        return claims
