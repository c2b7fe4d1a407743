"""Cross-repository blob mounts: POST ?mount=<digest>&from=<repo> (distribution-spec "Mounting a blob"), with
Basic credentials and through the token flow, and POST ?mount=<digest> alone (the registry picks the source)."""

from urllib.parse import quote, urlencode

import pytest

from stevedore.adapters.sql.tables import uploads
from stevedore.domain import access
from stevedore.domain.access import Action
from tests.integration.conftest import count_rows
from tests.integration.protocol.helpers import (
    basic,
    bearer,
    digest,
    error_codes,
    parse_challenge,
    path_of,
    push_blob,
    upload_id,
    with_query,
)


def test_mount_from_a_repository_that_has_the_blob_is_201(testapp, auth):
    data = b"shared layer" * 30
    blob = push_blob(testapp, auth, "mount/source", data)
    response = testapp.post(f"/v2/mount/target/blobs/uploads/?mount={blob}&from=mount/source", headers=auth, status=201)
    assert response.headers["Docker-Content-Digest"] == blob
    assert testapp.get(path_of(response.headers["Location"]), headers=auth, status=200).body == data
    head = testapp.head(f"/v2/mount/target/blobs/{blob}", headers=auth, status=200)
    assert int(head.headers["Content-Length"]) == len(data)


def test_mounted_blob_survives_deletion_in_the_source(testapp, auth):
    data = b"outlives its source"
    blob = push_blob(testapp, auth, "mount/first", data)
    testapp.post(f"/v2/mount/second/blobs/uploads/?mount={blob}&from=mount/first", headers=auth, status=201)
    testapp.delete(f"/v2/mount/first/blobs/{blob}", headers=auth, status=202)
    assert testapp.get(f"/v2/mount/second/blobs/{blob}", headers=auth, status=200).body == data


def test_mount_of_a_blob_the_source_lacks_opens_a_fresh_upload(testapp, auth):
    data = b"nobody has this yet"
    blob = digest(data)
    push_blob(testapp, auth, "mount/empty-source", b"something unrelated")
    response = testapp.post(
        f"/v2/mount/wants/blobs/uploads/?mount={blob}&from=mount/empty-source", headers=auth, status=202
    )
    location = response.headers["Location"]
    assert upload_id(location)
    testapp.head(f"/v2/mount/wants/blobs/{blob}", headers=auth, status=404)
    done = testapp.put(
        with_query(location, digest=blob),
        params=data,
        headers=auth,
        content_type="application/octet-stream",
        status=201,
    )
    assert done.headers["Docker-Content-Digest"] == blob


def test_mount_from_an_unknown_repository_opens_a_fresh_upload(testapp, auth):
    blob = digest(b"no such repo either")
    response = testapp.post(f"/v2/mount/dest/blobs/uploads/?mount={blob}&from=mount/nowhere", headers=auth, status=202)
    assert response.headers["Location"]
    testapp.head(f"/v2/mount/dest/blobs/{blob}", headers=auth, status=404)


# --- helpers -----------------------------------------------------------------------------------------------
@pytest.fixture
def service(testapp):
    """The service name, as a client learns it: from the challenge of an anonymous request."""
    return parse_challenge(testapp.get("/v2/", status=401).headers["WWW-Authenticate"])[1]["service"]


def token(testapp, user, service, *scopes):
    query = urlencode([("service", service), *(("scope", s) for s in scopes)])
    return bearer(testapp.get(f"/v2/token?{query}", headers=basic(*user), status=200).json["token"])


@pytest.fixture
def private(monkeypatch):
    """Make `mount/private` a repository the account may not pull (as the private model would, without a right)."""
    real_may = access.Access.may

    def may(self, account, action, repository, **options):
        if repository.value == "mount/private" and action == Action.PULL:
            return False
        return real_may(self, account, action, repository, **options)

    monkeypatch.setattr(access.Access, "may", may)
    return "mount/private"


