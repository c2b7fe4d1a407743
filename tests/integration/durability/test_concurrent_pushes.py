"""Many clients pushing the same blob, the same manifest and the same tag at once, against one server process on
SQLite and on PostgreSQL: every request succeeds (no 500, no lost update) and the registry stays consistent."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.durability.helpers import MANIFEST_TYPE, Image, Node, check_consistency, push_image, sha256

pytestmark = pytest.mark.server

NAME = "race/app"
CLIENTS = 12


@pytest.fixture
def node(tmp_path, database_url):
    node = Node.create(str(tmp_path), database_url=database_url).start()
    yield node
    node.stop()


def test_many_clients_pushing_the_same_blob_manifest_and_tag_at_once(node):
    shared = Image.random("shared", (256 * 1024, 64 * 1024))
    own = [Image.random(f"own-{index}") for index in range(CLIENTS)]
    # The namespace is claimed first, alone: concurrent first pushes of one account into an unclaimed namespace are
    # a separate race (on PostgreSQL the losers get 403 "claimed by someone else": domain/access.py claim_for_push).
    assert push_image(node.client, NAME, "warm-up", Image.random("warm-up"))[-1] == 201

    def push(index: int) -> list[int]:
        client = node.client
        # Everyone sends every blob (no HEAD first), so the same blob is finished many times at once.
        statuses = [client.push_blob(NAME, data) for data in [*shared.layers, shared.config]]
        statuses.append(client.put_manifest(NAME, "same", shared.manifest))
        statuses += push_image(client, NAME, "contested", own[index])
        return statuses

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        results = list(pool.map(push, range(CLIENTS)))
    for statuses in results:
        assert set(statuses) == {201}, statuses

    client = node.client
    accept = {"Accept": MANIFEST_TYPE}
    status, _, body = client.request("GET", f"/v2/{NAME}/manifests/same", headers=accept)
    assert (status, body) == (200, shared.manifest)
    status, _, body = client.request("GET", f"/v2/{NAME}/manifests/contested", headers=accept)
    assert status == 200 and body in {image.manifest for image in own}  # the last writer's, whole
    for image in own:  # every client's manifest is stored, tagged or not
        status, _, body = client.request("GET", f"/v2/{NAME}/manifests/{sha256(image.manifest)}", headers=accept)
        assert (status, body) == (200, image.manifest)
    status, _, body = client.request("GET", f"/v2/{NAME}/tags/list")
    assert status == 200 and json.loads(body)["tags"] == ["contested", "same", "warm-up"]

    report = check_consistency(node.database_url, node.storage_dir)
    assert report.ok, report.problems
    assert report.orphan_files == []
    assert {sha256(data) for image in [shared, *own] for data in [*image.layers, image.config]} <= report.blob_rows
    assert len(report.blob_rows) == 3 + 2 * CLIENTS + 2  # each blob once: the shared three, the own two, warm-up
    log = node.log_text()
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]
