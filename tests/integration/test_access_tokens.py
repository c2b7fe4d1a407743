"""Personal access tokens over /v2/ as docker uses them, on both databases: the token as the Basic password and at
the token endpoint; its scope and namespaces intersected with the account's rights; expiry, revocation and a
disabled account."""

from __future__ import annotations

import jwt
import pytest
import sqlalchemy as sa
import transaction

from stevedore.adapters.sql.access_tokens import SqlAccessTokenStore
from stevedore.adapters.sql.accounts import SqlAccountStore
from stevedore.adapters.sql.engine import join_transaction
from stevedore.adapters.sql.tables import repositories
from stevedore.adapters.sql.tables_access_tokens import access_tokens
from stevedore.domain.access_tokens import AccessTokenService
from stevedore.domain.accounts import AccountService
from tests.fakes import FixedClock
from tests.integration.conftest import count_rows
from tests.integration.protocol.helpers import basic, bearer, error_codes, push_blob, push_image

PASSWORD = "a fine password"


@pytest.fixture
def clock(components):
    components.clock = FixedClock()
    return components.clock


def make_token(components, username, scope="push", namespaces=(), days=None):
    session = components.write_sessions()
    with transaction.manager:
        join_transaction(session)
        account = SqlAccountStore(session).by_username(username)
        issued = AccessTokenService(SqlAccessTokenStore(session), components.clock).create(
            account, name="ci", scope=scope, namespaces=namespaces, expires_in_days=days
        )
    session.close()
    return issued.token.id, issued.secret


def revoke(components, username, token_id):
    session = components.write_sessions()
    with transaction.manager:
        join_transaction(session)
        account = SqlAccountStore(session).by_username(username)
        AccessTokenService(SqlAccessTokenStore(session), components.clock).revoke(account, token_id)
    session.close()


def disable(components, username):
    with transaction.manager:
        session = join_transaction(components.write_sessions())
        AccountService(SqlAccountStore(session), components.hasher, components.clock).set_active(username, False)


@pytest.fixture
def ada(make_user):
    make_user("ada", PASSWORD)
    make_user("bob", PASSWORD)
    return "ada"


def token_claims(testapp, username, secret, *scopes):
    query = [
        ("service", testapp.get("/v2/", status=401).headers["WWW-Authenticate"].split('service="')[1].split('"')[0])
    ]
    query += [("scope", s) for s in scopes]
    body = testapp.get("/v2/token", params=query, headers=basic(username, secret), status=200).json
    return body, jwt.decode(body["token"], options={"verify_signature": False})


def test_a_push_token_as_the_basic_password_pushes_into_the_own_namespace(testapp, components, ada, db):
    _, secret = make_token(components, "ada", "push")
    auth = basic("ada", secret)
    testapp.get("/v2/", headers=auth, status=200)
    pushed = push_image(testapp, auth, "ada/app")
    testapp.get(f"/v2/ada/app/manifests/{pushed.digest}", headers=auth, status=200)
    assert db.execute(sa.select(access_tokens.c.last_used_at)).scalar_one() is not None


def test_a_pull_token_is_refused_a_push_with_denied(testapp, components, ada, db):
    _, secret = make_token(components, "ada", "pull")
    auth = basic("ada", secret)
    response = testapp.post("/v2/ada/app/blobs/uploads/", headers=auth, status=403)
    assert error_codes(response) == ["DENIED"]
    assert count_rows(db, repositories) == 0


def test_a_push_token_may_not_delete(testapp, components, ada):
    pushed = push_image(testapp, basic("ada", PASSWORD), "ada/app")
    _, secret = make_token(components, "ada", "push")
    testapp.delete(f"/v2/ada/app/manifests/{pushed.digest}", headers=basic("ada", secret), status=403)
    _, deleter = make_token(components, "ada", "delete")
    testapp.delete(f"/v2/ada/app/manifests/{pushed.digest}", headers=basic("ada", deleter), status=202)


