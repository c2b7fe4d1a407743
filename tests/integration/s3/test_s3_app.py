"""The registry on S3 through the app (webtest): a push in chunks and a pull, ranges, a re-push that leaves one
object, HEADs answered from the database, and S3 down: 503 UNAVAILABLE in the spec's body, /-/health 503."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa
import webtest

from stevedore.adapters.blobs_s3 import S3BlobStore
from stevedore.adapters.sql.tables import blobs
from stevedore.web.app import build_blob_store, build_components, make_app
from stevedore.web.settings import Settings
from tests.integration.protocol.helpers import digest, error_codes, path_of, push_image, with_query
from tests.integration.s3.moto_server import MotoServer

pytestmark = [pytest.mark.s3, pytest.mark.server]


def object_keys(store: S3BlobStore) -> list[str]:
    listed = store.client.list_objects_v2(Bucket=store.bucket).get("Contents", [])
    return sorted(item["Key"] for item in listed)


def test_a_chunked_push_and_a_pull_through_the_app(testapp, auth, s3_store, db):
    data = bytes(range(256)) * 20  # 5 parts of 1 KiB and a tail
    start = testapp.post("/v2/s3/app/blobs/uploads/", headers={**auth, "Content-Length": "0"}, status=202)
    location = start.headers["Location"]
    for offset in range(0, 4000, 1000):
        chunk = data[offset : offset + 1000]
        response = testapp.request(
            path_of(location),
            method="PATCH",
            body=chunk,
            headers={**auth, "Content-Type": "application/octet-stream", "Content-Range": f"{offset}-{offset + 999}"},
            status=202,
        )
        location = response.headers["Location"]
    done = testapp.put(
        with_query(location, digest=digest(data)),
        params=data[4000:],
        headers=auth,
        content_type="application/octet-stream",
        status=201,
    )
    blob_url = path_of(done.headers["Location"])
    assert testapp.get(blob_url, headers=auth, status=200).body == data
    ranged = testapp.get(blob_url, headers={**auth, "Range": "bytes=1000-2999"}, status=206)
    assert ranged.body == data[1000:3000]
    (stored,) = db.execute(sa.select(blobs.c.storage_key).where(blobs.c.digest == digest(data))).all()
    assert object_keys(s3_store) == [f"registry/{stored.storage_key}"]

    image = push_image(testapp, auth, "s3/app", "v1")
    pulled = testapp.get("/v2/s3/app/manifests/v1", headers={**auth, "Accept": image.media_type}, status=200)
    assert pulled.body == image.body
    for blob in image.blobs:
        assert testapp.get(f"/v2/s3/app/blobs/{digest(blob)}", headers=auth, status=200).body == blob


def test_a_re_push_of_an_existing_blob_leaves_one_object_and_heads_never_ask_s3(testapp, auth, s3_store, db):
    data = b"layer " * 1000  # several parts
    for repo in ("s3/first", "s3/second", "s3/first"):
        start = testapp.post(f"/v2/{repo}/blobs/uploads/", headers=auth, status=202)
        testapp.put(
            with_query(start.headers["Location"], digest=digest(data)),
            params=data,
            headers=auth,
            content_type="application/octet-stream",
            status=201,
        )
    (stored,) = db.execute(sa.select(blobs.c.storage_key).where(blobs.c.digest == digest(data))).all()
    assert object_keys(s3_store) == [f"registry/{stored.storage_key}"]
    asked = []
    s3_store.client.head_object = lambda **kw: asked.append(kw)
    head = testapp.head(f"/v2/s3/second/blobs/{digest(data)}", headers=auth, status=200)
    assert head.headers["Content-Length"] == str(len(data))
    assert asked == []
    assert testapp.get(f"/v2/s3/second/blobs/{digest(data)}", headers=auth, status=200).body == data


def test_the_settings_build_an_s3_store_and_health_heads_the_bucket(moto_server, bucket, settings, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    parsed = Settings.from_mapping(
        {
            **settings.raw,
            "stevedore.storage_url": f"s3://{bucket}/some/prefix",
            "stevedore.s3_endpoint_url": moto_server.endpoint_url,
            "stevedore.s3_region": "us-east-1",
            "stevedore.s3_addressing": "path",
            "stevedore.s3_part_size_mib": "5",
        },
        environ={"STEVEDORE_SECRET_KEY": "s" * 64},
    )
    s3 = dataclasses.replace(
        settings,
        **{name: getattr(parsed, name) for name in ("storage_url", "s3_endpoint_url", "s3_region", "s3_addressing")},
        s3_part_size_mib=parsed.s3_part_size_mib,
    )
    store = build_blob_store(s3)
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix, store.part_size) == (bucket, "some/prefix/", 5 * 1024 * 1024)
    components = build_components(s3, blob_store=store)
    try:
        health = webtest.TestApp(make_app(components)).get("/-/health", status=200)
        assert health.json == {"status": "ok", "database": "ok", "storage": "ok"}
    finally:
        components.engine.dispose()


def test_s3_down_is_a_503_in_the_spec_body_and_health_says_so(settings, user, auth):
    server = MotoServer()
    server.start()
    try:
        store = server.store(server.new_bucket(), part_size=1024)
        components = build_components(settings, blob_store=store)
        app = webtest.TestApp(make_app(components))
        pushed = push_image(app, auth, "s3/down", "v1")
        start = app.post("/v2/s3/down/blobs/uploads/", headers=auth, status=202)
        app.request(
            path_of(start.headers["Location"]),
            method="PATCH",
            body=b"x" * 1500,
            headers={**auth, "Content-Type": "application/octet-stream"},
            status=202,
        )
    finally:
        server.stop()
    try:
        data = b"never stored" * 200
        refused = app.post(
            f"/v2/s3/down/blobs/uploads/?digest={digest(data)}",
            params=data,
            headers=auth,
            content_type="application/octet-stream",
            status=503,
        )
        assert error_codes(refused) == ["UNAVAILABLE"]
        assert refused.json["errors"][0]["message"].startswith("the registry's blob storage is unavailable")
        patch = app.request(
            path_of(start.headers["Location"]),
            method="PATCH",
            body=b"y" * 10,
            headers={**auth, "Content-Type": "application/octet-stream"},
            status=503,
        )
        assert error_codes(patch) == ["UNAVAILABLE"]
        # A POST writes nothing, in the bucket or the database (its ticket is the session): its first bytes meet
        # the outage, and the session stays unopened, so the same ticket works once the bucket is back.
        fresh = app.post("/v2/s3/down/blobs/uploads/", headers=auth, status=202).headers["Location"]
        refused = app.request(
            path_of(fresh),
            method="PATCH",
            body=b"z" * 10,
            headers={**auth, "Content-Type": "application/octet-stream"},
            status=503,
        )
        assert error_codes(refused) == ["UNAVAILABLE"]
        assert app.get(path_of(fresh), headers=auth, status=204).headers["Range"] == "0-0"
        pull = app.get(f"/v2/s3/down/blobs/{digest(pushed.blobs[0])}", headers=auth, status=503)
        assert error_codes(pull) == ["UNAVAILABLE"]
        # HEADs come from the database: they still answer
        app.head(f"/v2/s3/down/blobs/{digest(pushed.blobs[0])}", headers=auth, status=200)
        app.head(f"/v2/s3/down/blobs/{digest(data)}", headers=auth, status=404)  # nothing half-written is visible
        health = app.get("/-/health", status=503)
        assert health.json == {"status": "unavailable", "database": "ok", "storage": "unavailable"}
    finally:
        components.engine.dispose()
