"""A bounded load test on loopback: PROCESSES processes each push THREADS images at once through nginx, round-robin
over the two nodes; half the pushes are images of their own, half the same image to the same tag. Every push must
succeed, and afterwards the database and the bucket must agree: the test's consistency checker finds nothing, and
`stevedore fsck --verify-digests`, the real command run with the nodes' settings, prints "consistent" and exits 0."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from tests.integration.durability.helpers import MANIFEST_TYPE, Client, sha256
from tests.integration.scaleout.conftest import PASSWORD, USERNAME, Fleet, cli, served
from tests.integration.scaleout.helpers import check_s3_consistency, push_many, shared_image
from tests.integration.services import REPO_ROOT

pytestmark = [pytest.mark.scaleout, pytest.mark.s3, pytest.mark.postgres, pytest.mark.server]

PROCESSES = 4
THREADS = 8
REPORT = Path(REPO_ROOT) / "test-output" / "scaleout-load.txt"


def test_concurrent_pushes_through_nginx_leave_a_consistent_store(fleet: Fleet) -> None:
    before = [served(log, r"") for log in fleet.node_logs]
    started = time.monotonic()
    with ProcessPoolExecutor(PROCESSES, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [
            pool.submit(push_many, fleet.proxy.host, USERNAME, PASSWORD, worker, THREADS) for worker in range(PROCESSES)
        ]
        results = [result for future in futures for result in future.result(timeout=300)]
    wall = time.monotonic() - started
    per_node = [served(log, r"") - count for log, count in zip(fleet.node_logs, before, strict=True)]

    failed = [result for result in results if not result.ok]
    consistency = check_s3_consistency(fleet.database_url, fleet.store())
    fsck = cli(fleet.ini_path, fleet.env, "fsck", "--verify-digests")
    fsck_lines = fsck.stdout.strip().splitlines()
    slowest = max(result.seconds for result in results)
    figures = (
        f"scale-out load test: {len(results)} pushes ({PROCESSES} processes x {THREADS} at once) through nginx "
        f"round-robin over 2 nodes (PostgreSQL, moto_server S3)\n"
        f"  distinct images: {sum(1 for r in results if 'distinct' in r.repository)}, "
        f"identical image to one tag: {sum(1 for r in results if 'identical' in r.repository)}\n"
        f"  wall time: {wall:.2f} s, slowest push: {slowest:.2f} s, errors: {len(failed)}\n"
        f"  requests served: node A {per_node[0]}, node B {per_node[1]}\n"
        f"  consistency: {len(consistency.problems)} problems, {consistency.blob_rows} blob rows, "
        f"{len(consistency.unreferenced)} unreferenced objects, {len(consistency.open_upload_states)} upload states "
        f"left, {consistency.upload_rows} upload rows left\n"
        f"  stevedore fsck --verify-digests: exit {fsck.returncode}; "
        + "; ".join(line for line in fsck_lines if not line.startswith("storage: "))
        + "\n"
    )
    print("\n" + figures)
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(figures)

    assert not failed, [(r.repository, r.statuses, r.error) for r in failed]
    assert consistency.ok, consistency.problems
    assert not consistency.unreferenced, consistency.unreferenced
    assert not consistency.open_upload_states and consistency.upload_rows == 0
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert fsck_lines[-1] == "consistent", fsck.stdout
    assert any(line.startswith(f"checked {consistency.blob_rows} blobs, ") for line in fsck_lines), fsck.stdout
    assert min(per_node) > 0, per_node  # nginx spread the load over both nodes
    # Every distinct image is there under its tag, and the shared tag names the shared image, on each node.
    for node in fleet.nodes:
        client = Client(node.host, USERNAME, PASSWORD)
        for result in results:
            status, headers, _ = client.request(
                "HEAD", f"/v2/{result.repository}/manifests/{result.tag}", headers={"Accept": MANIFEST_TYPE}
            )
            assert (status, headers["Docker-Content-Digest"]) == (200, result.manifest_digest), result
        assert results[1].manifest_digest == sha256(shared_image().manifest)
