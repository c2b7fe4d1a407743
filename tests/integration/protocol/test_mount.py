"""Cross-repository blob mounts: POST ?mount=<digest>&from=<repo> (distribution-spec "Mounting a blob")."""

from tests.integration.protocol.helpers import digest, path_of, push_blob, upload_id, with_query


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
