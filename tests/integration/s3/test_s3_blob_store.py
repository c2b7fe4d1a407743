"""The S3 store beyond the contract: thousands of parts (ListParts pages), uploads moving between two processes
("nodes": two S3BlobStore instances over one bucket, sharing nothing in memory), digest mismatches in both cases."""

from __future__ import annotations

import hashlib

import pytest

from stevedore.adapters.blobs_s3 import S3BlobStore
from stevedore.domain.errors import DigestInvalid, RangeInvalid
from stevedore.domain.model import Digest

pytestmark = [pytest.mark.s3, pytest.mark.server]

PART = 1024


def data_of(size: int, seed: bytes = b"seed") -> bytes:
    block = hashlib.sha256(seed).digest()
    return (block * (size // len(block) + 1))[:size]


def keys(store: S3BlobStore) -> list[str]:
    found = []
    for page in store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket):
        found += [item["Key"] for item in page.get("Contents", [])]
    return sorted(found)


def multipart_uploads(store: S3BlobStore) -> list[str]:
    return [u["Key"] for u in store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])]


def read(store: S3BlobStore, digest: Digest, location: str | None) -> bytes:
    return b"".join(store.open(digest, None, location))


@pytest.fixture
def nodes(moto_server, bucket):
    return moto_server.store(bucket, part_size=PART), moto_server.store(bucket, part_size=PART)


def test_an_upload_that_stayed_on_its_node_is_verified_without_reading_it_back(nodes, monkeypatch):
    first, _ = nodes
    data = data_of(20 * PART + 123)
    digest = Digest.of(data)
    first.start_upload("stayed")
    first.append("stayed", [data[:7000]])
    first.append("stayed", [data[7000:]], offset=7000)
    monkeypatch.setattr(S3BlobStore, "_read_back_digest", lambda self, *args: pytest.fail("read back"))
    stayed = first.finish("stayed", digest)
    monkeypatch.undo()
    assert (stayed.size, stayed.location) == (len(data), "objects/stayed")
    assert read(first, digest, stayed.location) == data


def test_more_than_a_thousand_parts_moved_to_another_node_verify_through_list_parts_pages(nodes):
    first, second = nodes
    data = data_of(1010 * PART + 123)
    digest = Digest.of(data)
    half = 500 * PART + 17
    first.start_upload("moved")
    first.append("moved", (data[i : min(i + 64 * PART, half)] for i in range(0, half, 64 * PART)))
    second.append("moved", (data[i : i + 64 * PART] for i in range(half, len(data), 64 * PART)), offset=half)
    assert first.upload_size("moved") == len(data)
    pages = []
    list_parts = first.client.list_parts
    first.client.list_parts = lambda **kw: pages.append(kw) or list_parts(**kw)
    with pytest.raises(DigestInvalid):  # a stale hash on the first node: ListParts, complete, read back, rebuild
        first.finish("moved", Digest.of(data[:-1]))
    assert len(pages) == 2  # 1,010 parts: two pages of ListParts
    assert first.upload_size("moved") == len(data)
    moved = first.finish("moved", digest)
    assert moved.size == len(data)
    assert read(second, digest, moved.location) == data
    assert multipart_uploads(first) == []
    assert keys(first) == ["registry/objects/moved"]


def test_an_upload_moving_between_nodes_mid_way_still_verifies(nodes):
    first, second = nodes
    data = data_of(5 * PART + 300)
    first.start_upload("u")
    assert first.append("u", [data[:1500]]) == 1500
    assert second.upload_size("u") == 1500
    with pytest.raises(RangeInvalid):
        second.append("u", [b"x"], offset=1000)
    assert second.append("u", [data[1500:4000]], offset=1500) == 4000
    assert first.append("u", [data[4000:]], offset=4000) == len(data)
    info = second.finish("u", Digest.of(data))
    assert read(first, info.digest, info.location) == data
    assert keys(first) == ["registry/objects/u"]  # the state object is gone


@pytest.mark.parametrize("moved", [False, True], ids=["stayed", "moved"])
def test_a_digest_mismatch_leaves_the_upload_appendable(nodes, moved):
    first, second = nodes
    data = data_of(4 * PART + 10)
    first.start_upload("u")
    first.append("u", [data[:3000]])
    finisher = second if moved else first
    with pytest.raises(DigestInvalid):
        finisher.finish("u", Digest.of(b"something else"))
    with pytest.raises(DigestInvalid):
        finisher.finish("u", Digest.of(data[:3000] + b"right"), [b"wrong"])  # with parts from the PUT
    assert first.upload_size("u") == 3000
    assert keys(first) == ["registry/uploads/u"]  # the refused object is gone, the state is there
    assert second.append("u", [data[3000:]], offset=3000) == len(data)
    info = finisher.finish("u", Digest.of(data))
    assert read(first, info.digest, info.location) == data
    assert multipart_uploads(first) == []
    assert keys(first) == ["registry/objects/u"]


def test_a_small_blob_is_one_put_and_a_mismatch_leaves_it_appendable(nodes):
    first, second = nodes
    first.start_upload("small")
    first.append("small", [b"tiny"])
    with pytest.raises(DigestInvalid):
        second.finish("small", Digest.of(b"tiny!"), [b"?"])
    info = second.finish("small", Digest.of(b"tiny!"), [b"!"])
    assert read(first, info.digest, info.location) == b"tiny!"
    assert multipart_uploads(first) == []


def test_a_part_overwritten_by_another_node_is_caught_at_completion(nodes):
    """Two nodes appending at once from the same state: the later state wins and the node whose parts were
    overwritten cannot complete with its own hash; it verifies by reading back instead."""
    first, second = nodes
    first.start_upload("race")
    state = first._load("race")
    theirs = data_of(2 * PART, b"theirs")
    ours = data_of(2 * PART, b"ours")
    first.append("race", [ours])
    # the second node writes parts 1-2 from the same starting state (a client sending two PATCHes at once)
    second._save("race", state)
    second.append("race", [theirs])
    first._save("race", first._load("race"))  # first's cached generation is stale now anyway
    with pytest.raises(DigestInvalid):
        first.finish("race", Digest.of(ours))
    info = first.finish("race", Digest.of(theirs))
    assert read(second, info.digest, info.location) == theirs


def test_abort_removes_parts_state_and_object(nodes):
    first, second = nodes
    first.start_upload("gone")
    first.append("gone", [data_of(3 * PART)])
    second.abort("gone")
    second.abort("gone")
    assert keys(first) == []
    assert multipart_uploads(first) == []


def test_a_forked_worker_forgets_the_pooled_connections_and_opens_new_ones(s3_store):
    """Components.forget_inherited_connections, in a worker (web/workers.py): the pooled HTTP connections of the
    first process are let go, and the same client then connects again."""
    s3_store.check_available()  # HEAD of the bucket: a keep-alive connection now sits in the client's pool
    manager = s3_store.client._endpoint.http_session._manager
    assert len(manager.pools) == 1
    s3_store.forget_connections()
    assert len(manager.pools) == 0
    s3_store.check_available()
    assert len(manager.pools) == 1
