"""The command line's order of writes, run in-process on both databases: `user delete` disables the account and
commits, deletes it (its upload rows with it) and commits, and only then removes the upload bytes from the blob
store; `upload abort` likewise removes the bytes only once the rows' removal has committed."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

from stevedore import cli
from stevedore.adapters.blobs_fs import FolderBlobStore
from stevedore.adapters.sql.engine import make_engine
from stevedore.adapters.sql.tables import accounts, uploads
from stevedore.domain.accounts import AccountService
from tests.integration.protocol.helpers import basic, open_upload, path_of, session_id
from tests.integration.services import free_port, write_ini

PASSWORD = "correct horse battery"


@pytest.fixture
def ini(settings, tmp_path):
    """An ini for the command line on the test's database and blob folder."""
    folder = tmp_path / "cli"
    folder.mkdir()
    path = str(folder / "cli.ini")
    write_ini(path, database_url=settings.database_url, storage_dir=settings.storage_path, port=free_port())
    return path


@pytest.fixture
def alice_uploads(testapp, make_user):
    make_user("alice", PASSWORD)
    started = [open_upload(testapp, basic("alice", PASSWORD), "team/app") for _ in "ab"]
    testapp.patch(path_of(started[0]), params=b"half a layer", headers=basic("alice", PASSWORD))
    return [session_id(location) for location in started]  # the rows' and the folders' ids


def upload_folders(settings) -> set[str]:
    folder = os.path.join(settings.storage_path, "uploads")
    return set(os.listdir(folder)) if os.path.isdir(folder) else set()


def committed(settings, query):
    """What another connection sees: only committed rows."""
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(query).all()
    finally:
        engine.dispose()


class WatchedBlobStore(FolderBlobStore):
    """Records, at each abort, whether the account's rows were already gone for everyone (committed)."""

    def __init__(self, settings) -> None:
        super().__init__(settings.storage_path, fsync=False)
        self.settings = settings
        self.seen: list[tuple[str, int, int]] = []

    def abort(self, upload_id: str) -> None:
        left = committed(self.settings, sa.select(accounts.c.id).where(accounts.c.username == "alice"))
        rows = committed(self.settings, sa.select(uploads.c.id).where(uploads.c.id == upload_id))
        self.seen.append((upload_id, len(left), len(rows)))
        super().abort(upload_id)


def test_user_delete_removes_upload_bytes_only_after_the_deletion_committed(
    ini, settings, alice_uploads, monkeypatch, capsys
):
    watched = WatchedBlobStore(settings)
    monkeypatch.setattr("stevedore.web.app.build_blob_store", lambda _settings: watched)
    assert upload_folders(settings) == set(alice_uploads)

    assert cli.main(["--config", ini, "user", "delete", "alice"]) == 0

    assert capsys.readouterr().out.splitlines() == ["aborted 2 open uploads", "deleted user alice"]
    assert sorted(watched.seen) == sorted((upload_id, 0, 0) for upload_id in alice_uploads)
    assert upload_folders(settings) == set()
    assert committed(settings, sa.select(uploads.c.id)) == []


def test_a_user_delete_that_fails_leaves_the_account_disabled_and_its_uploads_whole(
    ini, settings, testapp, alice_uploads, monkeypatch
):
    def fail(self, username):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(AccountService, "delete_account", fail)
    with pytest.raises(RuntimeError):
        cli.main(["--config", ini, "user", "delete", "alice"])

    assert committed(settings, sa.select(accounts.c.is_active).where(accounts.c.username == "alice")) == [(False,)]
    assert sorted(row.id for row in committed(settings, sa.select(uploads.c.id))) == sorted(alice_uploads)
    assert upload_folders(settings) == set(alice_uploads)  # every row still has its bytes
    testapp.get("/v2/", headers=basic("alice", PASSWORD), status=401)  # and the account can do nothing meanwhile

    monkeypatch.undo()
    assert cli.main(["--config", ini, "user", "delete", "alice"]) == 0  # run again, it completes
    assert upload_folders(settings) == set()
    assert committed(settings, sa.select(uploads.c.id)) == []


def test_upload_abort_removes_bytes_only_after_the_rows_removal_committed(
    ini, settings, alice_uploads, monkeypatch, capsys
):
    watched = WatchedBlobStore(settings)
    monkeypatch.setattr("stevedore.web.app.build_blob_store", lambda _settings: watched)

    assert cli.main(["--config", ini, "upload", "abort", "alice"]) == 0

    assert capsys.readouterr().out == "aborted 2 open uploads of user alice\n"
    assert sorted(watched.seen) == sorted((upload_id, 1, 0) for upload_id in alice_uploads)  # alice stays
    assert upload_folders(settings) == set()