def test_a_namespace_limited_token_is_refused_elsewhere(testapp, components, ada, db):
    push_image(testapp, basic("bob", PASSWORD), "bob/app")
    _, secret = make_token(components, "ada", "push", namespaces=("ada",))
    auth = basic("ada", secret)
    push_blob(testapp, auth, "ada/app", b"mine")
    # Elsewhere: neither a push that would claim a free namespace nor a pull the account alone could make.
    testapp.post("/v2/free/app/blobs/uploads/", headers=auth, status=403)
    testapp.get("/v2/bob/app/tags/list", headers=auth, status=403)
    testapp.get("/v2/bob/app/tags/list", headers=basic("ada", PASSWORD), status=200)
    assert db.execute(sa.select(repositories.c.name).order_by(repositories.c.name)).scalars().all() == [
        "ada/app",
        "bob/app",
    ]


def test_a_namespace_limited_token_lists_only_its_namespaces_in_the_catalog(testapp, components, ada):
    push_image(testapp, basic("bob", PASSWORD), "bob/app")
    push_image(testapp, basic("ada", PASSWORD), "ada/app")
    _, secret = make_token(components, "ada", "pull", namespaces=("ada",))
    assert testapp.get("/v2/_catalog", headers=basic("ada", secret)).json["repositories"] == ["ada/app"]
    everything = testapp.get("/v2/_catalog", headers=basic("ada", PASSWORD)).json["repositories"]
    assert everything == ["ada/app", "bob/app"]


def test_a_token_never_gives_more_than_the_account_has(testapp, components, ada):
    push_image(testapp, basic("bob", PASSWORD), "bob/app")
    _, secret = make_token(components, "ada", "delete")
    testapp.post("/v2/bob/app/blobs/uploads/", headers=basic("ada", secret), status=403)


def test_a_token_works_only_with_its_own_user_name(testapp, components, ada):
    _, secret = make_token(components, "ada", "push")
    testapp.get("/v2/", headers=basic("bob", secret), status=401)


@pytest.mark.parametrize("ending", ["expired", "revoked", "disabled"])
def test_an_ended_token_is_unauthenticated(testapp, components, ada, clock, ending):
    token_id, secret = make_token(components, "ada", "push", days=1)
    testapp.get("/v2/", headers=basic("ada", secret), status=200)
    if ending == "expired":
        clock.advance(days=1)
    elif ending == "revoked":
        revoke(components, "ada", token_id)
    else:
        disable(components, "ada")
    testapp.get("/v2/", headers=basic("ada", secret), status=401)
    testapp.get("/v2/token", headers=basic("ada", secret), status=401)


def test_the_token_endpoint_grants_only_the_intersection(testapp, components, ada):
    _, secret = make_token(components, "ada", "pull", namespaces=("ada",))
    _, claims = token_claims(
        testapp, "ada", secret, "repository:ada/app:pull,push", "repository:bob/app:pull", "repository:free/x:push"
    )
    assert claims["access"] == [{"type": "repository", "name": "ada/app", "actions": ["pull"]}]


def test_the_oauth_password_grant_takes_the_token_and_its_bearer_tokens_end_with_it(testapp, components, ada):
    token_id, secret = make_token(components, "ada", "push", namespaces=("ada",))
    service = testapp.get("/v2/", status=401).headers["WWW-Authenticate"].split('service="')[1].split('"')[0]
    form = {
        "grant_type": "password",
        "username": "ada",
        "password": secret,
        "service": service,
        "client_id": "docker",
        "access_type": "offline",
        "scope": "repository:ada/app:pull,push,delete repository:bob/app:pull",
    }
    body = testapp.post("/v2/token", form, status=200).json
    assert body["scope"] == "repository:ada/app:pull,push"
    push_blob(testapp, bearer(body["access_token"]), "ada/app", b"with a bearer token")
    refreshed = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"], "service": service}
    again = testapp.post("/v2/token", {**refreshed, "scope": "repository:bob/app:pull"}, status=200).json
    assert again["scope"] == ""
    revoke(components, "ada", token_id)
    testapp.get("/v2/ada/app/tags/list", headers=bearer(body["access_token"]), status=401)
    testapp.post("/v2/token", refreshed, status=401)


def test_a_password_that_only_looks_like_a_token_is_still_a_password(testapp, make_user):
    make_user("carol", "stv_my very own password")
    testapp.get("/v2/", headers=basic("carol", "stv_my very own password"), status=200)
