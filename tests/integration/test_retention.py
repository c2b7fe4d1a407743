"""Retention rules applied by `stevedore gc`, in process, over SQLite and PostgreSQL: the N newest matching tags stay
(and immutable ones), the others go with a tag history row each; `--dry-run` lists per repository and changes
nothing; untagged manifests older than N days go, but not those in recent tag history, nor an index's children; the
blobs they alone held are freed in the same run and fsck is consistent; a tag or manifest a push changed after gc
read it is kept."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from stevedore.adapters.sql.engine import make_engine, make_session_factory
from stevedore.adapters.sql.gc import SqlRetentionStore
from stevedore.adapters.sql.registry import SqlRegistryStore
from stevedore.adapters.sql.tables import blobs, manifests, repositories, repository_blobs, tags
from stevedore.adapters.sql.tables_audit import audit_events
from stevedore.adapters.sql.tables_rules import tag_rules
from stevedore.adapters.sql.tables_tag_history import tag_history
from stevedore.domain.model import Digest, RepositoryName, Tag
from stevedore.domain.registry import StoredManifest
from stevedore.domain.rules import RuleKind
from tests.integration.protocol.helpers import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    basic,
    descriptor,
    digest,
    image_manifest,
    index_manifest,
    push_blob,
    push_image,
    put_manifest,
    to_json,
)
from tests.integration.test_fsck import USER, database, make_ini, open_app, prepare, run  # noqa: F401 - fixture
from tests.integration.test_gc import blob_file, blob_rows, rows

pytestmark = [pytest.mark.server, pytest.mark.usefixtures("database")]

AUTH = basic(*USER)
NOW = datetime.now(UTC)


def execute(database_url: str, *statements) -> None:
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(statement)
    finally:
        engine.dispose()


def add_rule(database_url: str, kind: RuleKind, pattern: str, repository: str | None = None, **numbers) -> None:
    execute(
        database_url,
        sa.insert(tag_rules).values(
            namespace="alice", repository=repository, kind=kind.value, pattern=pattern, created_at=NOW, **numbers
        ),
    )


def tag_names(database_url: str) -> dict[str, str]:
    query = sa.select(tags.c.name, manifests.c.digest).join(manifests, manifests.c.id == tags.c.manifest_id)
    return {row.name: row.digest for row in rows(database_url, query)}


def manifest_digests(database_url: str) -> set[str]:
    return {row.digest for row in rows(database_url, sa.select(manifests.c.digest))}


def backdate_tag(database_url: str, tag: str, days: float) -> None:
    execute(database_url, sa.update(tags).where(tags.c.name == tag).values(updated_at=NOW - timedelta(days=days)))


def backdate_manifest(database_url: str, manifest_digest: str, days: float) -> None:
    execute(
        database_url,
        sa.update(manifests).where(manifests.c.digest == manifest_digest).values(created_at=NOW - timedelta(days=days)),
    )


def backdate_all_blobs(database_url: str, days: float) -> None:
    when = NOW - timedelta(days=days)
    execute(
        database_url,
        sa.update(blobs).values(created_at=when),
        sa.update(repository_blobs).values(created_at=when),
    )


def history(database_url: str) -> list[tuple]:
    query = sa.select(
        tag_history.c.tag, tag_history.c.old_digest, tag_history.c.new_digest, tag_history.c.actor, tag_history.c.cause
    ).where(tag_history.c.cause == "retention")
    return sorted(tuple(row) for row in rows(database_url, query))


def retention_events(database_url: str) -> list[str]:
    query = sa.select(audit_events.c.detail).where(audit_events.c.action == "retention_applied")
    return [row.detail for row in rows(database_url, query)]


def test_retention_keeps_the_newest_tags_and_immutable_ones_and_a_dry_run_only_lists(tmp_path, capsys, monkeypatch):
    ini = make_ini(tmp_path)
    settings, (v1, v2) = prepare(capsys, monkeypatch, ini)
    url = settings.database_url
    testapp, components = open_app(ini)
    try:
        pushed = {"v1": v1, "v2": v2}
        for tag in ("v3", "v4", "v5", "latest"):
            pushed[tag] = push_image(testapp, AUTH, "alice/app", tag, seed=tag)
        for age, tag in enumerate(("v5", "v4", "v3", "v2", "v1", "latest")):
            backdate_tag(url, tag, age + 1)
        push_image(testapp, AUTH, "alice/web", "v1", seed="web")  # a repository no rule covers
        add_rule(url, RuleKind.RETENTION, "v*", "alice/app", keep_newest=2)
        add_rule(url, RuleKind.IMMUTABLE, "v1")
        before = tag_names(url)

        status, out, err = run(capsys, monkeypatch, ini, "gc", "--dry-run")
        assert status == 0, err
        lines = out.splitlines()
        assert lines[0] == "retention: would remove 2 tags and 0 untagged manifests in 1 repository"
        assert lines[1] == "  alice/app: tags v2, v3"
        assert "nothing was changed" in out
        assert tag_names(url) == before
        assert history(url) == [] and retention_events(url) == []

        status, out, err = run(capsys, monkeypatch, ini, "gc")
        assert status == 0, err
        assert out.splitlines()[:2] == [
            "retention: removed 2 tags and 0 untagged manifests in 1 repository",
            "  alice/app: tags v2, v3",
        ]
        after = tag_names(url)
        assert set(after) == set(before) - {"v2", "v3"}
        assert history(url) == [
            ("v2", pushed["v2"].digest, None, None, "retention"),
            ("v3", pushed["v3"].digest, None, None, "retention"),
        ]
        assert retention_events(url) == [
            "2 tags, 0 untagged manifests and 0 blob links removed in 1 repositories; 0 tag history rows pruned "
            "(command line)"
        ]
        # Their manifests stay (untagged, pullable by digest), and so do their blobs.
        for tag in ("v2", "v3"):
            testapp.get(f"/v2/alice/app/manifests/{pushed[tag].digest}", headers=AUTH, status=200)
        testapp.get("/v2/alice/app/manifests/v2", headers=AUTH, status=404)

        status, out, err = run(capsys, monkeypatch, ini, "gc")  # nothing more to do: no second event
        assert out.splitlines()[0] == "retention: removed 0 tags and 0 untagged manifests in 0 repositories"
        assert len(retention_events(url)) == 1
    finally:
        components.engine.dispose()


def test_untagged_manifests_go_after_n_days_with_their_blobs_but_not_recent_history_nor_children(
    tmp_path, capsys, monkeypatch
):
    ini = make_ini(tmp_path)
    settings, (v1, _v2) = prepare(capsys, monkeypatch, ini)
    url = settings.database_url
    testapp, components = open_app(ini)
    try:
        old = push_image(testapp, AUTH, "alice/app", None, seed="old")  # goes, with its blobs
        young = push_image(testapp, AUTH, "alice/app", None, seed="young")  # stays: pushed lately
        named = push_image(testapp, AUTH, "alice/app", None, seed="named")  # stays: in recent tag history
        long_ago = push_image(testapp, AUTH, "alice/app", None, seed="long-ago")  # goes: its history is too old
        child = push_image(testapp, AUTH, "alice/app", None, seed="child")  # stays: a tagged index lists it
        put_manifest(testapp, AUTH, "alice/app", "multi", index_manifest([child.descriptor()]), OCI_INDEX)
        dead_child = push_image(testapp, AUTH, "alice/app", None, seed="dead-child")  # goes with its dead index
        dead_index = index_manifest([dead_child.descriptor()])
        put_manifest(testapp, AUTH, "alice/app", digest(dead_index), dead_index, OCI_INDEX)
        shares = push_image(testapp, AUTH, "alice/app", None, seed="v1")  # old, but v1 is tagged and the same
        assert shares.digest == v1.digest
        for manifest_digest in (old, young, named, long_ago, child, dead_child):
            backdate_manifest(url, manifest_digest.digest, 30)
        backdate_manifest(url, digest(dead_index), 30)
        backdate_manifest(url, young.digest, 3)
        backdate_all_blobs(url, 30)
        repository_id = rows(url, sa.select(repositories.c.id).where(repositories.c.name == "alice/app"))[0].id
        execute(
            url,
            sa.insert(tag_history).values(
                repository_id=repository_id,
                tag="gone",
                old_digest=named.digest,
                new_digest=None,
                cause="delete",
                at=NOW - timedelta(days=5),
            ),
            sa.insert(tag_history).values(
                repository_id=repository_id,
                tag="older",
                old_digest=long_ago.digest,
                new_digest=None,
                cause="delete",
                at=NOW - timedelta(days=200),  # past stevedore.tag_history_days (90): pruned
            ),
        )
        add_rule(url, RuleKind.RETENTION, "*", untagged_days=10)
        manifests_before, blobs_before = manifest_digests(url), blob_rows(url)
        doomed = {old.digest, long_ago.digest, digest(dead_index), dead_child.digest}
        freed = {digest(data) for image in (old, long_ago, dead_child) for data in image.blobs}

        status, out, err = run(capsys, monkeypatch, ini, "gc", "--dry-run")
        assert status == 0, err
        assert out.splitlines()[0] == "retention: would remove 0 tags and 4 untagged manifests in 1 repository"
        listed = [line for line in out.splitlines() if line.startswith("  alice/app: untagged manifest ")]
        assert {line.split()[3] for line in listed} == doomed
        assert listed[0].split()[3] == digest(dead_index)  # the index before its child
        assert manifest_digests(url) == manifests_before and blob_rows(url) == blobs_before

        status, out, err = run(capsys, monkeypatch, ini, "gc")
        assert status == 0, err
        assert out.splitlines()[0].startswith("retention: removed 0 tags and 4 untagged manifests in 1 repository")
        assert "forgot 1 tag history rows older than 90 days" in out
        assert manifest_digests(url) == manifests_before - doomed
        assert f"deleted {len(freed)} unreferenced blobs" in out
        assert blob_rows(url) == blobs_before - freed
        for data in (data for image in (old, long_ago, dead_child) for data in image.blobs):
            assert not os.path.exists(blob_file(tmp_path, digest(data)))
        for image in (v1, young, named, child):
            testapp.get(f"/v2/alice/app/manifests/{image.digest}", headers=AUTH, status=200)
            for data in image.blobs:
                assert testapp.get(f"/v2/alice/app/blobs/{digest(data)}", headers=AUTH, status=200).body == data
        testapp.get(f"/v2/alice/app/manifests/{old.digest}", headers=AUTH, status=404)
        testapp.get(f"/v2/alice/app/blobs/{digest(old.blobs[1])}", headers=AUTH, status=404)
        assert retention_events(url) == [
            "0 tags, 4 untagged manifests and 9 blob links removed in 1 repositories; 1 tag history rows pruned "
            "(command line)"
        ]
        status, out, _ = run(capsys, monkeypatch, ini, "fsck")
        assert status == 0, out
        # The old image pushes again: its blobs are uploaded anew.
        again = push_image(testapp, AUTH, "alice/app", "again", seed="old")
        assert again.digest == old.digest
    finally:
        components.engine.dispose()


def test_a_tag_or_manifest_a_push_changed_after_the_read_is_kept(tmp_path, capsys, monkeypatch):
    ini = make_ini(tmp_path)
    settings, (_v1, v2) = prepare(capsys, monkeypatch, ini)
    url = settings.database_url
    testapp, components = open_app(ini)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    try:
        untagged = push_image(testapp, AUTH, "alice/app", None, seed="untagged")
        backdate_manifest(url, untagged.digest, 30)
        with sessions() as session, session.begin():
            states = {state.tag: state for state in SqlRetentionStore(session).tag_states("alice/app")}
        put_manifest(testapp, AUTH, "alice/app", "v1", v2.body, v2.media_type)  # moved after the read
        put_manifest(testapp, AUTH, "alice/app", untagged.digest, untagged.body, untagged.media_type)
        put_manifest(testapp, AUTH, "alice/app", "v2", v2.body, v2.media_type)  # pushed again after the read
        put_manifest(testapp, AUTH, "alice/app", "now-tagged", untagged.body, untagged.media_type)
        with sessions() as session, session.begin():
            store = SqlRetentionStore(session)
            assert store.remove_tag("alice/app", states["v1"], NOW) is False
            assert store.remove_tag("alice/app", states["v2"], NOW) is False
            assert (
                store.remove_manifest(
                    "alice/app",
                    untagged.digest,
                    pushed_before=NOW,
                    history_since=None,
                    links_before=NOW + timedelta(days=1),
                )
                is None
            )
        assert tag_names(url) == {"v1": v2.digest, "v2": v2.digest, "now-tagged": untagged.digest}
        assert untagged.digest in manifest_digests(url)
        assert history(url) == []
        # Untagged manifests that came into recent history, or into an index, after the read: kept too.
        in_history = push_image(testapp, AUTH, "alice/app", None, seed="in-history")
        listed = push_image(testapp, AUTH, "alice/app", None, seed="listed")
        for image in (in_history, listed):
            backdate_manifest(url, image.digest, 30)
        repository_id = rows(url, sa.select(repositories.c.id).where(repositories.c.name == "alice/app"))[0].id
        execute(
            url,
            sa.insert(tag_history).values(
                repository_id=repository_id, tag="x", old_digest=in_history.digest, cause="delete", at=NOW
            ),
        )
        index = index_manifest([listed.descriptor()])
        put_manifest(testapp, AUTH, "alice/app", digest(index), index, OCI_INDEX)
        with sessions() as session, session.begin():
            store = SqlRetentionStore(session)
            for image in (in_history, listed):
                removed = store.remove_manifest(
                    "alice/app",
                    image.digest,
                    pushed_before=NOW,
                    history_since=NOW - timedelta(days=1),
                    links_before=NOW + timedelta(days=1),
                )
                assert removed is None, image
        assert {in_history.digest, listed.digest} <= manifest_digests(url)
        # Unchanged, the same state goes (the control).
        with sessions() as session, session.begin():
            fresh = {state.tag: state for state in SqlRetentionStore(session).tag_states("alice/app")}
            assert SqlRetentionStore(session).remove_tag("alice/app", fresh["v1"], NOW) is True
        assert "v1" not in tag_names(url)
    finally:
        engine.dispose()
        components.engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_retention_and_a_manifest_push_of_the_same_blob_never_leave_a_manifest_without_its_link(database_url):
    """PostgreSQL, deterministic. A push that read a blob first keeps its link (retention skips the held blob); a
    push that reads it while retention holds it waits, then no longer finds the link retention removed (the client
    uploads the blob again) instead of storing a manifest that references a blob its repository no longer holds."""
    import threading

    from sqlalchemy.orm import Session

    from stevedore.adapters.sql.migrations import upgrade
    from stevedore.adapters.sql.registry import SqlRegistryStore
    from stevedore.domain.model import BlobInfo, Digest, RepositoryName
    from stevedore.domain.registry import StoredManifest

    upgrade(database_url)
    engine = make_engine(database_url)
    name = RepositoryName.parse("alice/app")
    layer = Digest.of(b"layer bytes")
    long_ago = NOW - timedelta(days=30)

    def old_manifest(text: bytes) -> StoredManifest:
        with Session(engine) as session, session.begin():
            store = SqlRegistryStore(session)
            manifest = StoredManifest(Digest.of(text), "application/vnd.oci.image.manifest.v1+json", len(text), text)
            store.put_manifest(name, manifest, [layer], [], long_ago)
        return manifest

    def remove(session: Session, manifest: StoredManifest) -> int | None:
        return SqlRetentionStore(session).remove_manifest(
            name.value, str(manifest.digest), pushed_before=NOW, history_since=None, links_before=NOW
        )

    try:
        with Session(engine) as session, session.begin():
            store = SqlRegistryStore(session)
            store.add_blob(BlobInfo(layer, 11), long_ago)
            store.link_blob(name, layer, long_ago)

        # 1. The push reads the blob first: retention removes the old manifest but skips the held link.
        first = old_manifest(b'{"old": 1}')
        with Session(engine) as push, push.begin():
            assert SqlRegistryStore(push).linked_blob_sizes(name, [layer]) == {layer: 11}
            with Session(engine) as retention, retention.begin():
                assert remove(retention, first) == 0  # the manifest went, not the link
            body = b'{"new": 1}'
            new = StoredManifest(Digest.of(body), "application/vnd.oci.image.manifest.v1+json", len(body), body)
            SqlRegistryStore(push).put_manifest(name, new, [layer], [], NOW)
        with Session(engine) as session:
            assert SqlRegistryStore(session).linked_blob(name, layer) is not None

        # 2. Retention holds the blob first: the push waits, then finds no link.
        with Session(engine) as session, session.begin():
            SqlRegistryStore(session).delete_manifest(name, new.digest)
        second = old_manifest(b'{"old": 2}')
        answer: dict[str, object] = {}
        with Session(engine) as retention, retention.begin():
            assert remove(retention, second) == 1

            def push() -> None:
                with Session(engine) as session, session.begin():
                    answer["linked"] = SqlRegistryStore(session).linked_blob_sizes(name, [layer])

            thread = threading.Thread(target=push)
            thread.start()
            thread.join(1.0)
            assert thread.is_alive(), "the push did not wait for the blob retention holds"
        thread.join(10)
        assert answer["linked"] == {}, "the push found a link retention had removed"
    finally:
        engine.dispose()


def test_a_layer_uploaded_again_just_before_gc_stays_for_the_manifest_that_follows(tmp_path, capsys, monkeypatch):
    """The client uploads every blob of a new image, one of them an old layer whose only manifest retention removes;
    gc runs before the manifest's PUT. The upload made the link young again, so the grace period keeps it (and the
    blob), and the PUT succeeds."""
    ini = make_ini(tmp_path)
    settings, _ = prepare(capsys, monkeypatch, ini)
    url = settings.database_url
    testapp, components = open_app(ini)
    try:
        old = push_image(testapp, AUTH, "alice/app", None, seed="old")
        backdate_manifest(url, old.digest, 30)
        backdate_all_blobs(url, 30)
        add_rule(url, RuleKind.RETENTION, "*", untagged_days=10)
        config = to_json({"architecture": "amd64", "os": "linux", "seed": "new"})
        layer = old.blobs[1]
        for blob in (config, layer):
            push_blob(testapp, AUTH, "alice/app", blob)
        status, out, err = run(capsys, monkeypatch, ini, "gc")
        assert status == 0, err
        assert "untagged manifest" in out or "1 untagged" in out or old.digest[7:19] in out, out  # the old one went
        body = image_manifest(descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, layer)])
        put_manifest(testapp, AUTH, "alice/app", "new", body, OCI_MANIFEST, status=201)
    finally:
        components.engine.dispose()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_an_index_tagged_while_retention_removes_its_old_children_keeps_them(database_url):
    """An old untagged index and child; a push tags the index again (it checked the children first) while retention
    removes both: the child the push holds is skipped, so a tagged index never lists a gone child."""
    now = datetime.now(UTC)
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    name = RepositoryName.parse("alice/app")
    child_body, index_body = b'{"child": 1}', b'{"index": 1}'
    child = StoredManifest(Digest.of(child_body), OCI_MANIFEST, len(child_body), child_body)
    index = StoredManifest(Digest.of(index_body), OCI_INDEX, len(index_body), index_body)
    try:
        with sessions() as setup, setup.begin():
            store = SqlRegistryStore(setup)
            store.put_manifest(name, child, [], [], now - timedelta(days=30))
            store.put_manifest(name, index, [], [child.digest], now - timedelta(days=30))
        with sessions() as push, push.begin():
            pusher = SqlRegistryStore(push)
            assert pusher.present_manifests(name, [child.digest]) == {child.digest}
            with sessions() as gc, gc.begin():
                retention = SqlRetentionStore(gc)
                window = {"pushed_before": now, "history_since": None, "links_before": now}
                retention.remove_manifest(name.value, str(index.digest), **window)
                retention.remove_manifest(name.value, str(child.digest), **window)
            pusher.put_manifest(name, index, [], [child.digest], now)
            pusher.tag_manifest(name, Tag.parse("latest"), index.digest, now)
        with sessions() as check:
            left = set(check.execute(sa.select(manifests.c.digest)).scalars())
        assert str(child.digest) in left, "the tagged index lists a child the repository no longer holds"
    finally:
        engine.dispose()
