"""Quotas enforced on /v2/, on SQLite and PostgreSQL (and S3 through moto): a blob beyond a namespace's byte quota is
refused with the spec's DENIED (403) naming the quota, what is used and the limit, and is neither recorded nor
pullable; a blob the namespace holds already always passes; the repositories quota refuses the next new repository;
on PostgreSQL a push waits for another holding the quota's row before it sums."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
import transaction
import webtest

from stevedore.adapters.sql.engine import join_transaction, make_engine
from stevedore.adapters.sql.quotas import SqlQuotaStore
from stevedore.adapters.sql.tables import blobs, repositories, repository_blobs
from stevedore.adapters.sql.tables_quotas import namespace_quotas
from stevedore.domain.model import RepositoryName
from stevedore.domain.quotas import Quota
from stevedore.web.app import build_components, make_app
from tests.integration.protocol.helpers import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    basic,
    descriptor,
    digest,
    error_codes,
    image_manifest,
    path_of,
    push_blob,
    put_manifest,
    with_query,
)
from tests.integration.s3.moto_server import moto_server  # noqa: F401 - a fixture

ALICE = ("alice", "correct horse battery")


@pytest.fixture
def auth(make_user):
    make_user(*ALICE)
    return basic(*ALICE)


def set_quota(components, namespace, max_bytes=None, max_repositories=None):
    session = components.write_sessions()
    with transaction.manager:
        join_transaction(session)
        SqlQuotaStore(session).put_quota(Quota(namespace, max_bytes, max_repositories, datetime.now(UTC), "root"))
    session.close()


def usage(components, namespace):
    engine = components.engine
    with engine.connect() as conn:
        return SqlQuotaStore(conn).usage(namespace)


def recorded(db, data: bytes) -> bool:
    db.rollback()
    return db.execute(sa.select(blobs.c.digest).where(blobs.c.digest == digest(data))).first() is not None


def monolithic(testapp, auth, repo, data, status):
    return testapp.post(
        with_query(f"/v2/{repo}/blobs/uploads/", digest=digest(data)),
        params=data,
        headers=auth,
        content_type="application/octet-stream",
        status=status,
    )


def chunked(testapp, auth, repo, data, status):
    """POST, one PATCH with every byte, then a PUT ?digest= with no body: docker's way."""
    start = testapp.post(f"/v2/{repo}/blobs/uploads/", headers=auth, status=202)
    patched = testapp.patch(
        path_of(start.headers["Location"]),
        params=data,
        headers=auth,
        content_type="application/octet-stream",
        status=202,
    )
    return testapp.put(with_query(patched.headers["Location"], digest=digest(data)), headers=auth, status=status)


def assert_denied(response, text):
    assert response.status_int == 403
    assert error_codes(response) == ["DENIED"]
    message = response.json["errors"][0]["message"]
    assert message == text, message
    return response.json["errors"][0]


def assert_not_kept(testapp, auth, db, repo, data):
    assert not recorded(db, data)
    testapp.head(f"/v2/{repo}/blobs/{digest(data)}", headers=auth, status=404)
    testapp.get(f"/v2/{repo}/blobs/{digest(data)}", headers=auth, status=404)


@pytest.mark.parametrize("push", [monolithic, chunked])
def test_a_blob_beyond_the_byte_quota_is_denied_and_not_kept(testapp, auth, components, db, push):
    set_quota(components, "alice", max_bytes=1000)
    push_blob(testapp, auth, "alice/app", b"a" * 600)
    big = b"b" * 700
    error = assert_denied(
        push(testapp, auth, "alice/app", big, 403),
        "namespace alice is over its storage quota: 600 B used of 1000 B, and this blob needs 700 B",
    )
    assert error["detail"] == {"namespace": "alice", "quota": "bytes", "used": 600, "limit": 1000, "needed": 700}
    assert_not_kept(testapp, auth, db, "alice/app", big)
    assert usage(components, "alice").bytes == 600
    push(testapp, auth, "alice/app", b"c" * 400, 201)  # exactly up to the quota
    assert usage(components, "alice").bytes == 1000


def test_human_units_in_the_message(testapp, auth, components, db):
    set_quota(components, "alice", max_bytes=10 * 2**20)
    push_blob(testapp, auth, "alice/app", b"a" * (9 * 2**20 + 600 * 2**10))
    big = b"b" * (700 * 2**10)
    assert_denied(
        monolithic(testapp, auth, "alice/app", big, 403),
        "namespace alice is over its storage quota: 9.6 MiB used of 10 MiB, and this blob needs 700 KiB",
    )


