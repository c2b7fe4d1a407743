"""Adapter: the TokenSigner port with HMAC-SHA256 over compact JSON (a JWS-like `payload.signature`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from stevedore.domain.errors import TokenInvalid


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
