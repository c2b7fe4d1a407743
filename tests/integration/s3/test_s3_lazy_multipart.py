"""The S3 store starts its multipart upload lazily, counted request by request against moto_server: a blob smaller
than a part is one PutObject at the finish and never a multipart call; a larger one starts its multipart upload in
the append (or the finish) that first holds a whole part, on whichever node that is, and still verifies when it
moved between two stores ("nodes": two S3BlobStore instances over one bucket, sharing nothing in memory). Failures
after a multipart upload started leave none behind, and a state written before the lazy start still finishes."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import boto3
import pytest

from stevedore.adapters.blobs_s3 import S3BlobStore, _State, make_s3_client
from stevedore.domain.errors import DigestInvalid, StorageUnavailable
from stevedore.domain.model import Digest
from tests.integration.protocol.helpers import digest as digest_of
from tests.integration.protocol.helpers import path_of, with_query

pytestmark = [pytest.mark.s3, pytest.mark.server]

PART = 1024
MULTIPART_CALLS = {
    "CreateMultipartUpload",
    "UploadPart",
    "UploadPartCopy",
    "CompleteMultipartUpload",
    "AbortMultipartUpload",
    "ListParts",
}


def data_of(size: int, seed: bytes = b"seed") -> bytes:
    block = hashlib.sha256(seed).digest()
    return (block * (size // len(block) + 1))[:size]


class Requests:
    """Every S3 API call a store's client sends (botocore's before-call event: once per call, retries not counted),
    as `benchmarks.capacity` counts them."""

    def __init__(self, store: S3BlobStore) -> None:
        self.calls: list[str] = []
        store.client.meta.events.register("before-call.s3", self._count)

    def _count(self, model: Any, **_kwargs: Any) -> None:
        self.calls.append(model.name)

    def take(self) -> list[str]:
        taken, self.calls = self.calls, []
        return taken


def uncounted(store: S3BlobStore) -> Any:
    """A client of its own over the store's bucket, so the tests' listings are not counted."""
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing")
    return make_s3_client(
        endpoint_url=store.client.meta.endpoint_url, region="us-east-1", addressing="path", session=session
    )


def keys(store: S3BlobStore) -> list[str]:
    listed = uncounted(store).list_objects_v2(Bucket=store.bucket).get("Contents", [])
    return sorted(item["Key"] for item in listed)


def multipart_uploads(store: S3BlobStore) -> list[str]:
    return [u["Key"] for u in uncounted(store).list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])]


def read(store: S3BlobStore, digest: Digest, location: str | None) -> bytes:
    return b"".join(store.open(digest, None, location))


@pytest.fixture
def nodes(moto_server, bucket):
    return moto_server.store(bucket, part_size=PART), moto_server.store(bucket, part_size=PART)


def test_a_blob_smaller_than_a_part_is_one_put_at_the_finish_and_no_multipart_call(nodes):
    store, _ = nodes
    requests = Requests(store)
    data = data_of(PART - 1)
    store.start_upload("small")
    assert requests.take() == ["PutObject"]  # the empty state
    assert store.append("small", [data[:100], data[100:]]) == len(data)
    assert requests.take() == ["GetObject", "PutObject"]  # the state read, the tail written
    assert multipart_uploads(store) == []
    info = store.finish("small", Digest.of(data))
    assert requests.take() == ["GetObject", "PutObject", "DeleteObject"]  # the state, the blob, the state gone
    assert (info.size, info.location) == (len(data), "objects/small")
    assert read(store, info.digest, info.location) == data
    assert keys(store) == ["registry/objects/small"]
    assert multipart_uploads(store) == []


def test_a_small_blob_moving_between_nodes_starts_no_multipart_upload_either(nodes):
    first, second = nodes
    counted = Requests(first), Requests(second)
    data = data_of(900)
    first.start_upload("small")
    second.append("small", [data[:300]], offset=0)
    first.append("small", [data[300:600]], offset=300)
    info = second.finish("small", Digest.of(data), [data[600:]])
    calls = counted[0].take() + counted[1].take()
    assert not MULTIPART_CALLS & set(calls), calls
    assert calls.count("PutObject") == 4  # the state at the start and after each append, then the blob
    assert read(first, info.digest, info.location) == data
    assert keys(first) == ["registry/objects/small"]


def test_a_monolithic_small_push_is_four_requests(nodes):
    store, _ = nodes
    requests = Requests(store)
    store.start_upload("whole")
    info = store.finish("whole", Digest.of(b"config"), [b"config"])
    assert requests.take() == ["PutObject", "GetObject", "PutObject", "DeleteObject"]
    assert read(store, info.digest, info.location) == b"config"


def test_the_first_whole_part_starts_the_multipart_upload_on_whichever_node_has_it(nodes):
    first, second = nodes
    counted = Requests(first), Requests(second)
    data = data_of(5 * PART + 300)
    digest = Digest.of(data)
    first.start_upload("big")
    first.append("big", [data[:700]])
    assert "CreateMultipartUpload" not in counted[0].take()
    assert multipart_uploads(first) == []
    second.append("big", [data[700:2500]], offset=700)  # crosses the first part's end: the multipart upload starts
    assert counted[1].take() == ["GetObject", "CreateMultipartUpload", "UploadPart", "UploadPart", "PutObject"]
    assert multipart_uploads(first) == ["registry/objects/big"]
    first.append("big", [data[2500:]], offset=2500)  # the next node uses the multipart upload the state names
    assert counted[0].take() == ["GetObject", "UploadPart", "UploadPart", "UploadPart", "PutObject"]
    info = second.finish("big", digest)  # moved since second's append: verified by reading it back
    calls = counted[1].take()
    assert "CreateMultipartUpload" not in calls and calls.count("CompleteMultipartUpload") == 1
    assert (info.size, info.location) == (len(data), "objects/big")
    assert read(first, digest, info.location) == data
    assert keys(first) == ["registry/objects/big"]
    assert multipart_uploads(first) == []


def test_a_multipart_blob_split_across_two_nodes_with_a_wrong_digest_first_stays_appendable(nodes):
    first, second = nodes
    data = data_of(4 * PART + 10)
    first.start_upload("split")
    first.append("split", [data[: 2 * PART + 5]])
    second.append("split", [data[2 * PART + 5 : 3 * PART]], offset=2 * PART + 5)
    with pytest.raises(DigestInvalid):  # first's hash is stale: complete, read back, rebuild from copies
        first.finish("split", Digest.of(b"not this"))
    assert second.upload_size("split") == 3 * PART
    assert second.append("split", [data[3 * PART :]], offset=3 * PART) == len(data)
    info = first.finish("split", Digest.of(data))
    assert read(second, info.digest, info.location) == data
    assert keys(first) == ["registry/objects/split"]
    assert multipart_uploads(first) == []


def test_an_upload_that_stayed_on_one_node_starts_one_multipart_upload_and_is_not_read_back(nodes, monkeypatch):
    store, _ = nodes
    requests = Requests(store)
    data = data_of(3 * PART + 5)
    store.start_upload("stayed")
    store.append("stayed", [data[: PART - 1]])
    store.append("stayed", [data[PART - 1 :]], offset=PART - 1)
    monkeypatch.setattr(S3BlobStore, "_read_back_digest", lambda self, *args: pytest.fail("read back"))
    info = store.finish("stayed", Digest.of(data))
    calls = requests.take()
    assert calls.count("CreateMultipartUpload") == 1
    assert calls.count("UploadPart") == 4 and calls.count("CompleteMultipartUpload") == 1
    assert "ListParts" not in calls and "AbortMultipartUpload" not in calls
    assert read(store, info.digest, info.location) == data


@pytest.mark.parametrize("moved", [False, True], ids=["stayed", "moved"])
def test_a_finish_that_fills_the_first_part_and_mismatches_leaves_no_multipart_upload(nodes, moved):
    first, second = nodes
    data = data_of(2 * PART + 50)
    first.start_upload("put")
    first.append("put", [data[:10]])
    finisher = second if moved else first
    with pytest.raises(DigestInvalid):
        finisher.finish("put", Digest.of(b"something else"), [data[10:]])
    assert multipart_uploads(first) == []
    assert keys(first) == ["registry/uploads/put"]  # no completed object left behind
    assert first.upload_size("put") == 10
    info = finisher.finish("put", Digest.of(data), [data[10:]])
    assert read(first, info.digest, info.location) == data
    assert keys(first) == ["registry/objects/put"]
    assert multipart_uploads(first) == []


def test_a_state_that_cannot_be_saved_aborts_the_multipart_upload_it_started(nodes, monkeypatch):
    store, _ = nodes
    store.start_upload("down")
    store.append("down", [b"x" * 10])
    saved = S3BlobStore._save

    def unavailable(self, upload_id, state):
        raise StorageUnavailable(detail={"storage": "s3"})

    monkeypatch.setattr(S3BlobStore, "_save", unavailable)
    with pytest.raises(StorageUnavailable):
        store.append("down", [b"y" * (2 * PART)], offset=10)
    monkeypatch.setattr(S3BlobStore, "_save", saved)
    assert multipart_uploads(store) == []
    assert store.upload_size("down") == 10  # as it was before the call
    data = b"x" * 10 + b"z" * (2 * PART)
    assert store.append("down", [data[10:]], offset=10) == len(data)
    assert read(store, *_finished(store, "down", data)) == data


def test_a_part_that_fails_aborts_the_multipart_upload_its_call_started(nodes, monkeypatch):
    store, _ = nodes
    store.start_upload("part")
    upload_part = S3BlobStore._upload_part

    def failing(self, upload_id, s3_upload, number, body):
        if number == 2:
            raise StorageUnavailable(detail={"storage": "s3"})
        return upload_part(self, upload_id, s3_upload, number, body)

    monkeypatch.setattr(S3BlobStore, "_upload_part", failing)
    with pytest.raises(StorageUnavailable):
        store.append("part", [b"a" * (3 * PART)])
    with pytest.raises(StorageUnavailable):
        store.finish("part", Digest.of(b"a" * (3 * PART)), [b"a" * (3 * PART)])
    assert multipart_uploads(store) == []
    assert store.upload_size("part") == 0
    assert keys(store) == ["registry/uploads/part"]


def _finished(store: S3BlobStore, upload_id: str, data: bytes) -> tuple[Digest, str | None]:
    info = store.finish(upload_id, Digest.of(data))
    return info.digest, info.location


@pytest.mark.parametrize("size", [PART - 1, 3 * PART + 1], ids=["small", "multipart"])
def test_a_cancelled_upload_leaves_nothing(nodes, size):
    first, second = nodes
    first.start_upload("gone")
    first.append("gone", [data_of(size)])
    second.abort("gone")
    assert keys(first) == []
    assert multipart_uploads(first) == []


@pytest.mark.parametrize("size", [PART - 1, 3 * PART + 1], ids=["small", "multipart"])
def test_a_state_from_before_the_lazy_start_still_finishes_and_leaves_nothing_over(nodes, size):
    """A node of the previous version started the multipart upload at the POST; this one takes the upload over."""
    first, _ = nodes
    key = first._key("objects/legacy")
    started = first.client.create_multipart_upload(Bucket=first.bucket, Key=key)["UploadId"]
    first._save("legacy", _State(started, 1, 0, "sha256", uuid.uuid4().hex, b""))
    data = data_of(size)
    first.append("legacy", [data])
    info = first.finish("legacy", Digest.of(data))
    assert read(first, info.digest, info.location) == data
    assert keys(first) == ["registry/objects/legacy"]
    assert multipart_uploads(first) == []


def test_a_small_push_through_the_app_is_six_s3_requests_per_blob(testapp, auth, s3_store):
    """POST, PATCH, PUT as docker sends them: the state's PUT; its GET and PUT; its GET, the blob's PUT, its DELETE."""
    requests = Requests(s3_store)
    blob = data_of(PART - 24, b"config")
    started = testapp.post("/v2/s3/lazy/blobs/uploads/", headers=auth, status=202)
    patched = testapp.patch(
        path_of(started.headers["Location"]),
        params=blob,
        headers={**auth, "Content-Type": "application/octet-stream"},
        status=202,
    )
    testapp.put(with_query(path_of(patched.headers["Location"]), digest=digest_of(blob)), headers=auth, status=201)
    assert requests.take() == ["PutObject", "GetObject", "PutObject", "GetObject", "PutObject", "DeleteObject"]
    assert testapp.get(f"/v2/s3/lazy/blobs/{digest_of(blob)}", headers=auth, status=200).body == blob
    assert multipart_uploads(s3_store) == []