def test_an_upload_into_a_full_namespace_is_refused_at_its_post(testapp, auth, components, db):
    set_quota(components, "alice", max_bytes=1000)
    push_blob(testapp, auth, "alice/app", b"a" * 1000)
    response = testapp.post("/v2/alice/app/blobs/uploads/", headers=auth, status=403)
    assert_denied(response, "namespace alice is at its storage quota: 1000 B used of 1000 B")
    assert "Location" not in response.headers


def test_a_blob_the_namespace_holds_passes_at_and_over_the_quota(testapp, auth, components, db):
    layer = b"L" * 1000
    push_blob(testapp, auth, "alice/app", layer)
    set_quota(components, "alice", max_bytes=900)  # lowered below what it holds
    monolithic(testapp, auth, "alice/app", layer, 201)  # a re-push
    monolithic(testapp, auth, "alice/web", layer, 201)  # into another repository of the namespace
    mounted = testapp.post(
        with_query("/v2/alice/db/blobs/uploads/", mount=digest(layer), **{"from": "alice/app"}), headers=auth
    )
    assert mounted.status_int == 201
    assert testapp.get(f"/v2/alice/db/blobs/{digest(layer)}", headers=auth, status=200).body == layer
    assert usage(components, "alice").blob_bytes == 1000
    # Anything new is refused, and a manifest too once over the quota.
    assert_denied(
        testapp.post("/v2/alice/app/blobs/uploads/", headers=auth, status=403),
        "namespace alice is over its storage quota: 1000 B used of 900 B",
    )


def test_a_mount_from_another_namespace_counts(testapp, auth, components, make_user, db):
    make_user("bob", "another good password")
    bob = basic("bob", "another good password")
    layer = b"B" * 800
    push_blob(testapp, bob, "bob/base", layer)
    set_quota(components, "alice", max_bytes=1000)
    push_blob(testapp, auth, "alice/app", b"a" * 300)
    response = testapp.post(
        with_query("/v2/alice/app/blobs/uploads/", mount=digest(layer), **{"from": "bob/base"}),
        headers=auth,
        status=403,
    )
    assert_denied(
        response, "namespace alice is over its storage quota: 300 B used of 1000 B, and this blob needs 800 B"
    )
    testapp.head(f"/v2/alice/app/blobs/{digest(layer)}", headers=auth, status=404)


def test_a_manifest_is_refused_once_the_namespace_is_over(testapp, auth, components, db):
    config, layer = b'{"architecture":"amd64","os":"linux"}', b"layer" * 100
    push_blob(testapp, auth, "alice/app", config)
    push_blob(testapp, auth, "alice/app", layer)
    body = image_manifest(descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, layer)])
    set_quota(components, "alice", max_bytes=len(config) + len(layer))  # exactly full: its manifest still goes in
    put_manifest(testapp, auth, "alice/app", "v1", body, OCI_MANIFEST)
    other = image_manifest(descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, layer)], annotations={"a": "b"})
    response = put_manifest(testapp, auth, "alice/app", "v2", other, OCI_MANIFEST, status=403)
    assert error_codes(response) == ["DENIED"]
    assert "over its storage quota" in response.json["errors"][0]["message"]


def test_the_repositories_quota_refuses_the_next_new_repository(testapp, auth, components, db):
    set_quota(components, "alice", max_repositories=2)
    push_blob(testapp, auth, "alice/one", b"1")
    push_blob(testapp, auth, "alice/two", b"2")
    response = testapp.post("/v2/alice/three/blobs/uploads/", headers=auth, status=403)
    assert_denied(
        response, "namespace alice is at its repositories quota: it has 2 of 2, so alice/three cannot be created"
    )
    monolithic(testapp, auth, "alice/three", b"3", 403)
    db.rollback()
    assert db.execute(sa.select(repositories.c.name).where(repositories.c.name == "alice/three")).first() is None
    push_blob(testapp, auth, "alice/one", b"more")  # an existing repository takes more


