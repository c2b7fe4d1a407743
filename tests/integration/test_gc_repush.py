"""A re-push on the folder store while `stevedore gc` collects the digest's old, unreferenced row, on SQLite and
PostgreSQL: the collector runs inside the push's finish, after the bytes were verified and placed (linked to the
digest's path, or found there) but before the push holds the row, so it deletes the old row and unlinks the file. The
push must still succeed (201) and the blob download: the finish kept its verified bytes and puts them back once it
holds the row (FolderBlobStore.restore). Before that, the closing PUT answered 404 BLOB_UPLOAD_UNKNOWN and its retry
404 again: the finish had already removed the session's bytes."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from datetime import timedelta

import pytest
import webtest
from pyramid.paster import get_appsettings

from stevedore.adapters.blobs_fs import FolderBlobStore
from stevedore.adapters.clock import SystemClock
from stevedore.adapters.sql.gc import garbage_units
from stevedore.domain.gc import GarbageCollector
from stevedore.domain.model import BlobInfo, Digest
from stevedore.web.app import build_components, make_app
from stevedore.web.settings import Settings
from tests.integration.protocol.helpers import basic, digest, with_query
from tests.integration.test_fsck import USER, database, make_ini, prepare  # noqa: F401 - fixture
from tests.integration.test_gc import backdate_blobs, blob_file

pytestmark = [pytest.mark.server, pytest.mark.usefixtures("database")]

AUTH = basic(*USER)
DATA = b"a layer that was garbage " * 50


class CollectDuringFinish(FolderBlobStore):
    """A folder store that, once armed, runs one collection (on another thread, as another process would) right
    after a finish placed the bytes: before the finishing request holds the blob's row."""

    collector: GarbageCollector | None = None
    collected = 0

    def finish(
        self, upload_id: str, digest: Digest, final_chunks: Iterable[bytes] = (), *, place: bool = True
    ) -> BlobInfo:
        info = super().finish(upload_id, digest, final_chunks, place=place)
        collector, self.collector = self.collector, None
        if collector is not None:
            results = []
            thread = threading.Thread(target=lambda: results.append(collector.collect(grace=timedelta(hours=1))))
            thread.start()
            thread.join(timeout=30)
            assert not thread.is_alive(), "the collector waited for the finishing push"
            self.collected = results[0].objects
        return info


@pytest.mark.parametrize("file_left", [True, False], ids=["file-reused", "file-placed"])
@pytest.mark.parametrize("how", ["session", "monolithic"])
def test_a_repush_while_gc_collects_the_old_row_succeeds(tmp_path, capsys, monkeypatch, how, file_left):
    ini = make_ini(tmp_path, extra="stevedore.blob_fsync = false")
    prepare(capsys, monkeypatch, ini)
    settings = Settings.from_mapping(get_appsettings(ini, "main"))
    store = CollectDuringFinish(str(tmp_path / "blobs"), fsync=False)
    components = build_components(settings, blob_store=store)
    try:
        app = webtest.TestApp(make_app(components))
        d = digest(DATA)
        # Pushed once, then unlinked and old: garbage.
        app.post(
            with_query("/v2/alice/app/blobs/uploads/", digest=d),
            params=DATA,
            headers=AUTH,
            content_type="application/octet-stream",
            status=201,
        )
        app.delete(f"/v2/alice/app/blobs/{d}", headers=AUTH, status=202)
        backdate_blobs(settings.database_url, [d], timedelta(days=30))
        if not file_left:  # a row whose file is already gone: the finish links its bytes to the digest's path
            os.unlink(blob_file(tmp_path, d))
        reads, writes = garbage_units(components.engine)
        store.collector = GarbageCollector(reads, writes, store, SystemClock())

        if how == "session":
            started = app.post("/v2/alice/app/blobs/uploads/", headers=AUTH, status=202)
            location = started.headers["Location"]
            patched = app.patch(
                location,
                params=DATA,
                headers={**AUTH, "Content-Range": f"0-{len(DATA) - 1}"},
                content_type="application/octet-stream",
                status=202,
            )
            answer = app.put(with_query(patched.headers["Location"], digest=d), headers=AUTH, status="*")
        else:
            answer = app.post(
                with_query("/v2/alice/app/blobs/uploads/", digest=d),
                params=DATA,
                headers=AUTH,
                content_type="application/octet-stream",
                status="*",
            )

        assert store.collected == 1, "the collector did not collect the old row: the race was not staged"
        assert answer.status_int == 201, answer.body
        pulled = app.get(f"/v2/alice/app/blobs/{d}", headers=AUTH, status=200)
        assert pulled.body == DATA
        assert os.path.exists(blob_file(tmp_path, d))
        assert os.listdir(tmp_path / "blobs" / "uploads") == [], "the finished upload's kept bytes stayed behind"
    finally:
        components.engine.dispose()
