"""kill -9 of one of two nodes (PostgreSQL, moto_server S3 with 5 MiB parts) in the middle of a push: through the
other node nothing of the interrupted push is visible (the blob or the manifest and its tag are unknown, the catalog
and the tag list do not show it), the whole push redone through the other node succeeds and pulls back byte for byte
from both nodes once the killed one is started again, and `stevedore upload sweep --older-than 0` aborts what the
dead session left in the bucket (its state object and its multipart upload), after which `stevedore fsck` finds the
database and the bucket consistent.

The single-node twin, SQLite and the folder store, is tests/integration/durability/test_crashes.py."""

from __future__ import annotations

import contextlib
import json
import socket
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.integration.durability.helpers import MANIFEST_TYPE, Client, Image, MiB, push_image, sha256, wait_for
from tests.integration.scaleout.conftest import PASSWORD, USERNAME, Fleet, cli

pytestmark = [pytest.mark.scaleout, pytest.mark.s3, pytest.mark.postgres, pytest.mark.server]

A, B = 0, 1
OCTETS = {"Content-Type": "application/octet-stream"}


@pytest.fixture
def crash(fleet: Fleet) -> Iterator[Fleet]:
    """The fleet; node A is started again after the test should the test not have done it (the module's other tests
    need both nodes)."""
    yield fleet
    process = fleet.processes[A].process
    if process is None or process.poll() is not None:
        fleet.restart(A)


def client(fleet: Fleet, index: int) -> Client:
    return Client(fleet.nodes[index].host, USERNAME, PASSWORD)


def upload_id(upload: str) -> str:
    """The session id (the S3 keys') of an upload URL: the first part of its ticket."""
    return upload.split("?", 1)[0].rstrip("/").rsplit("/", 1)[1].split(".")[0]


def multipart_parts(fleet: Fleet, upload: str) -> list[int] | None:
    """The part numbers the bucket holds in the incomplete multipart upload(s) of `upload`'s data object, or None
    when it has none."""
    store = fleet.store()
    key = f"{store.prefix}objects/{upload_id(upload)}"
    found = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=key).get("Uploads", [])
    if not found:
        return None
    parts = []
    for item in found:
        listed = store.client.list_parts(Bucket=store.bucket, Key=key, UploadId=item["UploadId"])
        parts += [part["PartNumber"] for part in listed.get("Parts", [])]
    return sorted(parts)


def state_object(fleet: Fleet, upload: str) -> dict | None:
    """The upload's state object's metadata (see blobs_s3's docstring), or None when the bucket has none."""
    store = fleet.store()
    try:
        found = store.client.head_object(Bucket=store.bucket, Key=f"{store.prefix}uploads/{upload_id(upload)}")
    except store.client.exceptions.ClientError:
        return None
    return {**found["Metadata"], "tail": found["ContentLength"]}


def assert_nothing_visible(fleet: Fleet, repository: str, tag: str, image: Image, blobs: list[bytes]) -> None:
    """Through node B: the `blobs` (the one interrupted) are unknown, and so are the manifest and the tag, which
    neither the repository's tag list nor the catalog shows."""
    node_b = client(fleet, B)
    for data in blobs:
        status, _, _ = node_b.request("HEAD", f"/v2/{repository}/blobs/{sha256(data)}")
        assert status == 404
        status, _, body = node_b.request("GET", f"/v2/{repository}/blobs/{sha256(data)}")
        assert status == 404 and json.loads(body)["errors"][0]["code"] == "BLOB_UNKNOWN", (status, body)
    for reference in (tag, sha256(image.manifest)):
        status, _, body = node_b.request(
            "GET", f"/v2/{repository}/manifests/{reference}", headers={"Accept": MANIFEST_TYPE}
        )
        assert status == 404 and json.loads(body)["errors"][0]["code"] == "MANIFEST_UNKNOWN", (status, body)
    status, _, body = node_b.request("GET", f"/v2/{repository}/tags/list")
    assert status == 404 or tag not in (json.loads(body).get("tags") or []), (status, body)
    status, _, body = node_b.request("GET", "/v2/_catalog?n=1000")
    assert status == 200, body
    if repository in json.loads(body)["repositories"]:
        # A repository the interrupted push created may be listed, but without the tag.
        status, _, body = node_b.request("GET", f"/v2/{repository}/tags/list")
        assert tag not in (json.loads(body).get("tags") or []), body


def fetch_blob(node: Client, repository: str, digest: str) -> bytes:
    status, headers, body = node.request("GET", f"/v2/{repository}/blobs/{digest}")
    if status == 307:  # a presigned URL of the bucket, fetched without our credentials as clients do
        with urllib.request.urlopen(headers["Location"], timeout=60) as redirected:
            status, body = redirected.status, redirected.read()
    assert status == 200, (node.host, status, body[:300])
    return body


