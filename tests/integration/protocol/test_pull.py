"""Pulling: manifests and blobs by GET and HEAD, and range requests (distribution-spec "Pull")."""

from tests.integration.protocol.helpers import (
    ACCEPT_ALL,
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    digest,
    error_codes,
    push_blob,
    push_image,
)


def test_get_manifest_by_tag_returns_the_pushed_bytes_and_headers(testapp, auth):
    image = push_image(testapp, auth, "pull/by-tag", "v1")
    response = testapp.get("/v2/pull/by-tag/manifests/v1", headers={**auth, "Accept": ACCEPT_ALL}, status=200)
    assert response.body == image.body
    assert response.headers["Content-Type"].split(";")[0] == OCI_MANIFEST
    assert response.headers["Docker-Content-Digest"] == image.digest
    assert int(response.headers["Content-Length"]) == len(image.body)


def test_get_manifest_by_digest_returns_the_pushed_bytes(testapp, auth):
    image = push_image(testapp, auth, "pull/by-digest", "v1")
    response = testapp.get(
        f"/v2/pull/by-digest/manifests/{image.digest}", headers={**auth, "Accept": ACCEPT_ALL}, status=200
    )
    assert response.body == image.body
    assert digest(response.body) == image.digest
    assert response.headers["Docker-Content-Digest"] == image.digest
    assert response.headers["Content-Type"].split(";")[0] == OCI_MANIFEST


def test_docker_manifest_comes_back_with_the_docker_content_type(testapp, auth):
    image = push_image(testapp, auth, "pull/docker", "v1", docker=True)
    response = testapp.get("/v2/pull/docker/manifests/v1", headers={**auth, "Accept": ACCEPT_ALL}, status=200)
    assert response.headers["Content-Type"].split(";")[0] == DOCKER_MANIFEST
    assert response.body == image.body


def test_head_manifest_by_tag_and_digest_has_headers_and_no_body(testapp, auth):
    image = push_image(testapp, auth, "pull/head", "v1")
    for reference in ("v1", image.digest):
        response = testapp.head(
            f"/v2/pull/head/manifests/{reference}", headers={**auth, "Accept": ACCEPT_ALL}, status=200
        )
        assert response.body == b""
        assert response.headers["Docker-Content-Digest"] == image.digest
        assert int(response.headers["Content-Length"]) == len(image.body)
        assert response.headers["Content-Type"].split(";")[0] == OCI_MANIFEST


def test_unknown_manifest_is_404_manifest_unknown(testapp, auth):
    push_image(testapp, auth, "pull/unknown-manifest", "v1")
    for reference in ("nope", digest(b"never pushed")):
        response = testapp.get(f"/v2/pull/unknown-manifest/manifests/{reference}", headers=auth, status=404)
        assert error_codes(response) == ["MANIFEST_UNKNOWN"]
        head = testapp.head(f"/v2/pull/unknown-manifest/manifests/{reference}", headers=auth, status=404)
        assert head.body == b""


# Neither a valid tag nor a valid digest: nothing can be named so, so a pull finds nothing (as CNCF Distribution
# answers), while a push is told why the reference is refused (tests/integration/protocol/test_errors.py).
NO_SUCH_REFERENCES = (
    ".INVALID_MANIFEST_NAME",
    "-lead",
    "t" * 129,
    "sha256:zzz",
    "sha256:short",
    "md5:" + "0" * 32,
    "sha256:" + "A" * 64,
    "a%2Fb",
    "x%0Ay",
)


def test_a_reference_that_is_neither_tag_nor_digest_is_manifest_unknown(testapp, auth):
    push_image(testapp, auth, "pull/bad-reference", "v1", layer_count=1)
    for reference in NO_SUCH_REFERENCES:
        url = f"/v2/pull/bad-reference/manifests/{reference}"
        assert error_codes(testapp.get(url, headers=auth, status=404)) == ["MANIFEST_UNKNOWN"], reference
        assert testapp.head(url, headers=auth, status=404).body == b"", reference
    assert testapp.get("/v2/pull/bad-reference/manifests/v1", headers=auth, status=200)


def test_manifest_of_an_unknown_repository_is_404(testapp, auth):
    response = testapp.get("/v2/pull/never-pushed/manifests/latest", headers=auth, status=404)
    assert error_codes(response)[0] in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN")


