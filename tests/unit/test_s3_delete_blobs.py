"""S3BlobStore.delete_blobs (garbage collection) over a stub client: what DeleteObjects reports per key, and that a
failed request of any kind is reported as its blobs, never raised (the rows are already committed)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from botocore.exceptions import ClientError

from stevedore.adapters.blobs_s3 import DELETE_BATCH, S3BlobStore
from stevedore.domain.model import BlobInfo, Digest


def blob(n: int) -> BlobInfo:
    return BlobInfo(Digest.of(f"blob {n}".encode()), 6, f"objects/upload-{n}")


class StubClient:
    """DeleteObjects only: answers from `errors_for` (key -> S3 error code), or raises `fail` for a batch that holds
    one of `fail_keys`."""

    def __init__(self, errors_for: dict[str, str] | None = None, fail: BaseException | None = None) -> None:
        self.errors_for = errors_for or {}
        self.fail = fail
        self.fail_keys: set[str] = set()
        self.requests: list[list[str]] = []

    def delete_objects(self, *, Bucket: str, Delete: dict[str, Any]) -> dict[str, Any]:
        keys = [entry["Key"] for entry in Delete["Objects"]]
        self.requests.append(keys)
        if self.fail is not None and self.fail_keys & set(keys):
            raise self.fail
        errors = [
            {"Key": key, "Code": self.errors_for[key], "Message": "..."} for key in keys if key in self.errors_for
        ]
        return {"Errors": errors} if errors else {}


def store(client: StubClient) -> S3BlobStore:
    return S3BlobStore(client, "bucket", "prefix", delete_threads=2)


def key(info: BlobInfo) -> str:
    return f"prefix/{info.location}"


def test_a_key_reported_missing_counts_as_deleted_and_other_errors_fail():
    blobs = [blob(n) for n in range(4)]
    client = StubClient({key(blobs[0]): "NoSuchKey", key(blobs[1]): "AccessDenied", key(blobs[2]): "InternalError"})
    assert store(client).delete_blobs(blobs) == [blobs[1], blobs[2]]
    assert client.requests == [[key(b) for b in blobs]]


@pytest.mark.parametrize(
    "failure",
    [
        RuntimeError("a bug in a thread"),
        KeyError("Errors"),
        ClientError({"Error": {"Code": "SlowDown", "Message": "..."}}, "DeleteObjects"),
    ],
    ids=["runtime-error", "key-error", "client-error"],
)
def test_a_failed_request_reports_its_batch_and_the_others_go_on(failure, caplog):
    blobs = [blob(n) for n in range(DELETE_BATCH + 3)]  # two requests
    client = StubClient(fail=failure)
    client.fail_keys = {key(blobs[-1])}  # in the second batch
    with caplog.at_level(logging.WARNING, logger="stevedore.adapters.blobs_s3"):
        failed = store(client).delete_blobs(blobs)
    assert failed == blobs[DELETE_BATCH:]
    assert len(client.requests) == 2
    assert len([r for r in caplog.records if "failed" in r.getMessage()]) == 1