def assert_pulls(fleet: Fleet, index: int, repository: str, tag: str, image: Image) -> None:
    """The image pulls back byte for byte from node `index`: the manifest by tag, then every blob it names."""
    node = client(fleet, index)
    status, headers, body = node.request("GET", f"/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_TYPE})
    assert (status, body, headers["Docker-Content-Digest"]) == (200, image.manifest, sha256(image.manifest))
    for data in [image.config, *image.layers]:
        assert fetch_blob(node, repository, sha256(data)) == data


def fsck(fleet: Fleet) -> tuple[int, dict[str, int], str]:
    """`stevedore fsck`: its exit status, the count of each kind of finding, its verdict (the last line)."""
    result = cli(fleet.ini_path, fleet.env, "fsck")
    counts = {}
    for line in result.stdout.splitlines():
        label, _, number = line.rpartition(": ")
        if number.isdigit() and not line.startswith(" "):
            counts[label] = int(number)
    assert "missing objects (a row without bytes)" in counts, result.stdout + result.stderr
    return result.returncode, counts, result.stdout.strip().splitlines()[-1]


def assert_no_damage(counts: dict[str, int]) -> None:
    """Nothing a client could see: no row without bytes, no wrong size, no link to nothing."""
    for label in ("missing objects (a row without bytes)", "size mismatches", "dangling links"):
        assert counts[label] == 0, counts
    assert counts["manifests whose bytes have another digest"] == 0, counts


def retry_restart_sweep(fleet: Fleet, repository: str, tag: str, image: Image, dead_upload: str | None) -> str:
    """What follows every crash: the whole push redone through node B, the pull from B, node A started again and
    the pull from A, then the sweep of the dead session's leftovers and fsck. The sweep's output."""
    statuses = push_image(client(fleet, B), repository, tag, image)
    assert statuses and all(status == 201 for status in statuses), statuses
    assert_pulls(fleet, B, repository, tag, image)
    fleet.restart(A)
    assert_pulls(fleet, A, repository, tag, image)

    swept = cli(fleet.ini_path, fleet.env, "upload", "sweep", "--older-than", "0")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    if dead_upload is not None:
        assert swept.stdout.startswith("aborted "), swept.stdout
        assert not swept.stdout.startswith("aborted 0 "), swept.stdout  # the dead session among them
        assert state_object(fleet, dead_upload) is None
        assert multipart_parts(fleet, dead_upload) is None
    code, counts, verdict = fsck(fleet)
    assert (code, verdict) == (0, "consistent"), counts
    # The dead session's upload is gone for every node too.
    if dead_upload is not None:
        status, _, _ = client(fleet, B).request("GET", dead_upload)
        assert status == 404
    return swept.stdout


def test_a_kill_while_a_large_layer_streams_in_to_node_a(crash: Fleet) -> None:
    """12 MiB (two whole 5 MiB parts and a tail) as one PATCH to node A: 7 MiB of it sent, then A is killed."""
    fleet = crash
    repository, tag = "crash/streaming", "v1"
    image = Image.random("streaming", (12 * MiB,))
    layer = image.layers[0]
    node_a = client(fleet, A)
    upload = node_a.start_upload(repository)
    sock = node_a.send_slowly("PATCH", upload, len(layer), layer[: 7 * MiB])
    try:
        time.sleep(0.5)  # node A has read what was sent (sendall returned); 5 MiB are still to come
        fleet.kill(A)
    finally:
        sock.close()

    assert_nothing_visible(fleet, repository, tag, image, [layer])
    code, counts, _ = fsck(fleet)
    assert_no_damage(counts)
    # The session is still open in the database: its state object (nothing appended) is not a leftover yet.
    assert (code, counts["stale upload leftovers"]) == (0, 0), counts
    assert state_object(fleet, upload)["tail"] == 0
    retry_restart_sweep(fleet, repository, tag, image, upload)


def test_a_kill_while_node_a_writes_the_layer_into_s3_parts(crash: Fleet) -> None:
    """A PATCH of a 32 MiB layer (six 5 MiB parts and a tail) is under way: its first 12 MiB are sent, and the body
    streams to the app, which starts the multipart upload at the first whole part. Node A is killed as soon as the
    bucket shows it, with the rest of the body still unsent: the app is among its parts, the state object not yet
    written (it still says nothing was appended and names no multipart upload, which only the data object's key ties
    to the session)."""
    fleet = crash
    repository, tag = "crash/writing", "v1"
    image = Image.random("writing", (32 * MiB,))
    layer = image.layers[0]
    node_a = client(fleet, A)
    upload = node_a.start_upload(repository)
    host, port = node_a.host.split(":")
    with socket.create_connection((host, int(port)), timeout=60) as connection:
        connection.sendall(
            (
                f"PATCH {upload} HTTP/1.1\r\nHost: {node_a.host}\r\nAuthorization: {node_a.auth['Authorization']}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {len(layer)}\r\n\r\n"
            ).encode()
        )
        connection.sendall(layer[: 12 * MiB])
        started = wait_for(lambda: multipart_parts(fleet, upload) is not None, timeout=60)
        assert started, "node A never started the multipart upload"
        fleet.kill(A)
        connection.settimeout(10)
        with contextlib.suppress(OSError):
            answer = connection.recv(65536)
            assert answer == b"", answer  # no answer: the kill came in the middle of the PATCH
    state = state_object(fleet, upload)
    assert (state["tail"], state["next-part"], state.get("s3-upload", "")) == (0, "1", ""), state
    assert multipart_parts(fleet, upload) is not None  # a multipart upload (and parts) the state does not count
    assert_nothing_visible(fleet, repository, tag, image, [layer])
    code, counts, _ = fsck(fleet)
    assert_no_damage(counts)
    assert (code, counts["stale upload leftovers"]) == (0, 0), counts  # its session is still open
    swept = retry_restart_sweep(fleet, repository, tag, image, upload)
    # The session's abort removes its state; the multipart upload the state never named is then one without a
    # session, which the sweep's second pass aborts.
    assert "aborted 1 incomplete multipart upload without an upload session" in swept, swept


def test_a_kill_after_a_part_is_uploaded_and_before_the_closing_put(crash: Fleet) -> None:
    """A PATCH of 6 MiB to node A is answered (one whole part in the multipart upload, 1 MiB of tail in the state);
    node A is killed before the client's closing PUT."""
    fleet = crash
    repository, tag = "crash/between-patch-and-put", "v1"
    image = Image.random("between-patch-and-put", (12 * MiB,))
    layer = image.layers[0]
    first = layer[: 6 * MiB]
    node_a = client(fleet, A)
    upload = node_a.start_upload(repository)
    status, headers, body = node_a.request("PATCH", upload, first, {**OCTETS, "Content-Range": f"0-{len(first) - 1}"})
    assert (status, headers["Range"]) == (202, f"0-{len(first) - 1}"), body
    state = state_object(fleet, upload)
    assert (state["tail"], state["next-part"], multipart_parts(fleet, upload)) == (MiB, "2", [1]), state
    fleet.kill(A)

    assert_nothing_visible(fleet, repository, tag, image, [layer, first])
    # Node B sees the open upload where node A left it (a client could even carry on there).
    status, headers, _ = client(fleet, B).request("GET", upload)
    assert (status, headers["Range"]) == (204, f"0-{len(first) - 1}")
    code, counts, _ = fsck(fleet)
    assert_no_damage(counts)
    assert (code, counts["stale upload leftovers"]) == (0, 0), counts  # its session is still open
    swept = retry_restart_sweep(fleet, repository, tag, image, upload)
    # The state named the multipart upload: the session's abort aborted it, nothing is left for the second pass.
    assert "aborted 0 incomplete multipart uploads without an upload session" in swept, swept


@pytest.mark.parametrize("moment", ["after-the-last-blob", "during-the-manifest-put"])
def test_a_kill_between_the_blobs_and_the_manifest(crash: Fleet, moment: str) -> None:
    """Every blob is pushed to node A (201s); node A is killed right after the last blob's 201, or while the
    manifest PUT's body is half sent to it. The blobs are whole and may be seen; the manifest and the tag may not."""
    fleet = crash
    repository, tag = f"crash/{moment}", "v1"
    image = Image.random(moment, (6 * MiB, 64 * 1024))
    node_a = client(fleet, A)
    for data in [*image.layers, image.config]:
        assert node_a.push_blob(repository, data) == 201
    if moment == "after-the-last-blob":
        fleet.kill(A)
    else:
        manifest = image.manifest
        sock = node_a.send_slowly("PUT", f"/v2/{repository}/manifests/{tag}", len(manifest), manifest[:200])
        try:
            time.sleep(0.3)
            fleet.kill(A)
        finally:
            sock.close()

    assert_nothing_visible(fleet, repository, tag, image, [])
    for data in [*image.layers, image.config]:
        assert fetch_blob(client(fleet, B), repository, sha256(data)) == data
    code, counts, verdict = fsck(fleet)
    assert (code, verdict) == (0, "consistent"), counts
    assert push_image(client(fleet, B), repository, tag, image) == [201]  # the blobs are there: only the manifest
    retry_restart_sweep(fleet, repository, tag, image, None)
