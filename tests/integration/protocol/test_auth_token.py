"""The token flow docker, podman and friends follow after a 401 (distribution docs/spec/auth/token.md, oauth.md,
scope.md)."""

import base64
from datetime import datetime
from urllib.parse import urlencode

import pytest

from tests.integration.protocol.helpers import (
    ACCEPT_ALL,
    basic,
    bearer,
    digest,
    parse_challenge,
    push_blob,
    push_image,
)


@pytest.fixture
def service(testapp):
    """The service name, as a client learns it: from the challenge of an anonymous request."""
    challenge = testapp.get("/v2/", status=401).headers["WWW-Authenticate"]
    return parse_challenge(challenge)[1]["service"]


def get_token(testapp, credentials, service, *scopes, status=200, **extra):
    query = urlencode([("service", service), *(("scope", s) for s in scopes), *extra.items()])
    return testapp.get(f"/v2/token?{query}", headers=credentials, status=status)


def token_of(testapp, credentials, service, *scopes):
    return get_token(testapp, credentials, service, *scopes).json["token"]


def test_token_response_has_the_documented_fields(testapp, user, service):
    response = get_token(testapp, basic(*user), service, "repository:tok/fields:pull,push")
    body = response.json
    assert body["token"]
    assert body.get("access_token", body["token"]) == body["token"]
    assert int(body.get("expires_in", 60)) >= 60
    issued = datetime.fromisoformat(body["issued_at"].replace("Z", "+00:00"))
    assert issued.tzinfo is not None
    assert "refresh_token" not in body


def test_token_pushes_and_pulls_on_its_repository(testapp, user, service):
    token = bearer(token_of(testapp, basic(*user), service, "repository:tok/foo:pull,push"))
    image = push_image(testapp, token, "tok/foo", "v1")
    response = testapp.get("/v2/tok/foo/manifests/v1", headers={**token, "Accept": ACCEPT_ALL}, status=200)
    assert response.body == image.body
    assert testapp.get(f"/v2/tok/foo/blobs/{digest(image.blobs[1])}", headers=token).body == image.blobs[1]
    assert testapp.get("/v2/tok/foo/tags/list", headers=token).json["tags"] == ["v1"]


def test_token_for_one_repository_is_refused_on_another(testapp, user, service):
    push_image(testapp, basic(*user), "tok/bar", "v1")
    token = bearer(token_of(testapp, basic(*user), service, "repository:tok/foo:pull,push"))
    for response in (
        testapp.get("/v2/tok/bar/manifests/v1", headers=token, status=401),
        testapp.get("/v2/tok/bar/tags/list", headers=token, status=401),
        testapp.post("/v2/tok/bar/blobs/uploads/", headers=token, status=401),
    ):
        scheme, params = parse_challenge(response.headers["WWW-Authenticate"])
        assert scheme == "Bearer"
        assert params["scope"].startswith("repository:tok/bar:")
        assert params["error"] == "insufficient_scope"
        assert params["realm"].endswith("/v2/token")


def test_pull_only_token_cannot_push_or_delete(testapp, user, service):
    image = push_image(testapp, basic(*user), "tok/read-only", "v1")
    token = bearer(token_of(testapp, basic(*user), service, "repository:tok/read-only:pull"))
    testapp.get("/v2/tok/read-only/manifests/v1", headers=token, status=200)
    push = testapp.post("/v2/tok/read-only/blobs/uploads/", headers=token, status=401)
    assert "push" in parse_challenge(push.headers["WWW-Authenticate"])[1]["scope"]
    delete = testapp.delete(f"/v2/tok/read-only/manifests/{image.digest}", headers=token, status=401)
    assert "delete" in parse_challenge(delete.headers["WWW-Authenticate"])[1]["scope"]
    testapp.get("/v2/tok/read-only/manifests/v1", headers=basic(*user), status=200)


def test_several_scopes_in_one_token(testapp, user, service):
    token = bearer(token_of(testapp, basic(*user), service, "repository:tok/one:push,pull", "repository:tok/two:pull"))
    push_image(testapp, token, "tok/one", "v1", layer_count=1)
    push_image(testapp, basic(*user), "tok/two", "v1", layer_count=1)
    testapp.get("/v2/tok/two/tags/list", headers=token, status=200)
    testapp.post("/v2/tok/two/blobs/uploads/", headers=token, status=401)


def test_offline_token_gives_a_refresh_token_that_gets_new_tokens(testapp, user, service):
    scope = "repository:tok/refresh:pull,push"
    first = get_token(testapp, basic(*user), service, scope, offline_token="true", client_id="tests").json
    assert first["refresh_token"]
    response = testapp.post(
        "/v2/token",
        params={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "service": service,
            "scope": scope,
            "client_id": "tests",
        },
        status=200,
    )
    body = response.json
    assert body["access_token"]
    assert int(body.get("expires_in", 60)) >= 60
    push_image(testapp, bearer(body["access_token"]), "tok/refresh", "v1", layer_count=1)


def test_refresh_token_is_not_an_access_token(testapp, user, service):
    scope = "repository:tok/not-access:pull,push"
    refresh = get_token(testapp, basic(*user), service, scope, offline_token="true", client_id="t").json
    testapp.get("/v2/tok/not-access/tags/list", headers=bearer(refresh["refresh_token"]), status=401)