def test_usage_counts_a_layer_shared_by_two_repositories_once(testapp, auth, components, db):
    shared, own = b"S" * 5000, b"O" * 300
    push_blob(testapp, auth, "alice/app", shared)
    push_blob(testapp, auth, "alice/web", shared)
    push_blob(testapp, auth, "alice/web", own)
    found = usage(components, "alice")
    assert (found.blob_bytes, found.manifest_bytes, found.repositories) == (5300, 0, 2)
    engine = components.engine
    with engine.connect() as conn:
        store = SqlQuotaStore(conn)
        assert store.repository_usage(RepositoryName.parse("alice/web")).bytes == 5300
        assert store.repository_usage(RepositoryName.parse("alice/app")).bytes == 5000
        assert store.holds_blob("alice", sa_digest(shared))
        assert not store.holds_blob("alicex", sa_digest(shared))


def sa_digest(data: bytes):
    from stevedore.domain.model import Digest

    return Digest.parse(digest(data))


def test_namespace_ranges_do_not_leak_into_similar_names(testapp, auth, components, make_user, db):
    """`alice` must not count `alice-ci/...` nor `alice0/...` (the range ends before '0')."""
    for name in ("alice-ci", "alice0", "alicf"):
        make_user(name, "a good long password")
        push_blob(testapp, basic(name, "a good long password"), f"{name}/x", name.encode() * 10)
    push_blob(testapp, auth, "alice/app", b"mine")
    assert usage(components, "alice").bytes == 4
    assert usage(components, "alice").repositories == 1


# --- S3: the refused upload's object is deleted ----------------------------------------------------------------------


def object_keys(store) -> list[str]:
    listed = store.client.list_objects_v2(Bucket=store.bucket, Prefix="registry/objects/").get("Contents", [])
    return sorted(item["Key"] for item in listed)


@pytest.mark.s3
@pytest.mark.server
def test_on_s3_a_refused_blob_leaves_no_object(settings, make_user, moto_server):  # noqa: F811
    store = moto_server.store(moto_server.new_bucket(), part_size=1024)
    components = build_components(settings, blob_store=store)
    try:
        testapp = webtest.TestApp(make_app(components))
        make_user(*ALICE)
        auth = basic(*ALICE)
        set_quota(components, "alice", max_bytes=100)
        push_blob(testapp, auth, "alice/app", b"k" * 60)
        kept = object_keys(store)
        assert len(kept) == 1
        for push, data in ((monolithic, b"r" * 50), (chunked, b"s" * 2000)):
            push(testapp, auth, "alice/app", data, 403)
            testapp.head(f"/v2/alice/app/blobs/{digest(data)}", headers=auth, status=404)
        assert object_keys(store) == kept
    finally:
        components.engine.dispose()


# --- PostgreSQL: the quota's row serializes pushes into the namespace ------------------------------------------------


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # row locks: SQLite serializes its writers
def test_on_postgres_a_push_sums_only_after_another_holding_the_quota_row_commits(
    testapp, auth, components, database_url, db
):
    """Deterministic: another transaction holds the quota's row and adds 600 bytes to the namespace; a push of 600
    bytes into a 1000-byte quota must wait for it and then be refused. Summing without the lock it would see 0 used
    and pass, leaving the namespace at 1200 bytes."""
    set_quota(components, "alice", max_bytes=1000)
    push_blob(testapp, auth, "alice/app", b"first")  # the repository exists
    other = make_engine(database_url)
    holder = other.connect()
    holding = holder.begin()
    now = datetime.now(UTC)
    held = b"H" * 600
    holder.execute(sa.select(namespace_quotas).where(namespace_quotas.c.namespace == "alice").with_for_update())
    holder.execute(sa.insert(blobs).values(digest=digest(held), size=600, created_at=now, storage_key=None))
    repo_id = holder.execute(sa.select(repositories.c.id).where(repositories.c.name == "alice/app")).scalar_one()
    holder.execute(sa.insert(repository_blobs).values(repository_id=repo_id, digest=digest(held), created_at=now))

    result: dict[str, int] = {}

    def push() -> None:
        result["status"] = monolithic(testapp, auth, "alice/app", b"P" * 600, "*").status_int

    pusher = threading.Thread(target=push)
    pusher.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with other.connect() as watcher:
                waiting = watcher.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                    )
                ).scalar_one()
            if waiting:
                break
            time.sleep(0.02)
        assert waiting, "the push never waited for the quota's row"
        assert "status" not in result
        holding.commit()
    finally:
        if holding.is_active:
            holding.rollback()
        holder.close()
        pusher.join(30)
        other.dispose()
    assert result["status"] == 403
    assert usage(components, "alice").blob_bytes == 600 + len(b"first")