def assert_fresh_upload(testapp, auth, response, target, blob):
    """A plain 202 with a new session: no challenge, no trace of a source, and the blob not in the target."""
    assert response.status_int == 202
    assert "WWW-Authenticate" not in response.headers
    assert "Docker-Content-Digest" not in response.headers
    assert upload_id(response.headers["Location"])
    assert response.headers["Range"] == "0-0"
    testapp.head(f"/v2/{target}/blobs/{blob}", headers=auth, status=404)


def visible_headers(response):
    """The headers a refused mount answers with, less the ones that differ from one session to the next."""
    varying = {"location", "docker-upload-uuid", "content-length", "date"}
    return sorted((k.lower(), v) for k, v in response.headers.items() if k.lower() not in varying), response.body


# --- mounts through the token flow -------------------------------------------------------------------------
def test_token_without_pull_on_the_source_is_challenged_for_both_scopes(testapp, auth, user, service, db):
    blob = push_blob(testapp, auth, "mount/tok-src", b"layer in the source")
    target_only = token(testapp, user, service, "repository:mount/tok-dst:pull,push")
    url = f"/v2/mount/tok-dst/blobs/uploads/?mount={blob}&from=mount/tok-src"
    challenged = testapp.post(url, headers=target_only, status=401)
    assert error_codes(challenged) == ["UNAUTHORIZED"]
    scheme, params = parse_challenge(challenged.headers["WWW-Authenticate"])
    assert scheme == "Bearer"
    assert params["realm"].endswith("/v2/token") and params["service"] == service
    assert params["scope"] == "repository:mount/tok-dst:pull,push repository:mount/tok-src:pull"
    assert params["error"] == "insufficient_scope"
    assert count_rows(db, uploads) == 0  # the challenge opened no session

    # What a client that follows challenges does: one token for every scope named, and the same request again.
    both = token(testapp, user, service, *params["scope"].split(" "))
    mounted = testapp.post(url, headers=both, status=201)
    assert mounted.headers["Docker-Content-Digest"] == blob
    assert testapp.get(path_of(mounted.headers["Location"]), headers=both).body == b"layer in the source"


def test_token_of_an_account_that_may_not_pull_the_source_gets_a_fresh_upload(testapp, auth, user, service, private):
    blob = push_blob(testapp, auth, "mount/tok-other", b"private layer")
    # Put the same bytes in the private repository by a mount from a repository the account may pull.
    testapp.post(f"/v2/{private}/blobs/uploads/?mount={blob}&from=mount/tok-other", headers=auth, status=201)
    testapp.delete(f"/v2/mount/tok-other/blobs/{blob}", headers=auth, status=202)

    target_only = token(testapp, user, service, "repository:mount/tok-thief:pull,push")
    from_private = testapp.post(
        f"/v2/mount/tok-thief/blobs/uploads/?mount={blob}&from={private}", headers=target_only, status=202
    )
    assert_fresh_upload(testapp, auth, from_private, "mount/tok-thief", blob)
    from_nowhere = testapp.post(
        f"/v2/mount/tok-thief/blobs/uploads/?mount={blob}&from=mount/nowhere-at-all", headers=target_only, status="*"
    )
    assert from_nowhere.status_int == 401  # may pull it: asked for a token (whether or not it holds the blob)
    assert visible_headers(from_private) == visible_headers(
        testapp.post(f"/v2/mount/tok-thief/blobs/uploads/?mount={digest(b'nothing')}", headers=target_only, status=202)
    )


