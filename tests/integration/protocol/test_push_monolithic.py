"""Monolithic blob pushes: POST then PUT, and the single POST (distribution-spec "Pushing a blob monolithically")."""

from tests.integration.protocol.helpers import digest, error_codes, path_of, upload_id, with_query

OCTETS = "application/octet-stream"


def test_post_then_put_creates_the_blob(testapp, auth):
    data = b"monolithic blob" * 64
    blob = digest(data)
    start = testapp.post("/v2/mono/post-put/blobs/uploads/", headers=auth, status=202)
    assert start.headers["Location"]
    assert start.headers.get("Docker-Upload-UUID") == upload_id(start.headers["Location"])
    done = testapp.put(
        with_query(start.headers["Location"], digest=blob), params=data, headers=auth, content_type=OCTETS, status=201
    )
    assert done.headers["Docker-Content-Digest"] == blob
    pulled = testapp.get(path_of(done.headers["Location"]), headers=auth, status=200)
    assert pulled.body == data


def test_each_post_opens_a_distinct_upload(testapp, auth):
    first = testapp.post("/v2/mono/distinct/blobs/uploads/", headers=auth, status=202)
    second = testapp.post("/v2/mono/distinct/blobs/uploads/", headers=auth, status=202)
    assert upload_id(first.headers["Location"]) != upload_id(second.headers["Location"])


def test_single_post_with_digest_and_body_creates_the_blob(testapp, auth):
    data = b"one request is enough" * 10
    blob = digest(data)
    done = testapp.post(
        f"/v2/mono/single-post/blobs/uploads/?digest={blob}", params=data, headers=auth, content_type=OCTETS, status=201
    )
    assert done.headers["Docker-Content-Digest"] == blob
    assert testapp.get(path_of(done.headers["Location"]), headers=auth, status=200).body == data
    assert testapp.get(f"/v2/mono/single-post/blobs/{blob}", headers=auth, status=200).body == data


def test_single_post_with_wrong_digest_is_refused_and_stores_nothing(testapp, auth):
    data = b"the real content"
    claimed = digest(b"something else")
    response = testapp.post(
        f"/v2/mono/single-post-bad/blobs/uploads/?digest={claimed}",
        params=data,
        headers=auth,
        content_type=OCTETS,
        status=400,
    )
    assert error_codes(response) == ["DIGEST_INVALID"]
    testapp.head(f"/v2/mono/single-post-bad/blobs/{claimed}", headers=auth, status=404)
    testapp.head(f"/v2/mono/single-post-bad/blobs/{digest(data)}", headers=auth, status=404)


def test_put_with_wrong_digest_is_digest_invalid_and_nothing_becomes_visible(testapp, auth):
    data = b"what was sent"
    claimed = digest(b"what was promised")
    start = testapp.post("/v2/mono/wrong-digest/blobs/uploads/", headers=auth, status=202)
    response = testapp.put(
        with_query(start.headers["Location"], digest=claimed),
        params=data,
        headers=auth,
        content_type=OCTETS,
        status=400,
    )
    assert error_codes(response) == ["DIGEST_INVALID"]
    testapp.head(f"/v2/mono/wrong-digest/blobs/{claimed}", headers=auth, status=404)
    testapp.head(f"/v2/mono/wrong-digest/blobs/{digest(data)}", headers=auth, status=404)


def test_put_without_digest_is_refused(testapp, auth):
    start = testapp.post("/v2/mono/no-digest/blobs/uploads/", headers=auth, status=202)
    response = testapp.put(
        path_of(start.headers["Location"]), params=b"x", headers=auth, content_type=OCTETS, status="*"
    )
    assert response.status_int in (400, 404)
    assert response.json["errors"][0]["code"] in ("DIGEST_INVALID", "BLOB_UPLOAD_INVALID", "UNSUPPORTED")


def test_put_with_a_malformed_digest_is_digest_invalid(testapp, auth):
    start = testapp.post("/v2/mono/bad-digest/blobs/uploads/", headers=auth, status=202)
    response = testapp.put(
        with_query(start.headers["Location"], digest="sha256:nothex"),
        params=b"x",
        headers=auth,
        content_type=OCTETS,
        status=400,
    )
    assert error_codes(response) == ["DIGEST_INVALID"]


def test_pushing_an_existing_blob_again_is_fine(testapp, auth):
    data = b"pushed twice"
    for _ in range(2):
        start = testapp.post("/v2/mono/twice/blobs/uploads/", headers=auth, status=202)
        done = testapp.put(
            with_query(start.headers["Location"], digest=digest(data)),
            params=data,
            headers=auth,
            content_type=OCTETS,
            status=201,
        )
        assert done.headers["Docker-Content-Digest"] == digest(data)
    assert testapp.get(f"/v2/mono/twice/blobs/{digest(data)}", headers=auth).body == data


def test_empty_blob_can_be_pushed(testapp, auth):
    blob = digest(b"")
    start = testapp.post("/v2/mono/empty/blobs/uploads/", headers=auth, status=202)
    testapp.put(with_query(start.headers["Location"], digest=blob), params=b"", headers=auth, status=201)
    response = testapp.head(f"/v2/mono/empty/blobs/{blob}", headers=auth, status=200)
    assert response.headers["Content-Length"] == "0"


def test_completed_upload_is_gone(testapp, auth):
    data = b"finished"
    start = testapp.post("/v2/mono/finished/blobs/uploads/", headers=auth, status=202)
    location = start.headers["Location"]
    testapp.put(with_query(location, digest=digest(data)), params=data, headers=auth, content_type=OCTETS, status=201)
    response = testapp.get(path_of(location), headers=auth, status=404)
    assert error_codes(response) == ["BLOB_UPLOAD_UNKNOWN"]


def test_sha512_upload_with_digest_algorithm(testapp, auth):
    data = b"hashed the long way" * 20
    blob = digest(data, "sha512")
    start = testapp.post("/v2/mono/sha512/blobs/uploads/?digest-algorithm=sha512", headers=auth, status=202)
    done = testapp.put(
        with_query(start.headers["Location"], digest=blob), params=data, headers=auth, content_type=OCTETS, status=201
    )
    assert done.headers["Docker-Content-Digest"] == blob
    response = testapp.get(f"/v2/mono/sha512/blobs/{blob}", headers=auth, status=200)
    assert response.body == data
    assert response.headers["Docker-Content-Digest"] == blob


def test_unknown_digest_algorithm_for_upload_is_refused(testapp, auth):
    response = testapp.post("/v2/mono/md5/blobs/uploads/?digest-algorithm=md5", headers=auth, status=400)
    assert error_codes(response)[0] in ("DIGEST_INVALID", "UNSUPPORTED")
