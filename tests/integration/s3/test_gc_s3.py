"""`stevedore gc` over S3 (moto_server): unreferenced blobs' objects are deleted with DeleteObjects, at most
DELETE_BATCH keys a request and several requests at once, found from the database (the bucket is never listed);
referenced ones stay and fsck is consistent afterwards."""

from __future__ import annotations

import threading

import pytest

from stevedore.adapters import blobs_s3
from stevedore.domain.model import BlobInfo, Digest
from tests.integration.protocol.helpers import basic, digest, push_blob
from tests.integration.s3.moto_server import DUMMY_CREDENTIALS
from tests.integration.test_fsck import USER, make_ini, open_app, prepare, run

pytestmark = [pytest.mark.s3, pytest.mark.server]

AUTH = basic(*USER)


def keys(client, bucket: str, prefix: str) -> set[str]:
    found: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found |= {item["Key"] for item in page.get("Contents", [])}
    return found


def count_calls(client, operation: str) -> list[str]:
    """Every request of `operation` the client sends, by thread name."""
    calls: list[str] = []
    client.meta.events.register(
        f"before-call.s3.{operation}", lambda **_: calls.append(threading.current_thread().name)
    )
    return calls


def test_gc_deletes_unreferenced_objects_and_keeps_referenced_ones(tmp_path, capsys, monkeypatch, moto_server):
    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    bucket = moto_server.new_bucket()
    s3_settings = (
        f"stevedore.s3_endpoint_url = {moto_server.endpoint_url}\nstevedore.s3_region = us-east-1\n"
        "stevedore.s3_addressing = path\nstevedore.s3_part_size_mib = 5"
    )
    ini = make_ini(tmp_path, f"s3://{bucket}/registry", s3_settings)
    _, images = prepare(capsys, monkeypatch, ini)
    testapp, components = open_app(ini)
    client = moto_server.client()
    try:
        kept = keys(client, bucket, "registry/objects/")
        unwanted = [push_blob(testapp, AUTH, "alice/app", f"unwanted {i}".encode() * 20) for i in range(5)]
        for blob_digest in unwanted:
            testapp.delete(f"/v2/alice/app/blobs/{blob_digest}", headers=AUTH, status=202)
        assert len(keys(client, bucket, "registry/objects/") - kept) == 5

        status, out, err = run(capsys, monkeypatch, ini, "gc", "--dry-run", "--grace-period", "0")
        assert status == 0, err
        assert "would delete 5 unreferenced blobs" in out
        assert len(keys(client, bucket, "registry/objects/") - kept) == 5

        status, out, err = run(capsys, monkeypatch, ini, "gc", "--grace-period", "0")
        assert status == 0, err
        assert "deleted 5 unreferenced blobs" in out
        assert keys(client, bucket, "registry/objects/") == kept
        for image in images:
            for data in image.blobs:
                testapp.get(f"/v2/alice/app/blobs/{digest(data)}", headers=AUTH, status=(200, 307))
        status, out, _ = run(capsys, monkeypatch, ini, "fsck")
        assert status == 0, out
    finally:
        components.engine.dispose()


def test_delete_blobs_sends_batches_in_parallel_and_reports_what_failed(moto_server, bucket, monkeypatch):
    monkeypatch.setattr(blobs_s3, "DELETE_BATCH", 3)
    store = moto_server.store(bucket)
    store.delete_threads = 4
    client = store.client
    blobs = []
    for i in range(10):
        data = f"object {i}".encode()
        client.put_object(Bucket=bucket, Key=f"registry/objects/upload-{i}", Body=data)
        blobs.append(BlobInfo(Digest.of(data), len(data), f"objects/upload-{i}"))
    gone_already = BlobInfo(Digest.of(b"never stored"), 12, "objects/never-stored")
    calls = count_calls(client, "DeleteObjects")

    failed = store.delete_blobs([*blobs, gone_already])

    assert failed == []
    assert keys(client, bucket, "registry/") == set()
    assert len(calls) == 4  # 11 keys, 3 a request
    assert len(set(calls)) > 1  # on more than one thread

    def refuse(**kwargs):
        raise blobs_s3.ClientError({"Error": {"Code": "InvalidRequest"}}, "DeleteObjects")

    monkeypatch.setattr(client, "delete_objects", refuse)
    assert store.delete_blobs(blobs[:2]) == blobs[:2]
