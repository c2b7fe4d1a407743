"""A full disk under the blob folder, the body spool (TMPDIR) or the SQLite database: a push that meets it gets the
registry's 507 UNAVAILABLE in the spec's error body, nothing of it stays, pulls keep working, and pushes work again
once space is freed. The disk is a small tmpfs the test mounts (the tests run as root here and on CI)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess

import pytest
import sqlalchemy as sa

from stevedore.adapters.sql.engine import make_engine
from stevedore.adapters.sql.tables import blobs
from tests.integration.durability.helpers import (
    Image,
    MiB,
    Node,
    check_consistency,
    leftover_upload_files,
    push_image,
    sha256,
)

pytestmark = pytest.mark.server


@contextlib.contextmanager
def small_disk(path, size: str = "16m"):
    os.makedirs(path, exist_ok=True)
    if os.geteuid() != 0:
        pytest.fail("mounting a small tmpfs needs root (the tests run as root in the container and on CI)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.fail(f"this container may not mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def free_bytes(path: str) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def fill(path: str, leave: int) -> str:
    """Fill the filesystem of `path` with one file until at most `leave` bytes are free."""
    filler = os.path.join(path, "filler")
    block = b"\0" * 65536
    with open(filler, "ab") as handle:
        try:
            while free_bytes(path) > leave:
                handle.write(block[: max(4096, min(len(block), free_bytes(path) - leave))])
                handle.flush()
        except OSError:
            pass
    return filler


def assert_storage_full(status: int, body: bytes) -> None:
    assert status == 507, (status, body)
    error = json.loads(body)["errors"][0]
    assert error["code"] == "UNAVAILABLE"
    assert "storage is full" in error["message"]


def blob_row_count(database_url: str, digest: str) -> int:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).where(blobs.c.digest == digest)).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.parametrize("spool_on_the_full_disk", [False, True], ids=["blob-folder-full", "spool-full-too"])
def test_a_push_onto_a_full_disk_is_refused_cleanly_and_works_once_space_is_freed(tmp_path, spool_on_the_full_disk):
    with small_disk(tmp_path / "disk") as disk:
        spool = os.path.join(disk if spool_on_the_full_disk else str(tmp_path), "spool")
        os.makedirs(spool)
        node = Node.create(str(tmp_path), storage_dir=os.path.join(disk, "blobs"), env={"TMPDIR": spool}).start()
        try:
            client = node.client
            existing = Image.random("before", (2 * MiB,))
            assert push_image(client, "full/app", "v1", existing) == [201, 201, 201]

            filler = fill(disk, leave=512 * 1024)
            before = free_bytes(disk)
            layer = os.urandom(3 * MiB)
            digest = sha256(layer)

            # docker's way: POST, the layer in one PATCH, PUT.
            upload = client.start_upload("full/app")
            status, _, body = client.request("PATCH", upload, layer, {"Content-Type": "application/octet-stream"})
            assert_storage_full(status, body)
            # A whole blob in the POST, and in the closing PUT.
            status, _, body = client.request("POST", f"/v2/full/app/blobs/uploads/?digest={digest}", layer)
            assert_storage_full(status, body)
            second = client.start_upload("full/app")
            status, _, body = client.request("PUT", f"{second}?digest={digest}", layer)
            assert_storage_full(status, body)

            # Nothing partial stays: no row, no file, no spooled bytes, the space is back.
            assert client.head_blob("full/app", digest) == 404
            assert blob_row_count(node.database_url, digest) == 0
            assert all(os.path.getsize(path) == 0 for path in leftover_upload_files(node.storage_dir))
            assert os.listdir(spool) == []
            assert free_bytes(disk) >= before - 64 * 1024
            if not spool_on_the_full_disk:  # the app wrote, and truncated: the upload is as it was, and usable
                status, headers, _ = client.request("GET", upload)
                assert status == 204 and headers["Range"] == "0-0"

            # Pulls keep working meanwhile.
            status, manifest = client.get_blob("full/app", sha256(existing.layers[0]))
            assert (status, manifest) == (200, existing.layers[0])
            status, _, manifest = client.request(
                "GET", "/v2/full/app/manifests/v1", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}
            )
            assert (status, manifest) == (200, existing.manifest)

            os.unlink(filler)
            retried = Image(existing.config + b" ", [layer])
            assert push_image(client, "full/app", "v2", retried) == [201, 201, 201]
            assert client.get_blob("full/app", digest) == (200, layer)
            if not spool_on_the_full_disk:
                small = b"the kept upload finishes"
                status, _, _ = client.request("PUT", f"{upload}?digest={sha256(small)}", small)
                assert status == 201

            report = check_consistency(node.database_url, node.storage_dir)
            assert report.ok, report.problems
            assert report.orphan_files == []
            log = node.log_text()
            assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]
        finally:
            node.stop()


def test_a_full_database_disk_is_refused_cleanly_and_pushes_work_again_once_space_is_freed(tmp_path):
    with small_disk(tmp_path / "dbdisk", size="4m") as disk:
        node = Node.create(str(tmp_path), database_url=f"sqlite:///{disk}/stevedore.sqlite").start()
        try:
            client = node.client
            existing = Image.random("before")
            assert push_image(client, "dbfull/app", "v1", existing) == [201, 201, 201]

            filler = fill(disk, leave=0)
            # SQLite writes into WAL pages it already has until it needs more: push until the database refuses.
            refused = None
            for index in range(300):
                status, _, body = client.request(
                    "POST",
                    f"/v2/dbfull/app/blobs/uploads/?digest={sha256(str(index).encode() * 2000)}",
                    str(index).encode() * 2000,
                )
                if status != 201:
                    refused = (status, body)
                    break
            assert refused is not None, "the database never filled its disk"
            status, body = refused
            assert status == 507, (status, body)
            error = json.loads(body)["errors"][0]
            assert error["code"] == "UNAVAILABLE" and "database disk is full" in error["message"]

            os.unlink(filler)
            again = Image.random("after")
            assert push_image(client, "dbfull/app", "v2", again) == [201, 201, 201]
            report = check_consistency(node.database_url, node.storage_dir)
            assert report.ok, report.problems
            log = node.log_text()
            assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]
        finally:
            node.stop()
