"""TokenService and the signers: what a token grants, how long it lives, whom it names, and what it refuses."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from stevedore.adapters.token_keys import (
    TokenKeyError,
    generate_signing_key_pem,
    libtrust_key_id,
    load_signing_key,
    split_pem_keys,
)
from stevedore.adapters.tokens import HmacTokenSigner, JwtTokenSigner
from stevedore.domain.access import Access, AccessRules
from stevedore.domain.errors import InvalidInput, TokenInvalid
from stevedore.domain.model import Account, Scope
from stevedore.domain.namespaces import AccessModel
from stevedore.domain.tokens import TokenService
from tests.fakes import FixedClock, InMemoryAccountStore, InMemoryNamespaceStore, InMemoryTokenSigner

SECRET = b"unit-test-secret-0123456789abcdef"
STAMP_KEY = b"stamp-key-0123456789"
KEY_PEM = generate_signing_key_pem()
OTHER_KEY_PEM = generate_signing_key_pem()


def jwt_signer(*pems: bytes) -> JwtTokenSigner:
    return JwtTokenSigner([load_signing_key(pem, issuer="stevedore") for pem in pems])


@pytest.fixture
def clock():
    return FixedClock()


@pytest.fixture
def accounts():
    return InMemoryAccountStore()


@pytest.fixture
def alice(accounts):
    return accounts.add(Account(None, "alice", None, "hash-of-alice"))


@pytest.fixture(params=["memory", "jwt"])
def signer(request):
    return InMemoryTokenSigner() if request.param == "memory" else jwt_signer(KEY_PEM)


@pytest.fixture(params=["memory", "hmac"])
def refresh_signer(request):
    return InMemoryTokenSigner() if request.param == "memory" else HmacTokenSigner(SECRET, purpose="refresh-token")


def make_service(signer, refresh_signer, accounts, clock, **kw):
    kw.setdefault("ttl_seconds", 300)
    kw.setdefault("refresh_ttl_seconds", 3600)
    # These tests are about tokens, not rights: the open model (rights have tests of their own in test_access.py).
    kw.setdefault("access", Access(InMemoryNamespaceStore(accounts), AccessRules(AccessModel.OPEN)))
    return TokenService(signer, refresh_signer, accounts, clock, issuer="stevedore", stamp_key=STAMP_KEY, **kw)


@pytest.fixture
def tokens(signer, refresh_signer, accounts, clock):
    return make_service(signer, refresh_signer, accounts, clock)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def scopes(*texts: str) -> list[Scope]:
    return [Scope.parse(t) for t in texts]


def test_token_has_the_claims_of_dockers_token_specification(tokens, signer, alice, clock):
    issued = tokens.issue(alice, scopes("repository:team/app:pull,push"), service="registry", offline=False)
    assert issued.granted == scopes("repository:team/app:pull,push")
    assert issued.expires_in == 300
    assert issued.issued_at == "2026-01-01T00:00:00Z"
    assert issued.refresh_token is None
    claims = signer.verify(issued.token)
    now = int(clock.now().timestamp())
    assert claims["iss"] == "stevedore" and claims["sub"] == "alice" and claims["aud"] == "registry"
    assert claims["iat"] == claims["nbf"] == now and claims["exp"] == now + 300
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    assert claims["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]
    assert claims["uid"] == alice.id


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


def test_short_ttl_is_raised_to_a_minute(signer, refresh_signer, accounts, clock, alice):
    service = make_service(signer, refresh_signer, accounts, clock, ttl_seconds=5)
    issued = service.issue(alice, [], service="registry", offline=False)
    assert issued.expires_in == 60
    claims = signer.verify(issued.token)
    assert claims["exp"] - claims["iat"] == 60


def test_two_tokens_for_the_same_request_differ(tokens, alice):
    first = tokens.issue(alice, [], service="registry", offline=False)
    second = tokens.issue(alice, [], service="registry", offline=False)
    assert first.token != second.token


def test_tokens_are_issued_only_for_known_audiences(tokens, alice):
    tokens.issue(alice, [], service="peer", offline=False, audiences=["registry", "peer"])
    with pytest.raises(InvalidInput):
        tokens.issue(alice, [], service="elsewhere", offline=False, audiences=["registry", "peer"])


def test_a_token_for_another_registry_grants_push_only_on_a_right_never_on_a_claim(
    signer, refresh_signer, accounts, clock, alice
):
    """A claim happens in our own push; a push to a registry that trusts our tokens never makes one, so a token for
    it must not carry push on a namespace that is merely free to claim here."""
    namespaces = InMemoryNamespaceStore(accounts)
    service = make_service(signer, refresh_signer, accounts, clock, access=Access(namespaces, AccessRules()))
    asked = scopes("repository:free/app:pull,push", "repository:alice/app:pull,push")
    ours = service.issue(alice, asked, service="registry", offline=False, own_service="registry")
    assert ours.granted == scopes("repository:free/app:pull,push", "repository:alice/app:pull,push")
    theirs = service.issue(
        alice, asked, service="peer", offline=False, audiences=["registry", "peer"], own_service="registry"
    )
    assert theirs.granted == scopes("repository:free/app:pull", "repository:alice/app:pull,push")
    assert namespaces.all() == []


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


def test_refresh_token_without_a_numeric_expiry_is_refused(tokens, refresh_signer, alice):
    for exp in (None, "never", True):
        forged = refresh_signer.sign(
            {"typ": "refresh", "iss": "stevedore", "sub": "alice", "uid": alice.id, "exp": exp}
        )
        with pytest.raises(TokenInvalid):
            tokens.account_for_refresh_token(forged)


# --- revocation: tokens are bound to the account's current credentials ------------------------------------
def test_a_password_change_ends_refresh_and_access_tokens(tokens, accounts, alice):
    issued = tokens.issue(alice, [], service="registry", offline=True)
    accounts.accounts[alice.id].password_hash = "hash-of-a-new-password"
    with pytest.raises(TokenInvalid):
        tokens.account_for_refresh_token(issued.refresh_token)
    with pytest.raises(TokenInvalid):
        tokens.holder_of_access_token(issued.token, service="registry")


def test_a_new_token_generation_ends_the_tokens_of_the_old_one(tokens, accounts, alice):
    issued = tokens.issue(alice, [], service="registry", offline=True)
    accounts.accounts[alice.id].token_generation += 1
    with pytest.raises(TokenInvalid):
        tokens.account_for_refresh_token(issued.refresh_token)
    with pytest.raises(TokenInvalid):
        tokens.holder_of_access_token(issued.token, service="registry")


def test_a_deleted_accounts_tokens_do_not_come_back_with_a_new_account(tokens, accounts, alice):
    issued = tokens.issue(alice, [], service="registry", offline=True)
    del accounts.accounts[alice.id]
    again = accounts.add(Account(None, "alice", None, "hash-of-alice"))  # same name, same password hash
    assert again.id != alice.id
    with pytest.raises(TokenInvalid):
        tokens.account_for_refresh_token(issued.refresh_token)
    with pytest.raises(TokenInvalid):
        tokens.holder_of_access_token(issued.token, service="registry")


def test_a_token_naming_another_account_id_is_refused(tokens, signer, accounts, alice):
    bob = accounts.add(Account(None, "bob", None, "hash-of-bob"))
    claims = signer.verify(tokens.issue(alice, [], service="registry", offline=False).token)
    for uid in (bob.id, str(alice.id), None, True):
        with pytest.raises(TokenInvalid):
            tokens.holder_of_access_token(signer.sign({**claims, "uid": uid}), service="registry")


# --- access tokens at the door -------------------------------------------------------------------------
def test_access_token_verifies_until_it_expires(tokens, alice, clock):
    token = tokens.issue(alice, scopes("repository:team/app:pull"), service="registry", offline=False).token
    holder = tokens.holder_of_access_token(token, service="registry")
    assert holder.account == alice and holder.scopes == tuple(scopes("repository:team/app:pull"))
    clock.advance(seconds=300)
    assert tokens.holder_of_access_token(token, service="registry").account == alice
    clock.advance(seconds=1)
    with pytest.raises(TokenInvalid):
        tokens.holder_of_access_token(token, service="registry")


def test_access_token_for_another_audience_is_refused(tokens, alice):
    token = tokens.issue(alice, scopes("repository:team/app:pull"), service="peer", offline=False).token
    assert tokens.holder_of_access_token(token, service="peer").account == alice
    with pytest.raises(TokenInvalid):
        tokens.holder_of_access_token(token, service="registry")


def test_access_token_from_another_issuer_or_not_yet_valid_is_refused(tokens, signer, alice, clock):
    claims = signer.verify(tokens.issue(alice, [], service="registry", offline=False).token)
    with pytest.raises(TokenInvalid):
        tokens.holder_of_access_token(signer.sign({**claims, "iss": "someone-else"}), service="registry")
    with pytest.raises(TokenInvalid):
        tokens.holder_of_access_token(signer.sign({**claims, "nbf": claims["nbf"] + 3600}), service="registry")
    assert tokens.holder_of_access_token(signer.sign({**claims, "nbf": claims["nbf"] + 10}), service="registry")


def test_refresh_token_is_not_an_access_token(tokens, alice):
    refresh = tokens.issue(alice, [], service="registry", offline=True).refresh_token
    with pytest.raises(TokenInvalid):
        tokens.holder_of_access_token(refresh, service="registry")


def test_access_token_without_expiry_or_with_broken_access_is_refused(tokens, signer, alice):
    claims = signer.verify(tokens.issue(alice, [], service="registry", offline=False).token)
    del claims["exp"]
    with pytest.raises(TokenInvalid):
        tokens.holder_of_access_token(signer.sign(claims), service="registry")
    claims = signer.verify(tokens.issue(alice, [], service="registry", offline=False).token)
    with pytest.raises(TokenInvalid):
        tokens.holder_of_access_token(signer.sign({**claims, "access": [{"type": "repository"}]}), service="registry")


# --- the JWT signer ------------------------------------------------------------------------------------
def test_jwt_is_standard_es256_with_the_key_id_in_its_header():
    signer = jwt_signer(KEY_PEM)
    key = signer.keys[0]
    token = signer.sign({"sub": "alice", "aud": "registry"})
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "ES256", "kid": key.kid, "typ": "JWT"}
    # Any JWT library verifies it with the published public key alone.
    public = serialization.load_pem_public_key(
        key.public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert jwt.decode(token, public, algorithms=["ES256"], audience="registry")["sub"] == "alice"


def test_libtrust_key_id_has_twelve_groups_of_four_base32_characters():
    key = load_signing_key(KEY_PEM, issuer="stevedore")
    groups = key.kid.split(":")
    assert len(groups) == 12 and all((len(g) == 4 and g.isupper()) or g.isdigit() for g in groups)
    der = key.public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    expected = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    assert key.kid.replace(":", "") == expected
    assert libtrust_key_id(key.certificate.public_key()) == key.kid  # the certificate carries the same key


def test_rotation_signs_with_the_first_key_and_verifies_with_every_key():
    old = jwt_signer(OTHER_KEY_PEM)
    rotated = jwt_signer(KEY_PEM, OTHER_KEY_PEM)
    old_token = old.sign({"sub": "alice"})
    assert rotated.verify(old_token)["sub"] == "alice"
    new_token = rotated.sign({"sub": "bob"})
    assert jwt.get_unverified_header(new_token)["kid"] == rotated.keys[0].kid
    with pytest.raises(TokenInvalid):
        old.verify(new_token)  # a node that does not know the new key yet refuses it
    assert [k["kid"] for k in rotated.jwks()["keys"]] == [rotated.keys[0].kid, rotated.keys[1].kid]
    assert rotated.certificates_pem().count("BEGIN CERTIFICATE") == 2


def test_jwt_signer_refuses_forgeries():
    signer = jwt_signer(KEY_PEM)
    key = signer.keys[0]
    public_pem = key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forgeries = [
        jwt.encode({"sub": "alice"}, None, algorithm="none", headers={"kid": key.kid}),  # no signature at all
        jwt.encode({"sub": "alice"}, OTHER_KEY_PEM, algorithm="ES256", headers={"kid": key.kid}),  # another key
        jwt.encode({"sub": "alice"}, OTHER_KEY_PEM, algorithm="ES256"),  # no kid
    ]
    # HS256 keyed with the public key: the classic algorithm confusion (PyJWT will not even make it).
    header = _b64(json.dumps({"alg": "HS256", "kid": key.kid, "typ": "JWT"}).encode())
    payload = _b64(json.dumps({"sub": "alice"}).encode())
    mac = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    forgeries.append(f"{header}.{payload}.{_b64(mac)}")
    token = signer.sign({"sub": "alice"})
    head, _body, signature = token.split(".")
    forgeries.append(f"{head}.{_b64(json.dumps({'sub': 'mallory'}).encode())}.{signature}")  # tampered payload
    forgeries += ["", "garbage", "a.b.c", token + "x"]
    for forged in forgeries:
        with pytest.raises(TokenInvalid):
            signer.verify(forged)


def test_signing_keys_must_be_p256_or_big_rsa():
    rsa_pem = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    key = load_signing_key(rsa_pem, issuer="stevedore")
    assert key.algorithm == "RS256"
    assert JwtTokenSigner([key]).verify(JwtTokenSigner([key]).sign({"sub": "alice"})) == {"sub": "alice"}
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for bad in (p384, b"not a key", KEY_PEM.replace(b"A", b"B", 3)):
        with pytest.raises(TokenKeyError):
            load_signing_key(bad, issuer="stevedore")


def test_several_keys_are_split_out_of_one_text_in_order():
    text = (KEY_PEM + b"\n" + OTHER_KEY_PEM).decode()
    assert split_pem_keys(text) == [KEY_PEM.strip(), OTHER_KEY_PEM.strip()]


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


def test_verified_signatures_are_remembered_but_never_a_forgery_and_never_without_bound():
    signer = JwtTokenSigner([load_signing_key(KEY_PEM, issuer="stevedore")], cache_size=2)
    token = signer.sign({"sub": "alice", "access": []})
    assert signer.verify(token) == {"sub": "alice", "access": []}
    signer.verify(token)["access"].append("granted to myself")  # what a caller does to its copy stays there
    assert signer.verify(token) == {"sub": "alice", "access": []}
    head, _body, signature = token.split(".")
    with pytest.raises(TokenInvalid):
        signer.verify(f"{head}.{_b64(json.dumps({'sub': 'mallory'}).encode())}.{signature}")
    for n in range(5):
        signer.verify(signer.sign({"sub": f"user{n}"}))
    assert len(signer._verified) == 2
