"""`stevedore upload sweep` and `stevedore fsck` over S3 (moto_server): an incomplete multipart upload under the
store's prefix that no upload session knows is reported by fsck as a stale upload, and aborted by the sweep once it is
older than the limit; a live session's and one outside the prefix are left alone. moto reports every multipart
upload as started on 2010-11-10, so the age rule (a young orphan is kept) is tested with fakes in
tests/unit/test_upload_sweep.py."""

from __future__ import annotations

import uuid

import pytest

from stevedore.adapters.storage_inventory import s3_multipart_uploads
from tests.integration.protocol.helpers import basic, path_of, session_id
from tests.integration.s3.moto_server import DUMMY_CREDENTIALS
from tests.integration.test_fsck import USER, make_ini, open_app, prepare, run

pytestmark = [pytest.mark.s3, pytest.mark.server]


def multipart_keys(client, bucket: str) -> set[str]:
    return {item["Key"] for item in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}


def orphan(client, bucket: str, key: str) -> str:
    created = client.create_multipart_upload(Bucket=bucket, Key=key)
    client.upload_part(Bucket=bucket, Key=key, UploadId=created["UploadId"], PartNumber=1, Body=b"a part")
    return created["UploadId"]


def test_an_orphan_multipart_upload_is_reported_by_fsck_then_aborted_by_the_sweep(
    tmp_path, capsys, monkeypatch, moto_server
):
    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    bucket = moto_server.new_bucket()
    s3_settings = (
        f"stevedore.s3_endpoint_url = {moto_server.endpoint_url}\nstevedore.s3_region = us-east-1\n"
        "stevedore.s3_addressing = path\nstevedore.s3_part_size_mib = 5"
    )
    ini = make_ini(tmp_path, f"s3://{bucket}/registry", s3_settings)
    prepare(capsys, monkeypatch, ini)
    client = moto_server.client()
    old_id = str(uuid.uuid4())
    orphan(client, bucket, f"registry/objects/{old_id}")
    orphan(client, bucket, "other-prefix/objects/not-ours")

    status, out, _ = run(capsys, monkeypatch, ini, "fsck")
    assert status == 1
    assert f"stale upload leftovers: 1\n  {old_id}: incomplete multipart upload at objects/{old_id} started" in out
    assert "not-ours" not in out

    testapp, components = open_app(ini)
    try:
        location = testapp.post("/v2/alice/app/blobs/uploads/", headers=basic(*USER), status=202).headers["Location"]
        live = session_id(location)
        assert f"registry/objects/{live}" not in multipart_keys(client, bucket)  # started by the first whole part
        part = b"p" * (5 * 1024 * 1024)
        patch_headers = {**basic(*USER), "Content-Type": "application/octet-stream"}
        location = testapp.patch(path_of(location), params=part, headers=patch_headers, status=202).headers["Location"]
        assert f"registry/objects/{live}" in multipart_keys(client, bucket)

        status, out, err = run(capsys, monkeypatch, ini, "upload", "sweep")
        assert status == 0, err
        assert out.splitlines() == [
            "aborted 0 open uploads started more than 3600 seconds ago",
            "aborted 1 incomplete multipart upload without an upload session",
        ]
        remaining = multipart_keys(client, bucket)
        assert f"registry/objects/{old_id}" not in remaining
        assert {f"registry/objects/{live}", "other-prefix/objects/not-ours"} <= remaining
        assert testapp.get(location, headers=basic(*USER)).status_int == 204  # the live session goes on
    finally:
        components.engine.dispose()

    status, out, _ = run(capsys, monkeypatch, ini, "fsck")
    assert status == 0, out
    assert old_id not in out


def test_the_multipart_listing_pages(moto_server):
    bucket = moto_server.new_bucket()
    store = moto_server.store(bucket)
    client = moto_server.client()
    ids = sorted(str(uuid.uuid4()) for _ in range(5))
    for one in ids:
        orphan(client, bucket, f"registry/objects/{one}")
    orphan(client, bucket, "elsewhere/objects/x")
    listed = list(s3_multipart_uploads(store, page_size=2))
    assert [item.upload_id for item in listed] == ids
    assert all(item.location == f"objects/{item.upload_id}" and item.initiated.tzinfo for item in listed)
