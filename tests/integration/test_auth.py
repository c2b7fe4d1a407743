"""Who gets in: expired, revoked and foreign tokens; password changes, disabled and deleted accounts; bcrypt once
for repeated Basic credentials; the published token keys."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import jwt
import pytest
import sqlalchemy as sa
import transaction
from cryptography import x509

from stevedore.adapters.sql.accounts import SqlAccountStore
from stevedore.adapters.sql.engine import join_transaction
from stevedore.adapters.sql.tables import accounts, namespaces
from stevedore.domain.accounts import AccountService
from stevedore.domain.errors import TooManyRequests
from tests.fakes import FixedClock
from tests.integration.conftest import count_rows
from tests.integration.test_base import basic

SERVICE = "localhost"


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def token_for(testapp, username, password, *scopes, service=SERVICE, offline=False):
    query = [("service", service), *(("scope", s) for s in scopes)]
    if offline:
        query.append(("offline_token", "true"))
    return testapp.get("/v2/token", params=query, headers=basic(username, password), status=200).json


def refresh(testapp, refresh_token, status=200):
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "service": SERVICE, "client_id": "t"}
    return testapp.post("/v2/token", form, status=status)


def change_account(components, action, *args):
    with transaction.manager:
        session = join_transaction(components.write_sessions())
        service = AccountService(SqlAccountStore(session), components.hasher, components.clock)
        getattr(service, action)(*args)


@pytest.fixture
def frozen_clock(components):
    clock = FixedClock()
    components.clock = clock
    return clock


def test_the_challenges_service_is_the_one_tokens_are_checked_against(testapp):
    challenge = testapp.get("/v2/", status=401).headers["WWW-Authenticate"]
    assert f'service="{SERVICE}"' in challenge


def test_an_expired_token_is_challenged(testapp, make_user, frozen_clock):
    make_user("tokenuser", "a fine password")
    token = token_for(testapp, "tokenuser", "a fine password")["token"]
    testapp.get("/v2/", headers=bearer(token), status=200)
    frozen_clock.advance(seconds=301)
    response = testapp.get("/v2/", headers=bearer(token), status=401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer realm=")


def test_a_refresh_token_is_not_an_access_token(testapp, make_user):
    make_user("refresher", "a fine password")
    body = token_for(testapp, "refresher", "a fine password", offline=True)
    testapp.get("/v2/", headers=bearer(body["refresh_token"]), status=401)


def test_an_access_token_is_not_a_refresh_token(testapp, make_user):
    make_user("refresher", "a fine password")
    body = token_for(testapp, "refresher", "a fine password", offline=True)
    refresh(testapp, body["token"], status=401)
    assert refresh(testapp, body["refresh_token"]).json["access_token"]


def federating(components, **changes):
    changes.setdefault("token_audiences", ("peer.example:5000",))
    changes.setdefault("service_name", SERVICE)
    components.settings = dataclasses.replace(components.settings, **changes)


def test_a_token_for_another_service_is_refused(testapp, components, make_user):
    make_user("traveller", "a fine password")
    federating(components)
    token = token_for(testapp, "traveller", "a fine password", service="peer.example:5000")["token"]
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == "peer.example:5000"
    testapp.get("/v2/", headers=bearer(token), status=401)
    # Naming the trusting registry in Host changes nothing: our service is configured, not taken from requests.
    testapp.get("/v2/", headers={**bearer(token), "Host": "peer.example:5000"}, status=401)


def test_a_token_for_another_registry_grants_push_only_on_rights_not_on_a_claim(testapp, components, make_user):
    """No push of ours happens there, so no claim: push on a free namespace would be a right nobody holds."""
    make_user("traveller", "a fine password")
    federating(components)
    asked = ("repository:free/app:pull,push", "repository:traveller/app:pull,push")

    def granted(service):
        token = token_for(testapp, "traveller", "a fine password", *asked, service=service)["token"]
        claims = jwt.decode(token, options={"verify_signature": False})
        return {entry["name"]: sorted(entry["actions"]) for entry in claims["access"]}

    assert granted("peer.example:5000") == {"free/app": ["pull"], "traveller/app": ["pull", "push"]}
    assert granted(SERVICE) == {"free/app": ["pull", "push"], "traveller/app": ["pull", "push"]}
    with components.write_sessions() as session:
        assert count_rows(session, namespaces) == 0  # asking claims nothing, for either service


def test_a_host_naming_a_trusting_registry_never_makes_its_tokens_ours(testapp, components, make_user):
    make_user("traveller", "a fine password")
    federating(components, service_name=None)  # as if the settings had let it through
    token = token_for(testapp, "traveller", "a fine password", service="peer.example:5000")["token"]
    testapp.get("/v2/", headers={**bearer(token), "Host": "peer.example:5000"}, status=401)


def test_trusting_registries_need_a_fixed_service_name_of_our_own():
    from stevedore.web.settings import Settings, SettingsError

    ini = {
        "stevedore.database_url": "sqlite://",
        "stevedore.storage_url": "file:///tmp/x",
        "stevedore.token_audiences": "peer.example:5000",
    }
    environ = {"STEVEDORE_SECRET_KEY": "s" * 40}
    with pytest.raises(SettingsError, match="public_url"):
        Settings.from_mapping(ini, environ=environ)
    assert Settings.from_mapping({**ini, "stevedore.service_name": "us"}, environ=environ).token_audiences
    assert Settings.from_mapping({**ini, "stevedore.public_url": "https://r.example"}, environ=environ)


def test_no_token_is_issued_for_an_unknown_service(testapp, make_user):
    make_user("traveller", "a fine password")
    response = testapp.get("/v2/token?service=evil.example", headers=basic("traveller", "a fine password"), status=400)
    assert "evil.example" in response.json["errors"][0]["message"]


def test_a_token_signed_by_an_unknown_key_is_refused(testapp, make_user):
    from stevedore.adapters.token_keys import generate_signing_key_pem, load_signing_key
    from stevedore.adapters.tokens import JwtTokenSigner

    make_user("forger", "a fine password")
    claims = jwt.decode(token_for(testapp, "forger", "a fine password")["token"], options={"verify_signature": False})
    stranger = JwtTokenSigner([load_signing_key(generate_signing_key_pem(), issuer="stevedore")])
    testapp.get("/v2/", headers=bearer(stranger.sign(claims)), status=401)


def test_a_deactivated_account_loses_its_tokens_and_its_cached_password(testapp, components, make_user):
    make_user("leaver", "a fine password")
    body = token_for(testapp, "leaver", "a fine password", offline=True)
    testapp.get("/v2/", headers=bearer(body["token"]), status=200)
    testapp.get("/v2/", headers=basic("leaver", "a fine password"), status=200)
    change_account(components, "set_active", "leaver", False)
    testapp.get("/v2/", headers=bearer(body["token"]), status=401)
    testapp.get("/v2/", headers=basic("leaver", "a fine password"), status=401)
    refresh(testapp, body["refresh_token"], status=401)


def test_enabling_an_account_again_does_not_bring_its_old_tokens_back(testapp, components, make_user):
    make_user("returner", "a fine password")
    body = token_for(testapp, "returner", "a fine password", offline=True)
    change_account(components, "set_active", "returner", False)
    change_account(components, "set_active", "returner", True)
    testapp.get("/v2/", headers=bearer(body["token"]), status=401)
    refresh(testapp, body["refresh_token"], status=401)
    testapp.get("/v2/", headers=basic("returner", "a fine password"), status=200)  # the password itself still works
    fresh = token_for(testapp, "returner", "a fine password")["token"]
    testapp.get("/v2/", headers=bearer(fresh), status=200)


def test_a_password_change_ends_tokens_refresh_tokens_and_cached_logins(testapp, components, make_user):
    make_user("changer", "the old password")
    body = token_for(testapp, "changer", "the old password", offline=True)
    testapp.get("/v2/", headers=basic("changer", "the old password"), status=200)  # now cached
    testapp.get("/v2/", headers=bearer(body["token"]), status=200)
    change_account(components, "change_password", "changer", "the new password")
    testapp.get("/v2/", headers=basic("changer", "the old password"), status=401)
    testapp.get("/v2/", headers=bearer(body["token"]), status=401)
    message = refresh(testapp, body["refresh_token"], status=401).json["errors"][0]["message"]
    assert message == 'the login has expired or was ended: run "docker login localhost" again'
    testapp.get("/v2/", headers=basic("changer", "the new password"), status=200)


def test_a_deleted_accounts_tokens_do_not_come_back_with_a_new_account(testapp, components, make_user, db):
    first = make_user("phoenix", "a fine password")
    body = token_for(testapp, "phoenix", "a fine password", offline=True)
    change_account(components, "delete_account", "phoenix")
    testapp.get("/v2/", headers=bearer(body["token"]), status=401)
    second = make_user("phoenix", "a fine password")  # the same name and password, again
    assert second.id != first.id
    testapp.get("/v2/", headers=bearer(body["token"]), status=401)
    refresh(testapp, body["refresh_token"], status=401)
    db.rollback()
    assert db.execute(sa.select(accounts.c.id).where(accounts.c.username == "phoenix")).scalar_one() == second.id


def test_a_deleted_account_id_is_never_given_to_the_next_account(components, make_user):
    make_user("first", "a fine password")
    last = make_user("last", "a fine password")
    change_account(components, "delete_account", "last")
    assert make_user("next", "a fine password").id > last.id


@pytest.mark.parametrize("header", ["Basic \xe9", "Basic \xe9\xe9\xe9\xe9", "Bearer \xe9", "Basic w6k6w6k="])
def test_a_non_ascii_or_non_utf8_authorization_header_is_a_401(testapp, header):
    response = testapp.get("/v2/", headers={"Authorization": header}, status=401)
    assert response.json["errors"][0]["code"] == "UNAUTHORIZED"


def test_jwks_and_certificates_publish_the_signing_keys(testapp, components):
    signer = components.token_signer
    jwks = testapp.get("/.well-known/jwks.json", status=200)
    assert jwks.content_type == "application/jwk-set+json"
    (key,) = jwks.json["keys"]
    assert key["kid"] == signer.keys[0].kid and key["alg"] == "ES256" and key["kty"] == "EC" and key["use"] == "sig"
    assert "d" not in key  # never the private part
    pem = testapp.get("/-/token-certificates.pem", status=200).body
    (certificate,) = x509.load_pem_x509_certificates(pem)
    assert certificate.public_key() == signer.keys[0].public_key
    assert b"PRIVATE" not in pem
    # What a verifier does: take the key the token's kid names from the JWKS, and check the token with it.
    token = signer.sign({"sub": "alice", "aud": "registry"})
    public = jwt.PyJWK(key).key
    assert jwt.decode(token, public, algorithms=["ES256"], audience="registry")["sub"] == "alice"


class CountingHasher:
    def __init__(self, inner):
        self.inner = inner
        self.verifications = 0

    def hash(self, password):
        return self.inner.hash(password)

    def verify(self, password, hashed):
        self.verifications += 1
        return self.inner.verify(password, hashed)


def test_basic_credentials_on_every_request_run_bcrypt_once(testapp, components, user):
    counting = CountingHasher(components.hasher)
    components.hasher = counting
    for _ in range(5):
        testapp.get("/v2/", headers=basic(*user), status=200)
    assert counting.verifications == 1
    testapp.get("/v2/", headers=basic(user[0], "a wrong password"), status=401)
    assert counting.verifications == 2  # a wrong password is never answered from the cache


def test_tokens_expire_in_the_configured_time(testapp, make_user, frozen_clock):
    make_user("timer", "a fine password")
    body = token_for(testapp, "timer", "a fine password")
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == body["expires_in"] == 300
    assert claims["iat"] == int(frozen_clock.now().timestamp())
    frozen_clock.advance(seconds=300)
    assert frozen_clock.now() - timedelta(seconds=300) < frozen_clock.now()


def test_a_token_form_with_file_parts_is_a_clear_error_not_a_500(testapp, make_user):
    make_user("uploader", "a fine password")
    login = {"grant_type": "password", "username": "uploader", "password": "a fine password", "client_id": "t"}
    refreshing = {"grant_type": "refresh_token", "client_id": "t"}
    for fields, name in (
        (login, "username"),
        (login, "password"),
        (login, "grant_type"),
        (refreshing, "refresh_token"),
    ):
        without = {key: value for key, value in fields.items() if key != name}
        response = testapp.post(
            "/v2/token", params=without, upload_files=[(name, "f.txt", b"uploader")], status=(400, 401)
        )
        assert response.json["errors"][0]["code"] in ("UNAUTHORIZED", "UNSUPPORTED")
    for name in ("scope", "service"):  # optional fields: a file there is ignored
        files = [(name, "f.txt", b"repository:x:pull")]
        assert testapp.post("/v2/token", params=login, upload_files=files, status=200).json["token"]


class BusyHasher:
    def hash(self, password):
        raise TooManyRequests("too many logins at once: retry in a moment")

    def verify(self, password, hashed):
        raise TooManyRequests("too many logins at once: retry in a moment")


def test_a_login_refused_for_load_is_429_with_retry_after(testapp, components, user):
    components.hasher = BusyHasher()
    response = testapp.get("/v2/", headers=basic(*user), status=429)
    assert response.json["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert response.headers["Retry-After"] == "2"