@pytest.mark.parametrize(
    "source",
    ["mount/Upper", 'mount/a",error="none', "mount/a scope=x", "../etc", "mount//double", "x" * 300],
    ids=["uppercase", "quote", "space", "dots", "empty-component", "too-long"],
)
def test_token_with_an_invalid_source_name_gets_a_fresh_upload(testapp, auth, user, service, source):
    blob = push_blob(testapp, auth, "mount/tok-valid", b"valid source")
    target_only = token(testapp, user, service, "repository:mount/tok-dst2:pull,push")
    response = testapp.post(
        f"/v2/mount/tok-dst2/blobs/uploads/?mount={blob}&from={quote(source, safe='')}", headers=target_only, status=202
    )
    assert_fresh_upload(testapp, auth, response, "mount/tok-dst2", blob)


def test_basic_credentials_without_pull_on_the_source_get_a_fresh_upload(testapp, auth, private):
    response = testapp.post(
        f"/v2/mount/basic-dst/blobs/uploads/?mount={digest(b'x')}&from={private}", headers=auth, status=202
    )
    assert_fresh_upload(testapp, auth, response, "mount/basic-dst", digest(b"x"))


# --- mounts without `from` ---------------------------------------------------------------------------------
def test_mount_without_from_finds_a_repository_the_caller_may_pull(testapp, auth):
    data = b"anywhere will do"
    blob = push_blob(testapp, auth, "mount/somewhere", data)
    response = testapp.post(f"/v2/mount/anywhere/blobs/uploads/?mount={blob}", headers=auth, status=201)
    assert response.headers["Docker-Content-Digest"] == blob
    assert testapp.get(path_of(response.headers["Location"]), headers=auth, status=200).body == data


def test_mount_without_from_of_a_blob_the_target_holds_is_201(testapp, auth):
    blob = push_blob(testapp, auth, "mount/holder", b"already mine")
    response = testapp.post(f"/v2/mount/holder/blobs/uploads/?mount={blob}", headers=auth, status=201)
    assert response.headers["Docker-Content-Digest"] == blob


def test_mount_without_from_never_takes_a_blob_only_an_unpullable_repository_holds(testapp, auth, private):
    data = b"only in private"
    blob = push_blob(testapp, auth, "mount/staging", data)
    testapp.post(f"/v2/{private}/blobs/uploads/?mount={blob}&from=mount/staging", headers=auth, status=201)
    testapp.delete(f"/v2/mount/staging/blobs/{blob}", headers=auth, status=202)

    refused = testapp.post(f"/v2/mount/wanting/blobs/uploads/?mount={blob}", headers=auth, status=202)
    assert_fresh_upload(testapp, auth, refused, "mount/wanting", blob)
    nowhere = testapp.post(f"/v2/mount/wanting/blobs/uploads/?mount={digest(b'absent')}", headers=auth, status=202)
    assert visible_headers(refused) == visible_headers(nowhere)  # a blob held out of reach looks like no blob


def test_mount_without_from_with_a_token_only_considers_what_the_token_may_pull(testapp, auth, user, service):
    """The account may pull everywhere, but a token scoped to one repository must not reach the others' blobs."""
    data = b"held in tok-a"
    blob = push_blob(testapp, auth, "mount/tok-a", data)
    target_only = token(testapp, user, service, "repository:mount/tok-b:pull,push")
    refused = testapp.post(f"/v2/mount/tok-b/blobs/uploads/?mount={blob}", headers=target_only, status=202)
    assert_fresh_upload(testapp, auth, refused, "mount/tok-b", blob)

    with_source = token(testapp, user, service, "repository:mount/tok-b:pull,push", "repository:mount/tok-a:pull")
    mounted = testapp.post(f"/v2/mount/tok-b/blobs/uploads/?mount={blob}", headers=with_source, status=201)
    assert mounted.headers["Docker-Content-Digest"] == blob
    assert testapp.get(path_of(mounted.headers["Location"]), headers=with_source).body == data


def test_mount_with_an_invalid_digest_is_digest_invalid(testapp, auth):
    response = testapp.post("/v2/mount/bad/blobs/uploads/?mount=sha256:nothex", headers=auth, status=400)
    assert error_codes(response) == ["DIGEST_INVALID"]