def test_password_grant(testapp, user, service):
    response = testapp.post(
        "/v2/token",
        params={
            "grant_type": "password",
            "username": user[0],
            "password": user[1],
            "service": service,
            "scope": "repository:tok/password:pull,push",
            "client_id": "tests",
        },
        status=200,
    )
    token = response.json["access_token"]
    push_image(testapp, bearer(token), "tok/password", "v1", layer_count=1)


def test_password_grant_with_wrong_password_is_refused(testapp, user, service):
    response = testapp.post(
        "/v2/token",
        params={
            "grant_type": "password",
            "username": user[0],
            "password": "not it",
            "service": service,
            "scope": "repository:tok/password:pull",
            "client_id": "tests",
        },
        status="*",
    )
    assert response.status_int in (400, 401)
    assert "access_token" not in response.text


def test_wrong_password_gets_no_token(testapp, user, service):
    response = get_token(testapp, basic(user[0], "wrong"), service, "repository:tok/x:pull", status=401)
    assert "token" not in (response.json if response.content_type == "application/json" else {})


def test_garbage_and_forged_tokens_are_401(testapp, user, service):
    push_image(testapp, basic(*user), "tok/forged", "v1", layer_count=1)
    genuine = token_of(testapp, basic(*user), service, "repository:tok/forged:pull")
    flipped = genuine[:-2] + ("AA" if genuine[-2:] != "AA" else "BB")
    signature = genuine.rsplit(".", 1)[-1]
    widened = base64.urlsafe_b64encode(b'{"access":[{"type":"repository","name":"*","actions":["*"]}]}').decode()
    for token in ("garbage", "a.b", "a.b.c", flipped, f"{widened}.{signature}", ""):
        response = testapp.get("/v2/tok/forged/tags/list", headers=bearer(token), status=401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    testapp.get("/v2/tok/forged/tags/list", headers=bearer(genuine), status=200)


def test_catalog_needs_the_registry_catalog_scope(testapp, user, service):
    # docs/spec/auth/scope.md: `registry:catalog:*` is the whole grant for GET /v2/_catalog; clients (crane, regctl,
    # docker registry tooling) ask for that scope alone, so such a token must list what the account may see.
    push_image(testapp, basic(*user), "tok/listed", "v1", layer_count=1)
    without = bearer(token_of(testapp, basic(*user), service, "repository:tok/listed:pull"))
    response = testapp.get("/v2/_catalog", headers=without, status=401)
    assert parse_challenge(response.headers["WWW-Authenticate"])[1]["scope"] == "registry:catalog:*"
    with_scope = bearer(token_of(testapp, basic(*user), service, "registry:catalog:*"))
    assert testapp.get("/v2/_catalog", headers=with_scope, status=200).json["repositories"] == ["tok/listed"]


def test_mount_with_pull_on_source_and_push_on_target(testapp, user, service):
    blob = push_blob(testapp, basic(*user), "tok/mount-src", b"mount me")
    token = bearer(
        token_of(testapp, basic(*user), service, "repository:tok/mount-dst:pull,push", "repository:tok/mount-src:pull")
    )
    response = testapp.post(
        f"/v2/tok/mount-dst/blobs/uploads/?mount={blob}&from=tok/mount-src", headers=token, status=201
    )
    assert response.headers["Docker-Content-Digest"] == blob
    testapp.head(f"/v2/tok/mount-dst/blobs/{blob}", headers=token, status=200)


def test_mount_without_pull_on_source_does_not_mount(testapp, user, service):
    blob = push_blob(testapp, basic(*user), "tok/guarded", b"guarded bytes")
    token = bearer(token_of(testapp, basic(*user), service, "repository:tok/thief:pull,push"))
    # The account may pull the source, so the client is asked to come back with a token for both repositories.
    response = testapp.post(f"/v2/tok/thief/blobs/uploads/?mount={blob}&from=tok/guarded", headers=token, status=401)
    scope = parse_challenge(response.headers["WWW-Authenticate"])[1]["scope"]
    assert scope.split() == ["repository:tok/thief:pull,push", "repository:tok/guarded:pull"]
    testapp.head(f"/v2/tok/thief/blobs/{blob}", headers=basic(*user), status=404)


def test_token_without_any_scope_still_reaches_the_version_check(testapp, user, service):
    token = bearer(token_of(testapp, basic(*user), service))
    testapp.get("/v2/", headers=token, status=200)
    testapp.get("/v2/tok/foo/tags/list", headers=token, status=401)


def test_token_scope_names_one_repository_exactly(testapp, user, service):
    for name in ("tok/exact/sub", "tok/exac", "tok/exactly"):
        push_image(testapp, basic(*user), name, "v1", layer_count=1)
    token = bearer(token_of(testapp, basic(*user), service, "repository:tok/exact:pull,push"))
    for name in ("tok/exact/sub", "tok/exac", "tok/exactly"):
        testapp.get(f"/v2/{name}/tags/list", headers=token, status=401)
        testapp.post(f"/v2/{name}/blobs/uploads/", headers=token, status=401)
    testapp.post("/v2/tok/exact/blobs/uploads/", headers=token, status=202)
