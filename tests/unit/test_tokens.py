"""TokenService and the HMAC signer: what a token grants, how long it lives, and what it refuses."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from stevedore.adapters.tokens import HmacTokenSigner
from stevedore.domain.errors import TokenInvalid
from stevedore.domain.model import Account, Scope
from stevedore.domain.tokens import TokenService
from stevedore.web.security import verify_access_token
from tests.fakes import FixedClock, InMemoryAccountStore, InMemoryTokenSigner

SECRET = b"unit-test-secret-0123456789abcdef"


@pytest.fixture
def clock():
    return FixedClock()


@pytest.fixture
def accounts():
    return InMemoryAccountStore()


@pytest.fixture
def alice(accounts):
    return accounts.add(Account(None, "alice", None, "x"))


@pytest.fixture(params=["memory", "hmac"])
def signer(request):
    return InMemoryTokenSigner() if request.param == "memory" else HmacTokenSigner(SECRET)


@pytest.fixture
def tokens(signer, accounts, clock):
    return TokenService(signer, accounts, clock, ttl_seconds=300, refresh_ttl_seconds=3600)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def scopes(*texts: str) -> list[Scope]:
    return [Scope.parse(t) for t in texts]


def test_token_grants_what_was_asked_and_allowed(tokens, signer, alice, clock):
    issued = tokens.issue(alice, scopes("repository:team/app:pull,push"), service="registry", offline=False)
    assert issued.granted == scopes("repository:team/app:pull,push")
    assert issued.expires_in == 300
    assert issued.issued_at == "2026-01-01T00:00:00Z"
    assert issued.refresh_token is None
    claims = signer.verify(issued.token)
    assert claims["typ"] == "access" and claims["sub"] == "alice" and claims["sub_id"] == alice.id
    assert claims["aud"] == "registry"
    assert claims["exp"] - claims["iat"] == 300
    assert claims["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]


def test_token_grants_the_intersection_of_asked_and_known_actions(tokens, signer, alice):
    asked = scopes("repository:team/app:pull,frobnicate", "repository:team/other:delete")
    issued = tokens.issue(alice, asked, service="registry", offline=False)
    assert issued.granted == scopes("repository:team/app:pull", "repository:team/other:delete")
    assert [a["actions"] for a in signer.verify(issued.token)["access"]] == [["pull"], ["delete"]]


def test_token_for_unknown_scopes_grants_nothing_and_is_still_issued(tokens, signer, alice):
    asked = scopes("repository:Bad Name:pull", "repository:team/app:frobnicate", "unknown:thing:read")
    issued = tokens.issue(alice, asked, service="registry", offline=False)
    assert issued.granted == []
    assert signer.verify(issued.token)["access"] == []


def test_token_without_scopes_grants_nothing(tokens, signer, alice):
    issued = tokens.issue(alice, [], service="registry", offline=False)
    assert issued.granted == [] and signer.verify(issued.token)["access"] == []


def test_inactive_account_is_granted_nothing(tokens, accounts, signer):
    bob = accounts.add(Account(None, "bob", None, "x", is_active=False))
    asked = scopes("repository:team/app:pull,push,delete", "registry:catalog:*")
    issued = tokens.issue(bob, asked, service="registry", offline=False)
    assert issued.granted == []
    assert signer.verify(issued.token)["access"] == []


def test_catalog_scope_is_granted_to_an_active_account(tokens, alice):
    issued = tokens.issue(alice, scopes("registry:catalog:*"), service="registry", offline=False)
    assert issued.granted == [Scope("registry", "catalog", frozenset({"*"}))]


def test_short_ttl_is_raised_to_a_minute(signer, accounts, clock, alice):
    service = TokenService(signer, accounts, clock, ttl_seconds=5)
    issued = service.issue(alice, [], service="registry", offline=False)
    assert issued.expires_in == 60
    claims = signer.verify(issued.token)
    assert claims["exp"] - claims["iat"] == 60


def test_two_tokens_for_the_same_request_differ(tokens, alice):
    first = tokens.issue(alice, [], service="registry", offline=False)
    second = tokens.issue(alice, [], service="registry", offline=False)
    assert first.token != second.token


# --- refresh tokens ------------------------------------------------------------------------------------
def test_refresh_token_round_trips_to_its_account(tokens, alice):
    issued = tokens.issue(alice, [], service="registry", offline=True)
    assert issued.refresh_token is not None
    assert tokens.account_for_refresh_token(issued.refresh_token) == alice


def test_refresh_token_expires(tokens, alice, clock):
    refresh = tokens.issue(alice, [], service="registry", offline=True).refresh_token
    clock.advance(seconds=3600)
    assert tokens.account_for_refresh_token(refresh) == alice  # still valid at its last second
    clock.advance(seconds=1)
    with pytest.raises(TokenInvalid):
        tokens.account_for_refresh_token(refresh)


def test_access_token_is_not_a_refresh_token(tokens, alice):
    access = tokens.issue(alice, [], service="registry", offline=True).token
    with pytest.raises(TokenInvalid):
        tokens.account_for_refresh_token(access)


def test_garbage_is_not_a_refresh_token(tokens):
    for token in ("", "garbage", "a.b", "...."):
        with pytest.raises(TokenInvalid):
            tokens.account_for_refresh_token(token)


def test_refresh_token_of_a_deactivated_account_is_refused(tokens, accounts, alice):
    refresh = tokens.issue(alice, [], service="registry", offline=True).refresh_token
    accounts.accounts[alice.id].is_active = False
    with pytest.raises(TokenInvalid):
        tokens.account_for_refresh_token(refresh)


def test_refresh_token_whose_account_is_gone_or_renamed_is_refused(tokens, accounts, alice):
    refresh = tokens.issue(alice, [], service="registry", offline=True).refresh_token
    accounts.accounts[alice.id].username = "someone-else"
    with pytest.raises(TokenInvalid):
        tokens.account_for_refresh_token(refresh)
    del accounts.accounts[alice.id]
    with pytest.raises(TokenInvalid):
        tokens.account_for_refresh_token(refresh)


def test_refresh_token_without_an_integer_expiry_is_refused(tokens, signer, alice):
    for exp in (None, "never", 1e12):
        forged = signer.sign({"typ": "refresh", "sub": "alice", "sub_id": alice.id, "exp": exp})
        with pytest.raises(TokenInvalid):
            tokens.account_for_refresh_token(forged)


# --- access tokens at the door -------------------------------------------------------------------------
def test_access_token_verifies_until_it_expires(tokens, signer, alice, clock):
    token = tokens.issue(alice, scopes("repository:team/app:pull"), service="registry", offline=False).token
    assert verify_access_token(signer, clock, token)["sub"] == "alice"
    clock.advance(seconds=300)
    assert verify_access_token(signer, clock, token)["sub"] == "alice"
    clock.advance(seconds=1)
    with pytest.raises(TokenInvalid):
        verify_access_token(signer, clock, token)


def test_refresh_token_is_not_an_access_token(tokens, signer, alice, clock):
    refresh = tokens.issue(alice, [], service="registry", offline=True).refresh_token
    with pytest.raises(TokenInvalid):
        verify_access_token(signer, clock, refresh)


def test_access_token_without_expiry_is_refused(signer, clock):
    with pytest.raises(TokenInvalid):
        verify_access_token(signer, clock, signer.sign({"typ": "access", "sub": "alice"}))


# --- the HMAC signer -----------------------------------------------------------------------------------
def test_hmac_signer_round_trips_claims():
    signer = HmacTokenSigner(SECRET)
    claims = {"typ": "access", "sub": "alice", "n": 1, "nested": {"list": [1, "two"]}}
    assert signer.verify(signer.sign(claims)) == claims


def test_hmac_signer_rejects_a_tampered_payload():
    signer = HmacTokenSigner(SECRET)
    token = signer.sign({"typ": "access", "sub": "alice", "sub_id": 1})
    payload, signature = token.split(".")
    claims = json.loads(_unb64(payload))
    claims["sub_id"] = 2
    forged = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    with pytest.raises(TokenInvalid):
        signer.verify(f"{forged}.{signature}")


def test_hmac_signer_rejects_a_tampered_signature():
    signer = HmacTokenSigner(SECRET)
    payload, signature = signer.sign({"sub": "alice"}).split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    for token in (f"{payload}.{flipped}", f"{payload}.", payload, f"{payload}.{signature}x"):
        with pytest.raises(TokenInvalid):
            signer.verify(token)


def test_hmac_signer_rejects_tokens_signed_with_another_key_or_purpose():
    token = HmacTokenSigner(b"another secret").sign({"sub": "alice"})
    with pytest.raises(TokenInvalid):
        HmacTokenSigner(SECRET).verify(token)
    other_purpose = HmacTokenSigner(SECRET, purpose="password-reset").sign({"sub": "alice"})
    with pytest.raises(TokenInvalid):
        HmacTokenSigner(SECRET).verify(other_purpose)


@pytest.mark.parametrize("token", ["", ".", "no-dot", "a.b.c", "!!!.???"])
def test_hmac_signer_rejects_garbage(token):
    with pytest.raises(TokenInvalid):
        HmacTokenSigner(SECRET).verify(token)


def test_hmac_signer_rejects_a_signed_payload_that_is_not_an_object():
    # A validly signed payload that is not a JSON object (never produced by sign, but the signer must not crash).
    signer = HmacTokenSigner(SECRET)
    key = hmac.new(SECRET, b"registry-token", hashlib.sha256).digest()
    for body in (b"[1, 2]", b"not json", b"\xff\xfe"):
        payload = _b64(body)
        signature = _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())
        with pytest.raises(TokenInvalid):
            signer.verify(f"{payload}.{signature}")