def test_get_blob_returns_its_bytes_and_digest(testapp, auth):
    data = b"some blob bytes " * 100
    blob = push_blob(testapp, auth, "pull/blob", data)
    response = testapp.get(f"/v2/pull/blob/blobs/{blob}", headers=auth, status=200)
    assert response.body == data
    assert response.headers["Docker-Content-Digest"] == blob
    assert int(response.headers["Content-Length"]) == len(data)


def test_head_blob_has_length_and_digest_and_no_body(testapp, auth):
    data = b"head me" * 10
    blob = push_blob(testapp, auth, "pull/head-blob", data)
    response = testapp.head(f"/v2/pull/head-blob/blobs/{blob}", headers=auth, status=200)
    assert response.body == b""
    assert int(response.headers["Content-Length"]) == len(data)
    assert response.headers["Docker-Content-Digest"] == blob


def test_unknown_blob_is_404_blob_unknown(testapp, auth):
    push_blob(testapp, auth, "pull/unknown-blob", b"something else")
    missing = digest(b"not here")
    response = testapp.get(f"/v2/pull/unknown-blob/blobs/{missing}", headers=auth, status=404)
    assert error_codes(response) == ["BLOB_UNKNOWN"]
    head = testapp.head(f"/v2/pull/unknown-blob/blobs/{missing}", headers=auth, status=404)
    assert head.body == b""


def test_blob_of_another_repository_is_not_served_here(testapp, auth):
    blob = push_blob(testapp, auth, "pull/owner", b"belongs to owner")
    push_blob(testapp, auth, "pull/stranger", b"stranger has its own")
    response = testapp.get(f"/v2/pull/stranger/blobs/{blob}", headers=auth, status=404)
    assert error_codes(response) == ["BLOB_UNKNOWN"]


def test_blob_range_request_is_206_with_content_range(testapp, auth):
    data = bytes(range(256)) * 4
    blob = push_blob(testapp, auth, "pull/range", data)
    response = testapp.get(f"/v2/pull/range/blobs/{blob}", headers={**auth, "Range": "bytes=10-19"}, status=206)
    assert response.body == data[10:20]
    assert response.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert int(response.headers["Content-Length"]) == 10


def test_blob_open_ended_and_suffix_ranges(testapp, auth):
    data = b"0123456789abcdefghij"
    blob = push_blob(testapp, auth, "pull/range-forms", data)
    tail = testapp.get(f"/v2/pull/range-forms/blobs/{blob}", headers={**auth, "Range": "bytes=15-"}, status=206)
    assert tail.body == data[15:]
    assert tail.headers["Content-Range"] == f"bytes 15-19/{len(data)}"
    suffix = testapp.get(f"/v2/pull/range-forms/blobs/{blob}", headers={**auth, "Range": "bytes=-4"}, status=206)
    assert suffix.body == data[-4:]
    assert suffix.headers["Content-Range"] == f"bytes 16-19/{len(data)}"


def test_unsatisfiable_blob_range_is_416(testapp, auth):
    data = b"short blob"
    blob = push_blob(testapp, auth, "pull/range-416", data)
    response = testapp.get(
        f"/v2/pull/range-416/blobs/{blob}", headers={**auth, "Range": f"bytes={len(data) + 5}-"}, status=416
    )
    assert response.headers.get("Content-Range", f"bytes */{len(data)}") == f"bytes */{len(data)}"


MALFORMED_DIGESTS = (
    "sha256:short",
    "md5:abc",
    "md5:" + "0" * 32,
    "nocolon",
    "sha256:",
    ":" + "a" * 64,
    "sha256:" + "a" * 5000,
    "sha256:" + "g" * 64,
    "sha256:%E2%82%AC" + "a" * 61,
    "%E2%82%AC",
    "sha256:a%00b",
)


def test_a_malformed_blob_digest_is_400_digest_invalid_never_a_5xx(testapp, auth):
    push_blob(testapp, auth, "pull/bad-digest", b"present")
    for bad in MALFORMED_DIGESTS:
        url = f"/v2/pull/bad-digest/blobs/{bad}"
        assert error_codes(testapp.get(url, headers=auth, status=400)) == ["DIGEST_INVALID"], bad
        assert testapp.head(url, headers=auth, status=400).body == b"", bad
    # Not UTF-8 at all: refused before any view, still a 400 with a code from the spec's table.
    response = testapp.get("/v2/pull/bad-digest/blobs/sha256:%ff", headers=auth, status=400)
    assert error_codes(response)[0] in ("DIGEST_INVALID", "NAME_INVALID")
