"""Chunked and streamed blob pushes, upload status and cancel (distribution-spec "Pushing a blob in chunks")."""

from tests.integration.protocol.helpers import basic, digest, error_codes, path_of, upload_id, with_query

OCTETS = "application/octet-stream"


def start(testapp, auth, repo):
    response = testapp.post(f"/v2/{repo}/blobs/uploads/", headers={**auth, "Content-Length": "0"}, status=202)
    return response.headers["Location"]


def patch(testapp, auth, location, chunk, content_range=None, status=202):
    headers = {**auth, "Content-Type": OCTETS}
    if content_range is not None:
        headers["Content-Range"] = content_range
    return testapp.request(path_of(location), method="PATCH", body=chunk, headers=headers, status=status)


def test_chunks_in_order_then_put_creates_the_blob(testapp, auth):
    data = bytes(range(256)) * 3
    first, second, third = data[:300], data[300:600], data[600:]
    location = start(testapp, auth, "chunked/in-order")
    uuid = upload_id(location)

    response = patch(testapp, auth, location, first, "0-299")
    assert response.headers["Range"] == "0-299"
    assert response.headers["Location"]
    assert response.headers.get("Docker-Upload-UUID") == uuid
    response = patch(testapp, auth, response.headers["Location"], second, "300-599")
    assert response.headers["Range"] == "0-599"
    response = patch(testapp, auth, response.headers["Location"], third, f"600-{len(data) - 1}")
    assert response.headers["Range"] == f"0-{len(data) - 1}"

    done = testapp.put(with_query(response.headers["Location"], digest=digest(data)), headers=auth, status=201)
    assert done.headers["Docker-Content-Digest"] == digest(data)
    assert testapp.get(path_of(done.headers["Location"]), headers=auth, status=200).body == data


def test_final_chunk_may_come_with_the_closing_put(testapp, auth):
    data = b"abcdefghij" * 10
    location = start(testapp, auth, "chunked/final-in-put")
    response = patch(testapp, auth, location, data[:60], "0-59")
    done = testapp.put(
        with_query(response.headers["Location"], digest=digest(data)),
        params=data[60:],
        headers={**auth, "Content-Range": f"60-{len(data) - 1}"},
        content_type=OCTETS,
        status=201,
    )
    assert done.headers["Docker-Content-Digest"] == digest(data)
    assert testapp.get(f"/v2/chunked/final-in-put/blobs/{digest(data)}", headers=auth).body == data


def test_out_of_order_chunk_is_416_and_the_upload_stays_usable(testapp, auth):
    data = b"0123456789" * 3
    location = start(testapp, auth, "chunked/out-of-order")
    location = patch(testapp, auth, location, data[:10], "0-9").headers["Location"]

    patch(testapp, auth, location, data[20:], "20-29", status=416)
    patch(testapp, auth, location, data[:10], "0-9", status=416)  # a repeat of what it has is out of order too

    status = testapp.get(path_of(location), headers=auth, status=204)
    assert status.headers["Range"] == "0-9"
    location = status.headers["Location"]
    location = patch(testapp, auth, location, data[10:], "10-29").headers["Location"]
    testapp.put(with_query(location, digest=digest(data)), headers=auth, status=201)
    assert testapp.get(f"/v2/chunked/out-of-order/blobs/{digest(data)}", headers=auth).body == data


def test_first_chunk_must_start_at_zero(testapp, auth):
    location = start(testapp, auth, "chunked/not-zero")
    patch(testapp, auth, location, b"abcde", "5-9", status=416)
    testapp.get(path_of(location), headers=auth, status=204)


def test_content_range_that_disagrees_with_the_body_is_refused(testapp, auth):
    location = start(testapp, auth, "chunked/bad-length")
    response = patch(testapp, auth, location, b"abcde", "0-9", status="*")
    assert response.status_int in (400, 416)


def test_streamed_patches_without_content_range_append(testapp, auth):
    data = b"streamed bytes " * 40
    location = start(testapp, auth, "chunked/streamed")
    response = patch(testapp, auth, location, data[:200])
    assert response.headers["Range"] == "0-199"
    response = patch(testapp, auth, response.headers["Location"], data[200:])
    assert response.headers["Range"] == f"0-{len(data) - 1}"
    testapp.put(with_query(response.headers["Location"], digest=digest(data)), headers=auth, status=201)
    assert testapp.get(f"/v2/chunked/streamed/blobs/{digest(data)}", headers=auth).body == data


def test_upload_status_is_204_with_range_and_location(testapp, auth):
    location = start(testapp, auth, "chunked/status")
    location = patch(testapp, auth, location, b"x" * 42, "0-41").headers["Location"]
    response = testapp.get(path_of(location), headers=auth, status=204)
    assert response.headers["Range"] == "0-41"
    assert response.headers["Location"]
    assert response.headers.get("Docker-Upload-UUID") == upload_id(location)
    assert response.body == b""


