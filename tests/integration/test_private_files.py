"""The files under ./var hold password hashes and every blob: only the server's user may read them."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import urllib.request

import pytest

from stevedore.adapters.sql.engine import make_engine
from tests.integration.services import WaitressProcess, free_port, stevedore_cli, write_ini


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask():
    """The usual umask (022), under which files used to come out world-readable."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.server
def test_a_fresh_installation_keeps_its_database_and_blobs_to_itself(tmp_path, open_umask):
    var = tmp_path / "var"
    port = free_port()
    ini = str(tmp_path / "private.ini")
    write_ini(ini, database_url=f"sqlite:///{var}/stevedore.sqlite", storage_dir=str(var / "blobs"), port=port)
    assert stevedore_cli(ini, "db", "upgrade").returncode == 0
    created = stevedore_cli(ini, "user", "create", "owner", "--password-stdin", stdin="private files only\n")
    assert created.returncode == 0, created.stderr
    server = WaitressProcess(ini, port, str(tmp_path / "server.log"))
    server.start()
    try:
        data = b"a private layer"
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v2/private/repo/blobs/uploads/?digest={digest}",
            data=data,
            method="POST",
            headers={"Authorization": "Basic " + base64.b64encode(b"owner:private files only").decode()},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 201

        assert _mode(var) == 0o700
        names = sorted(os.listdir(var))
        assert {"stevedore.sqlite", "stevedore.sqlite-wal", "stevedore.sqlite-shm"} <= set(names), names
        for name in names:
            if name.startswith("stevedore.sqlite"):
                assert _mode(var / name) == 0o600, name
        assert _mode(var / "blobs") == 0o700
    finally:
        server.stop()


def test_database_files_left_readable_by_an_older_version_are_narrowed(tmp_path, open_umask):
    path = tmp_path / "old.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x)")
    engine.dispose()
    os.chmod(path, 0o644)
    (tmp_path / "old.sqlite-wal").write_bytes(b"")
    os.chmod(tmp_path / "old.sqlite-wal", 0o644)

    make_engine(f"sqlite:///{path}").dispose()
    assert _mode(path) == 0o600
    assert _mode(tmp_path / "old.sqlite-wal") == 0o600
