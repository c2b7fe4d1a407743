"""Who gets in: expired and revoked tokens, and bcrypt running once for repeated Basic credentials."""

from __future__ import annotations

import time

import sqlalchemy as sa
import transaction

from stevedore.adapters.sql.engine import join_transaction
from stevedore.adapters.sql.tables import accounts
from tests.integration.test_base import basic


def access_token(components, account_id, username, *, expires_in=300, access=()):
    now = int(time.time())
    return components.token_signer.sign(
        {
            "typ": "access",
            "sub": username,
            "sub_id": account_id,
            "iat": now,
            "exp": now + expires_in,
            "access": list(access),
        }
    )


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_an_expired_token_is_challenged(testapp, components, make_user):
    account = make_user("tokenuser", "a fine password")
    fresh = access_token(components, account.id, "tokenuser")
    testapp.get("/v2/", headers=bearer(fresh), status=200)
    expired = access_token(components, account.id, "tokenuser", expires_in=-1)
    response = testapp.get("/v2/", headers=bearer(expired), status=401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer realm=")


def test_a_refresh_token_is_not_an_access_token(testapp, make_user):
    make_user("refresher", "a fine password")
    body = testapp.get(
        "/v2/token?service=x&offline_token=true", headers=basic("refresher", "a fine password"), status=200
    ).json
    testapp.get("/v2/", headers=bearer(body["refresh_token"]), status=401)


def test_a_deactivated_account_loses_its_tokens_and_its_cached_password(testapp, components, make_user, db):
    account = make_user("leaver", "a fine password")
    token = access_token(components, account.id, "leaver")
    testapp.get("/v2/", headers=bearer(token), status=200)
    testapp.get("/v2/", headers=basic("leaver", "a fine password"), status=200)
    with transaction.manager:
        session = join_transaction(components.write_sessions())
        session.execute(sa.update(accounts).where(accounts.c.id == account.id).values(is_active=False))
    testapp.get("/v2/", headers=bearer(token), status=401)
    testapp.get("/v2/", headers=basic("leaver", "a fine password"), status=401)


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
