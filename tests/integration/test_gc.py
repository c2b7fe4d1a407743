"""`stevedore gc` on the folder store, in process, over SQLite and PostgreSQL: only blobs that no repository links
and no manifest references, recorded longer ago than the grace period, go (rows and files); untagged manifests, an
index's children and referrers keep theirs; --dry-run changes nothing; abandoned upload sessions are swept; one audit
event per run that deleted something; fsck is consistent afterwards."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from stevedore.adapters.sql.engine import make_engine
from stevedore.adapters.sql.tables import blobs, repository_blobs, uploads
from stevedore.adapters.sql.tables_audit import audit_events
from tests.integration.protocol.helpers import (
    OCI_INDEX,
    basic,
    digest,
    index_manifest,
    push_artifact,
    push_blob,
    push_image,
    put_manifest,
)
from tests.integration.test_fsck import USER, database, make_ini, open_app, prepare, run  # noqa: F401 - fixture

# `database`: the migrated database on each backend, named by the ini (SQLite) or STEVEDORE_DATABASE_URL.
pytestmark = [pytest.mark.server, pytest.mark.usefixtures("database")]

AUTH = basic(*USER)


def blob_file(base, blob_digest: str) -> str:
    algorithm, hex_ = blob_digest.split(":")
    return str(base / "blobs" / "blobs" / algorithm / hex_[:2] / hex_)


def backdate_blobs(database_url: str, digests: list[str], by: timedelta) -> None:
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.update(blobs).where(blobs.c.digest.in_(digests)).values(created_at=datetime.now(UTC) - by)
            )
    finally:
        engine.dispose()


def rows(database_url: str, query) -> list:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(query))
    finally:
        engine.dispose()


def blob_rows(database_url: str) -> set[str]:
    return {row.digest for row in rows(database_url, sa.select(blobs.c.digest))}


def test_gc_deletes_only_unreferenced_blobs_past_the_grace_period(tmp_path, capsys, monkeypatch):
    ini = make_ini(tmp_path)
    settings, (v1, v2) = prepare(capsys, monkeypatch, ini)
    testapp, components = open_app(ini)
    try:
        # Garbage: a blob pushed then deleted from its only repository, and another one recorded just now.
        old = push_blob(testapp, AUTH, "alice/app", b"an old layer nobody wants" * 40)
        young = push_blob(testapp, AUTH, "alice/app", b"a young layer nobody wants" * 40)
        for unwanted in (old, young):
            testapp.delete(f"/v2/alice/app/blobs/{unwanted}", headers=AUTH, status=202)
        # Kept: an untagged manifest (v3's tag deleted), v2 untagged but a child of an index, a referrer of v1.
        v3 = push_image(testapp, AUTH, "alice/app", "v3", seed="v3")
        testapp.delete("/v2/alice/app/manifests/v3", headers=AUTH, status=202)
        put_manifest(testapp, AUTH, "alice/app", "multi", index_manifest([v2.descriptor()]), OCI_INDEX)
        testapp.delete("/v2/alice/app/manifests/v2", headers=AUTH, status=202)
        signature = push_artifact(
            testapp, AUTH, "alice/app", artifact_type="application/vnd.example.sig", subject=v1.descriptor()
        )
        # An upload session abandoned long ago, and a young one.
        for _ in range(2):
            location = testapp.post("/v2/alice/app/blobs/uploads/", headers=AUTH, status=202).headers["Location"]
            testapp.patch(location, params=b"half", headers=AUTH, content_type="application/octet-stream")
        sessions = [row.id for row in rows(settings.database_url, sa.select(uploads.c.id).order_by(uploads.c.id))]
        assert len(sessions) == 2
        engine = make_engine(settings.database_url)
        with engine.begin() as connection:
            connection.execute(
                sa.update(uploads)
                .where(uploads.c.id == sessions[0])
                .values(created_at=datetime.now(UTC) - timedelta(hours=2))
            )
        engine.dispose()
        backdate_blobs(settings.database_url, [old], timedelta(hours=2))
        before = blob_rows(settings.database_url)
        assert {old, young} <= before

        status, out, err = run(capsys, monkeypatch, ini, "gc", "--dry-run", "--grace-period", "0")
        assert status == 0, err
        assert "would delete 2 unreferenced blobs" in out
        assert "would abort 1 open upload started more than 3600 seconds ago" in out
        assert "nothing was changed" in out
        assert blob_rows(settings.database_url) == before
        assert os.path.exists(blob_file(tmp_path, old)) and os.path.exists(blob_file(tmp_path, young))
        assert len(rows(settings.database_url, sa.select(uploads.c.id))) == 2

        status, out, err = run(capsys, monkeypatch, ini, "gc", "--grace-period", "1h")
        assert status == 0, err
        assert "deleted 1 unreferenced blob recorded more than 1h ago" in out
        assert "aborted 1 open upload started" in out
        assert blob_rows(settings.database_url) == before - {old}
        assert not os.path.exists(blob_file(tmp_path, old))
        assert os.path.exists(blob_file(tmp_path, young))
        assert [row.id for row in rows(settings.database_url, sa.select(uploads.c.id))] == [sessions[1]]

        status, out, err = run(capsys, monkeypatch, ini, "gc", "--grace-period", "0")
        assert status == 0, err
        assert "deleted 1 unreferenced blob" in out
        assert blob_rows(settings.database_url) == before - {old, young}
        assert not os.path.exists(blob_file(tmp_path, young))

        status, out, err = run(capsys, monkeypatch, ini, "gc", "--grace-period", "0")
        assert status == 0, err
        assert "deleted 0 unreferenced blobs" in out

        # Everything a manifest references is still there and pulls.
        for image in (v1, v2, v3, signature):
            testapp.get(f"/v2/alice/app/manifests/{image.digest}", headers=AUTH, status=200)
            for data in image.blobs:
                assert testapp.get(f"/v2/alice/app/blobs/{digest(data)}", headers=AUTH, status=200).body == data
        status, out, err = run(capsys, monkeypatch, ini, "fsck")
        assert status == 0, out

        events = rows(
            settings.database_url,
            sa.select(audit_events.c.detail)
            .where(audit_events.c.action == "garbage_collected")
            .order_by(audit_events.c.id),
        )
        assert len(events) == 2  # the runs that deleted something; not the dry run, not the empty one
        assert events[0].detail.startswith("1 blobs, ")
    finally:
        components.engine.dispose()


def test_a_blob_a_manifest_references_stays_when_its_link_is_deleted(tmp_path, capsys, monkeypatch):
    ini = make_ini(tmp_path)
    settings, (v1, _v2) = prepare(capsys, monkeypatch, ini)
    testapp, components = open_app(ini)
    try:
        layer = digest(v1.blobs[1])
        testapp.delete(f"/v2/alice/app/blobs/{layer}", headers=AUTH, status=202)
        status, out, err = run(capsys, monkeypatch, ini, "gc", "--grace-period", "0")
        assert status == 0, err
        assert "deleted 0 unreferenced blobs" in out
        assert layer in blob_rows(settings.database_url)
        assert os.path.exists(blob_file(tmp_path, layer))
    finally:
        components.engine.dispose()


def test_the_grace_period_setting_is_the_default_and_a_bad_duration_is_refused(tmp_path, capsys, monkeypatch):
    ini = make_ini(tmp_path, extra="stevedore.gc_grace_period = 30m")
    settings, _ = prepare(capsys, monkeypatch, ini)
    testapp, components = open_app(ini)
    try:
        unwanted = push_blob(testapp, AUTH, "alice/app", b"unwanted" * 10)
        testapp.delete(f"/v2/alice/app/blobs/{unwanted}", headers=AUTH, status=202)
        backdate_blobs(settings.database_url, [unwanted], timedelta(minutes=20))
        status, out, _ = run(capsys, monkeypatch, ini, "gc")
        assert status == 0
        assert "deleted 0 unreferenced blobs recorded more than 30m ago" in out
        backdate_blobs(settings.database_url, [unwanted], timedelta(minutes=31))
        status, out, _ = run(capsys, monkeypatch, ini, "gc")
        assert "deleted 1 unreferenced blob recorded more than 30m ago" in out

        status, out, err = run(capsys, monkeypatch, ini, "gc", "--grace-period", "soon")
        assert status == 2
        assert "not a duration: 'soon'" in err
        assert "Traceback" not in err
    finally:
        components.engine.dispose()


@pytest.mark.parametrize("text", ["99999999999999999999d", "36501d", "999999999w"])
def test_a_huge_grace_period_is_refused_clearly(tmp_path, capsys, monkeypatch, text):
    ini = make_ini(tmp_path)
    prepare(capsys, monkeypatch, ini)
    status, _out, err = run(capsys, monkeypatch, ini, "gc", "--grace-period", text)
    assert status == 2
    assert f"too long a duration: '{text}'" in err
    assert "Traceback" not in err


def test_a_database_error_mid_run_reports_and_audits_what_was_done(tmp_path, capsys, monkeypatch):
    """One batch (of one blob) commits, the next fails: the summary and the audit event say what the first did, the
    error is one line, and the exit status is 1."""
    from sqlalchemy.exc import OperationalError

    from stevedore.adapters.sql.gc import SqlGarbageStore

    ini = make_ini(tmp_path)
    settings, _ = prepare(capsys, monkeypatch, ini)
    testapp, components = open_app(ini)
    try:
        garbage = [push_blob(testapp, AUTH, "alice/app", f"garbage {n}".encode() * 10) for n in range(3)]
        for unwanted in garbage:
            testapp.delete(f"/v2/alice/app/blobs/{unwanted}", headers=AUTH, status=202)
        original = SqlGarbageStore.delete_unreferenced
        calls = []

        def second_fails(self, digests, created_before):
            calls.append(digests)
            if len(calls) == 2:
                raise OperationalError("DELETE FROM blobs ...", {}, Exception("server closed the connection\nSQL"))
            return original(self, digests, created_before)

        monkeypatch.setattr("stevedore.domain.gc.DEFAULT_BATCH", 1)
        monkeypatch.setattr(SqlGarbageStore, "delete_unreferenced", second_fails)
        status, out, err = run(capsys, monkeypatch, ini, "gc", "--grace-period", "0")

        assert status == 1
        assert "deleted 1 unreferenced blob recorded more than 0 ago" in out
        assert "garbage collection stopped: OperationalError: (builtins.Exception) server closed the connection" in err
        assert "Traceback" not in err and "DELETE FROM" not in err
        assert len(set(garbage) - blob_rows(settings.database_url)) == 1
        events = rows(
            settings.database_url, sa.select(audit_events.c.detail).where(audit_events.c.action == "garbage_collected")
        )
        assert len(events) == 1
        assert events[0].detail.startswith("1 blobs, ") and "stopped by OperationalError" in events[0].detail
    finally:
        components.engine.dispose()


def test_gc_frees_the_blobs_of_a_deleted_image(tmp_path, capsys, monkeypatch):
    """A manifest deleted through the API leaves its layers linked: gc unlinks the links no manifest of the
    repository references, once older than the grace period, and collects their blobs in the same run. A layer
    another manifest still uses, and a link made again just now (a push in progress), stay."""
    ini = make_ini(tmp_path)
    settings, (v1, _v2) = prepare(capsys, monkeypatch, ini)
    url = settings.database_url
    testapp, components = open_app(ini)
    try:
        gone = push_image(testapp, AUTH, "alice/app", "v3", seed="v3")
        shared = push_image(testapp, AUTH, "alice/app", "v4", seed="v4", layer_count=1)
        testapp.delete(f"/v2/alice/app/manifests/{gone.digest}", headers=AUTH, status=202)
        testapp.delete(f"/v2/alice/app/manifests/{shared.digest}", headers=AUTH, status=202)
        engine = make_engine(url)
        try:
            with engine.begin() as connection:
                old = datetime.now(UTC) - timedelta(days=2)
                connection.execute(sa.update(blobs).values(created_at=old))
                connection.execute(sa.update(repository_blobs).values(created_at=old))
        finally:
            engine.dispose()
        # A push in progress uploads v4's blobs again: its links are young again, so they stay.
        for blob in shared.blobs:
            push_blob(testapp, AUTH, "alice/app", blob)

        status, out, err = run(capsys, monkeypatch, ini, "gc", "--dry-run")
        assert status == 0, err
        assert f"would unlink {len(gone.blobs)} blob links" in out, out
        assert {digest(b) for b in gone.blobs} <= blob_rows(url)

        status, out, err = run(capsys, monkeypatch, ini, "gc")
        assert status == 0, err
        assert f"unlinked {len(gone.blobs)} blob links" in out, out
        left = blob_rows(url)
        assert not {digest(b) for b in gone.blobs} & left  # the deleted image's blobs: rows and files
        assert not any(os.path.exists(blob_file(tmp_path, digest(b))) for b in gone.blobs)
        assert {digest(b) for b in shared.blobs} <= left  # uploaded again just now
        assert {digest(b) for b in v1.blobs} <= left  # v1 still uses them
        status, out, err = run(capsys, monkeypatch, ini, "fsck")
        assert status == 0, out + err
    finally:
        components.engine.dispose()
