"""kill -9 of a node (one waitress process, SQLite, the folder store) in the middle of a push: started again on the
same database and folder, the registry is consistent, nothing of the interrupted push is visible, and the retried
push succeeds."""

from __future__ import annotations

import contextlib
import glob
import os
import threading
import time

import pytest

from tests.integration.durability.helpers import (
    Image,
    MiB,
    Node,
    blob_file,
    check_consistency,
    push_image,
    sha256,
    wait_for,
)

pytestmark = pytest.mark.server

NAME = "crash/app"


@pytest.fixture
def node(tmp_path):
    node = Node.create(str(tmp_path)).start()
    yield node
    node.stop()


def assert_consistent(node: Node) -> None:
    report = check_consistency(node.database_url, node.storage_dir)
    assert report.ok, report.problems


def assert_pushes_after_restart(node: Node, image: Image, tag: str = "v1") -> None:
    client = node.client
    assert push_image(client, NAME, tag, image)[-1] == 201
    for data in [*image.layers, image.config]:
        assert client.get_blob(NAME, sha256(data)) == (200, data)
    status, _, body = client.request(
        "GET", f"/v2/{NAME}/manifests/{tag}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}
    )
    assert (status, body) == (200, image.manifest)
    assert_consistent(node)


def test_a_kill_while_the_layer_is_still_streaming_in_leaves_nothing_and_the_push_is_retried(node):
    image = Image.random("streaming", (8 * MiB,))
    layer = image.layers[0]
    upload = node.client.start_upload(NAME)
    sock = node.client.send_slowly("PATCH", upload, len(layer), layer[: 3 * MiB])
    try:
        time.sleep(0.5)  # the server has the first 3 MiB; 5 MiB are still to come
        node.kill()
    finally:
        sock.close()

    assert_consistent(node)
    assert not os.path.exists(blob_file(node.storage_dir, sha256(layer)))
    node.start()
    assert node.client.head_blob(NAME, sha256(layer)) == 404
    assert_pushes_after_restart(node, image)
    assert check_consistency(node.database_url, node.storage_dir).orphan_files == []


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_a_kill_while_the_app_writes_the_layer_leaves_the_registry_consistent(node, method):
    """The body is in; the app is copying it into the upload's file (PATCH) or finishing the blob (PUT with the
    whole layer) when the process dies."""
    image = Image.random(f"writing-{method}", (48 * MiB,))
    layer = image.layers[0]
    digest = sha256(layer)
    upload = node.client.start_upload(NAME)
    # A PATCH writes under the ticket's session id; a whole-blob PUT on a fresh ticket under an id of its own.
    uploads = os.path.join(node.storage_dir, "uploads")
    path = upload if method == "PATCH" else f"{upload}?digest={digest}"

    def send() -> None:
        with contextlib.suppress(OSError):  # the server dies under the request: no answer comes
            node.client.request(method, path, layer)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()

    def writing() -> bool:
        for data_file in glob.glob(os.path.join(uploads, "*", "data")):
            try:
                if os.path.getsize(data_file) > 0:
                    return True
            except FileNotFoundError:
                pass
        return False

    assert wait_for(writing, timeout=60), "the app never started writing the layer"
    node.kill()
    sender.join(timeout=30)

    assert_consistent(node)
    node.start()
    # Either the blob was committed whole before the kill, or it is not there at all.
    status = node.client.head_blob(NAME, digest)
    assert status in (200, 404)
    if status == 200:
        assert node.client.get_blob(NAME, digest) == (200, layer)
    assert_pushes_after_restart(node, image)


def test_a_kill_between_the_blob_puts_and_the_manifest_put(node):
    image = Image.random("between", (MiB, 64 * 1024))
    client = node.client
    for data in [*image.layers, image.config]:
        assert client.push_blob(NAME, data) == 201
    node.kill()

    assert_consistent(node)
    node.start()
    for data in [*image.layers, image.config]:
        assert node.client.head_blob(NAME, sha256(data)) == 200
    status, _, _ = node.client.request("GET", f"/v2/{NAME}/manifests/v1")
    assert status == 404
    assert push_image(node.client, NAME, "v1", image) == [201]  # the blobs are there: only the manifest is sent
    assert_pushes_after_restart(node, image)


def test_a_kill_during_a_manifest_put(node):
    image = Image.random("manifest")
    client = node.client
    for data in [*image.layers, image.config]:
        assert client.push_blob(NAME, data) == 201
    previous = Image.random("previous")
    assert push_image(client, NAME, "latest", previous)[-1] == 201

    manifest = image.manifest
    sock = client.send_slowly("PUT", f"/v2/{NAME}/manifests/latest", len(manifest), manifest[: len(manifest) // 2])
    try:
        time.sleep(0.3)
        node.kill()
    finally:
        sock.close()

    assert_consistent(node)
    node.start()
    status, _, body = node.client.request(
        "GET", f"/v2/{NAME}/manifests/latest", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}
    )
    assert (status, body) == (200, previous.manifest)  # the tag still names the whole previous manifest
    status, _, _ = node.client.request("GET", f"/v2/{NAME}/manifests/{sha256(manifest)}")
    assert status == 404
    assert_pushes_after_restart(node, image, tag="latest")
