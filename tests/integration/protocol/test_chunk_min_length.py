"""OCI-Chunk-Min-Length (distribution-spec, "Pushing a blob in chunks"): sent only when the store has a minimum chunk.
The folder store has none, so its uploads do not send it, and its pulls stream (no redirect). S3's side is in
tests/integration/s3/test_s3_pulls.py."""

from tests.integration.protocol.helpers import path_of, push_blob


def test_the_folder_store_advertises_no_minimum_chunk(testapp, auth):
    start = testapp.post("/v2/chunks/folder/blobs/uploads/", headers={**auth, "Content-Length": "0"}, status=202)
    assert "OCI-Chunk-Min-Length" not in start.headers
    patched = testapp.request(
        path_of(start.headers["Location"]),
        method="PATCH",
        body=b"a small chunk",
        headers={**auth, "Content-Type": "application/octet-stream", "Content-Range": "0-12"},
        status=202,
    )
    assert patched.headers["Range"] == "0-12"
    assert "OCI-Chunk-Min-Length" not in patched.headers


def test_the_folder_store_streams_pulls_itself(testapp, auth):
    blob = push_blob(testapp, auth, "chunks/pulled", b"layer bytes" * 100)
    pulled = testapp.get(f"/v2/chunks/pulled/blobs/{blob}", headers=auth, status=200)
    assert pulled.body == b"layer bytes" * 100
    assert "Location" not in pulled.headers
