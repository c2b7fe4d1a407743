"""`stevedore upload sweep` on the folder store, in process over a real SQLite database: every account's sessions
started more than the limit ago are aborted with their bytes, younger ones are kept, and a finish of an old session
that is committing at that moment is not broken (the sweep waits for it, then finds its row gone)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from stevedore.adapters.blobs_fs import FolderBlobStore
from stevedore.adapters.clock import SystemClock
from stevedore.adapters.sql.engine import make_engine, make_session_factory, writer_engine
from stevedore.adapters.sql.registry import SqlRegistryStore
from stevedore.adapters.sql.tables import uploads
from stevedore.domain.model import Digest, RepositoryName
from stevedore.domain.registry import RegistryService
from tests.integration.protocol.helpers import basic, digest, session_id, with_query
from tests.integration.test_fsck import USER, make_ini, open_app, prepare, run

pytestmark = pytest.mark.server

AUTH = basic(*USER)


def start(testapp, data: bytes = b"") -> tuple[str, str]:
    """An upload session of alice's with `data` sent (its first PATCH opens it: its row, its folder); (its session
    id, its Location)."""
    location = testapp.post("/v2/alice/app/blobs/uploads/", headers=AUTH, status=202).headers["Location"]
    patched = testapp.patch(location, params=data, headers=AUTH, content_type="application/octet-stream")
    location = patched.headers["Location"]
    return session_id(location), location


def backdate(database_url: str, upload_ids: list[str], seconds: int) -> None:
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            started = datetime.now(UTC) - timedelta(seconds=seconds)
            connection.execute(sa.update(uploads).where(uploads.c.id.in_(upload_ids)).values(created_at=started))
    finally:
        engine.dispose()


def test_old_sessions_are_aborted_with_their_bytes_and_young_ones_kept(tmp_path, capsys, monkeypatch):
    ini = make_ini(tmp_path)
    settings, _ = prepare(capsys, monkeypatch, ini)
    testapp, components = open_app(ini)
    try:
        old = [start(testapp, b"half a layer"), start(testapp)]
        young, young_location = start(testapp, b"still coming")
        backdate(settings.database_url, [upload for upload, _ in old], 3601)
        backdate(settings.database_url, [young], 3500)
        data_folder = tmp_path / "blobs" / "uploads"
        assert {path.name for path in data_folder.iterdir()} == {old[0][0], old[1][0], young}

        status, out, err = run(capsys, monkeypatch, ini, "upload", "sweep")
        assert status == 0, err
        assert out.strip() == "aborted 2 open uploads started more than 3600 seconds ago"
        assert {path.name for path in data_folder.iterdir()} == {young}
        testapp.patch(old[0][1], params=b"more", headers=AUTH, content_type="application/octet-stream", status=404)
        with sa.create_engine(settings.database_url).connect() as connection:
            assert set(connection.execute(sa.select(uploads.c.id)).scalars()) == {young}

        # The young one goes on and finishes.
        layer = b"still coming" + b" and done"
        testapp.put(
            with_query(young_location, digest=digest(layer)),
            params=b" and done",
            headers=AUTH,
            content_type="application/octet-stream",
            status=201,
        )
        assert testapp.get(f"/v2/alice/app/blobs/{digest(layer)}", headers=AUTH).body == layer

        status, out, _ = run(capsys, monkeypatch, ini, "upload", "sweep", "--older-than", "0")
        assert status == 0
        assert out.strip() == "aborted 0 open uploads started more than 0 seconds ago"
    finally:
        components.engine.dispose()


def test_the_limit_given_on_the_command_line(tmp_path, capsys, monkeypatch):
    ini = make_ini(tmp_path)
    settings, _ = prepare(capsys, monkeypatch, ini)
    testapp, components = open_app(ini)
    try:
        upload, _ = start(testapp, b"a bit")
        backdate(settings.database_url, [upload], 120)
        status, out, _ = run(capsys, monkeypatch, ini, "upload", "sweep", "--older-than", "300")
        assert (status, out.strip()) == (0, "aborted 0 open uploads started more than 300 seconds ago")
        status, out, _ = run(capsys, monkeypatch, ini, "upload", "sweep", "--older-than", "60")
        assert (status, out.strip()) == (0, "aborted 1 open upload started more than 60 seconds ago")
        assert list((tmp_path / "blobs" / "uploads").iterdir()) == []
        with pytest.raises(SystemExit):
            run(capsys, monkeypatch, ini, "upload", "sweep", "--older-than", "-5")
        assert "not a number of seconds" in capsys.readouterr().err
    finally:
        components.engine.dispose()


def test_a_finish_committing_while_the_sweep_runs_is_not_broken(tmp_path, capsys, monkeypatch):
    ini = make_ini(tmp_path)
    settings, _ = prepare(capsys, monkeypatch, ini)
    testapp, components = open_app(ini)
    layer = b"an old layer, finished at last"
    try:
        upload, _ = start(testapp, layer)
        backdate(settings.database_url, [upload], 7200)

        # The finish, as the request runs it: bytes committed into the store, rows written, transaction open (on
        # SQLite it holds the write lock, as a PostgreSQL transaction holds the upload row's lock once it deleted it).
        engine = writer_engine(make_engine(settings.database_url))
        session = make_session_factory(engine)()
        finishing = RegistryService(SqlRegistryStore(session), FolderBlobStore(str(tmp_path / "blobs")), SystemClock())
        info = finishing.finish_upload(RepositoryName.parse("alice/app"), upload, 1, Digest.parse(digest(layer)))

        result: dict[str, object] = {}

        def sweep() -> None:
            result["sweep"] = run(capsys, monkeypatch, ini, "upload", "sweep")

        sweeper = threading.Thread(target=sweep)
        sweeper.start()
        time.sleep(0.5)
        assert sweeper.is_alive(), "the sweep should wait for the finish's transaction"
        session.commit()
        session.close()
        engine.dispose()
        sweeper.join(30)

        status, out, err = result["sweep"]  # type: ignore[misc]
        assert status == 0, err
        assert out.strip() == "aborted 0 open uploads started more than 3600 seconds ago"
        assert info.digest == Digest.parse(digest(layer))
        assert testapp.get(f"/v2/alice/app/blobs/{digest(layer)}", headers=AUTH).body == layer
        status, out, _ = run(capsys, monkeypatch, ini, "fsck", "--verify-digests")
        assert status == 0, out
    finally:
        components.engine.dispose()


# --- the store's query, on SQLite and PostgreSQL -------------------------------------------------------------------
def _add_uploads(database_url: str, ages: dict[str, int]) -> datetime:
    """Upload rows of `ages` (id: seconds before now); now."""
    from stevedore.domain.registry import UploadSession

    now = datetime.now(UTC)
    engine = make_engine(database_url)
    session = make_session_factory(writer_engine(engine))()
    try:
        store = SqlRegistryStore(session)
        name = RepositoryName.parse("alice/app")
        store.ensure_repository(name, now)
        for upload, age in ages.items():
            store.add_upload(UploadSession(upload, name, None, "sha256", now - timedelta(seconds=age)))
        session.commit()
    finally:
        session.close()
        engine.dispose()
    return now


def test_the_query_deletes_old_sessions_of_every_account_and_reports_only_what_it_deleted(database_url):
    old, young = "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"
    finishing = "00000000-0000-4000-8000-000000000003"
    now = _add_uploads(database_url, {old: 7200, young: 60, finishing: 7200})
    engine = writer_engine(make_engine(database_url))
    finish_session = make_session_factory(engine)()
    sweep_session = make_session_factory(engine)()
    try:
        # A finish deletes its row and has not committed yet; the sweep's DELETE waits for it, then skips that row.
        SqlRegistryStore(finish_session).delete_upload(finishing)
        result: dict[str, list[str]] = {}

        def sweep() -> None:
            result["ids"] = SqlRegistryStore(sweep_session).delete_uploads_created_before(now - timedelta(seconds=3600))
            sweep_session.commit()

        sweeper = threading.Thread(target=sweep)
        sweeper.start()
        time.sleep(0.5)
        finish_session.commit()
        sweeper.join(30)
        assert result["ids"] == [old]
        with engine.connect() as connection:
            assert set(connection.execute(sa.select(uploads.c.id)).scalars()) == {young}
    finally:
        finish_session.close()
        sweep_session.close()
        engine.dispose()