def test_cancelled_upload_is_blob_upload_unknown(testapp, auth):
    location = start(testapp, auth, "chunked/cancel")
    location = patch(testapp, auth, location, b"doomed", "0-5").headers["Location"]
    testapp.delete(path_of(location), headers=auth, status=204)
    for response in (
        testapp.get(path_of(location), headers=auth, status=404),
        patch(testapp, auth, location, b"more", "6-9", status=404),
        testapp.put(with_query(location, digest=digest(b"doomed")), headers=auth, status=404),
        testapp.delete(path_of(location), headers=auth, status=404),
    ):
        assert error_codes(response) == ["BLOB_UPLOAD_UNKNOWN"]
    testapp.head(f"/v2/chunked/cancel/blobs/{digest(b'doomed')}", headers=auth, status=404)


def test_unknown_upload_id_is_blob_upload_unknown(testapp, auth):
    start(testapp, auth, "chunked/unknown-id")
    path = "/v2/chunked/unknown-id/blobs/uploads/00000000-0000-0000-0000-000000000000"
    assert error_codes(testapp.get(path, headers=auth, status=404)) == ["BLOB_UPLOAD_UNKNOWN"]
    assert error_codes(patch(testapp, auth, path, b"x", "0-0", status=404)) == ["BLOB_UPLOAD_UNKNOWN"]


def test_upload_belongs_to_its_caller(testapp, auth, make_user):
    make_user("bob", "bobs own password", admin=True)  # who may push into alice's repository: still not her upload
    bob = basic("bob", "bobs own password")
    data = b"alice's bytes"
    location = start(testapp, auth, "chunked/owner")
    location = patch(testapp, auth, location, data[:5], "0-4").headers["Location"]

    for response in (
        testapp.get(path_of(location), headers=bob, status=404),
        patch(testapp, bob, location, data[5:], f"5-{len(data) - 1}", status=404),
        testapp.put(with_query(location, digest=digest(data[:5])), headers=bob, status=404),
        testapp.delete(path_of(location), headers=bob, status=404),
    ):
        assert error_codes(response) == ["BLOB_UPLOAD_UNKNOWN"]

    # Untouched by bob's attempts: alice carries on.
    assert testapp.get(path_of(location), headers=auth, status=204).headers["Range"] == "0-4"
    location = patch(testapp, auth, location, data[5:], f"5-{len(data) - 1}").headers["Location"]
    testapp.put(with_query(location, digest=digest(data)), headers=auth, status=201)


def test_upload_belongs_to_its_repository(testapp, auth):
    data = b"only for here"
    location = start(testapp, auth, "chunked/home")
    location = patch(testapp, auth, location, data, f"0-{len(data) - 1}").headers["Location"]
    home = path_of(location)
    elsewhere = home.replace("/v2/chunked/home/", "/v2/chunked/elsewhere/", 1)
    assert elsewhere != home

    for response in (
        testapp.get(elsewhere, headers=auth, status=404),
        patch(testapp, auth, elsewhere, b"more", f"{len(data)}-{len(data) + 3}", status=404),
        testapp.put(with_query(elsewhere, digest=digest(data)), headers=auth, status=404),
    ):
        assert error_codes(response) == ["BLOB_UPLOAD_UNKNOWN"]
    testapp.head(f"/v2/chunked/elsewhere/blobs/{digest(data)}", headers=auth, status=404)

    testapp.put(with_query(location, digest=digest(data)), headers=auth, status=201)
    testapp.head(f"/v2/chunked/home/blobs/{digest(data)}", headers=auth, status=200)


def test_sha512_chunked_upload(testapp, auth):
    data = b"long hash, chunked" * 30
    blob = digest(data, "sha512")
    location = testapp.post(
        "/v2/chunked/sha512/blobs/uploads/?digest-algorithm=sha512", headers=auth, status=202
    ).headers["Location"]
    location = patch(testapp, auth, location, data[:100], "0-99").headers["Location"]
    location = patch(testapp, auth, location, data[100:], f"100-{len(data) - 1}").headers["Location"]
    done = testapp.put(with_query(location, digest=blob), headers=auth, status=201)
    assert done.headers["Docker-Content-Digest"] == blob
    assert testapp.get(f"/v2/chunked/sha512/blobs/{blob}", headers=auth).body == data


def test_empty_answers_say_content_length_0_so_the_connection_stays_open(testapp, auth):
    """202 to the POST and the PATCH, 204 to a status query, 201 to the PUT: each says its body is empty. Without a
    Content-Length waitress ends an HTTP/1.1 answer by closing the connection, and docker opens a new one per chunk."""
    location = start(testapp, auth, "chunked/keep-alive")
    started = testapp.post("/v2/chunked/keep-alive/blobs/uploads/", headers=auth, status=202)
    patched = patch(testapp, auth, location, b"kept alive")
    status = testapp.get(path_of(patched.headers["Location"]), headers=auth, status=204)
    done = testapp.put(with_query(patched.headers["Location"], digest=digest(b"kept alive")), headers=auth, status=201)
    for response in (started, patched, status, done):
        assert response.headers.get("Content-Length") == "0", (response.status, response.headers)
