"""`stevedore fsck`: consistent after pushes (exit 0); after breaking the registry on purpose — a blob file deleted,
one truncated, one overwritten with other bytes of the same size, a stray file, a manifest row deleted under its
tag, an upload folder left behind — each kind is reported and the exit status is 1. On the folder store (in
process) and on S3 (moto_server); over SQLite and over a real PostgreSQL (named by STEVEDORE_DATABASE_URL, as an
operator's container would)."""

from __future__ import annotations

import io
import os
import sqlite3
import sys

import pytest
import sqlalchemy as sa
import webtest
from pyramid.paster import get_appsettings
from sqlalchemy.engine import make_url

from stevedore import cli
from stevedore.adapters.sql import fsck as fsck_sql
from stevedore.adapters.sql.engine import make_engine
from stevedore.adapters.sql.migrations import upgrade
from stevedore.domain.fsck import default_location
from stevedore.web.app import build_components, make_app
from stevedore.web.settings import Settings
from tests.integration.protocol.helpers import basic, digest, push_image
from tests.integration.s3.moto_server import moto_server  # noqa: F401 - a fixture
from tests.integration.services import free_port, stevedore_cli, write_ini

USER = ("alice", "correct horse battery")


@pytest.fixture
def database(database_url, tmp_path, monkeypatch) -> str:
    """The test's migrated database, on each backend: on SQLite the ini's own file (`make_ini`'s, where the
    `database_url` fixture put it); on PostgreSQL named by STEVEDORE_DATABASE_URL, which wins over the ini for the
    command run in this process, a `stevedore` subprocess and the app."""
    if database_url.startswith("sqlite"):
        assert database_url == f"sqlite:///{tmp_path}/stevedore.sqlite"
    else:
        monkeypatch.setenv("STEVEDORE_DATABASE_URL", database_url)
    return database_url


def make_ini(base, storage_url: str | None = None, extra: str = "") -> str:
    """An ini over a SQLite file in `base` (unless STEVEDORE_DATABASE_URL names another database), its blob folder
    there too unless `storage_url` says otherwise."""
    path = str(base / "stevedore.ini")
    write_ini(
        path,
        database_url=f"sqlite:///{base}/stevedore.sqlite",
        storage_dir=str(base / "blobs"),
        port=free_port(),
        extra=extra,
    )
    if storage_url:
        set_storage_url(path, storage_url)
    return path


def set_storage_url(ini: str, storage_url: str) -> None:
    with open(ini) as handle:
        lines = handle.read().splitlines()
    lines = [
        f"stevedore.storage_url = {storage_url}" if line.startswith("stevedore.storage_url") else line for line in lines
    ]
    with open(ini, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def run(capsys, monkeypatch, ini: str, *args: str, stdin: str = "") -> tuple[int, str, str]:
    """The command line in this process (so S3 credentials come from the test's environment)."""
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    status = cli.main(["--config", ini, *args])
    out, err = capsys.readouterr()
    return status, out, err


def open_app(ini: str):
    """The app over the ini's settings; (testapp, components)."""
    settings = Settings.from_mapping(get_appsettings(ini, "main"))
    components = build_components(settings)
    return webtest.TestApp(make_app(components)), components


def prepare(capsys, monkeypatch, ini: str):
    settings = Settings.from_mapping(get_appsettings(ini, "main"))
    upgrade(settings.database_url)
    status, _, err = run(capsys, monkeypatch, ini, "user", "create", USER[0], "--password-stdin", stdin=USER[1] + "\n")
    assert status == 0, err
    testapp, components = open_app(ini)
    images = [push_image(testapp, basic(*USER), "alice/app", tag, seed=tag) for tag in ("v1", "v2")]
    components.engine.dispose()
    return settings, images


def delete_manifest_row(database_url: str, manifest_digest: str) -> None:
    """Under its tag, with foreign keys off (as a crash or a hand edit could): the tag is left dangling."""
    if database_url.startswith("sqlite"):  # the pragma is a no-op inside a transaction: outside SQLAlchemy's
        connection = sqlite3.connect(make_url(database_url).database)
        try:
            connection.execute("PRAGMA foreign_keys = OFF")
            deleted = connection.execute("DELETE FROM manifests WHERE digest = ?", (manifest_digest,))
            connection.commit()
        finally:
            connection.close()
        assert deleted.rowcount == 1
        return
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")  # no foreign key triggers
            deleted = conn.execute(sa.text("DELETE FROM manifests WHERE digest = :digest"), {"digest": manifest_digest})
            assert deleted.rowcount == 1
    finally:
        engine.dispose()


def storage_keys(database_url: str) -> dict[str, str | None]:
    """Each blob's recorded storage key."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return {
                row.digest: row.storage_key for row in conn.execute(sa.text("SELECT digest, storage_key FROM blobs"))
            }
    finally:
        engine.dispose()


def test_fsck_of_a_folder_store(tmp_path, capsys, monkeypatch, database):
    ini = make_ini(tmp_path)
    _, (first, second) = prepare(capsys, monkeypatch, ini)
    status, out, _ = run(capsys, monkeypatch, ini, "fsck", "--verify-digests")
    assert status == 0, out
    assert "checked 6 blobs, 6 stored objects, 2 manifests, 2 tags" in out
    assert out.splitlines()[-1] == "consistent"

    root = tmp_path / "blobs"
    missing, truncated, corrupted = first.blobs[1], first.blobs[2], second.blobs[1]
    os.unlink(root / default_location(digest(missing)))
    with open(root / default_location(digest(truncated)), "r+b") as handle:
        handle.truncate(10)
    with open(root / default_location(digest(corrupted)), "r+b") as handle:
        handle.write(b"X")  # same size, other bytes
    stray = root / default_location(digest(b"stray bytes"))
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"stray bytes")
    (root / "uploads" / "crashed").mkdir()
    (root / "uploads" / "crashed" / "data").write_bytes(b"half a layer")
    delete_manifest_row(database, first.digest)

    status, out, _ = run(capsys, monkeypatch, ini, "fsck")
    assert status == 1
    assert f"missing objects (a row without bytes): 1\n  {digest(missing)}: no bytes at" in out
    assert f"size mismatches: 1\n  {digest(truncated)}: 10 bytes stored, {len(truncated)} recorded" in out
    assert "digest mismatches: 0" in out  # only with --verify-digests
    assert (
        f"unreferenced objects (bytes without a row): 1\n  {default_location(digest(b'stray bytes'))}: 11 bytes" in out
    )
    assert "dangling links: 1\n  alice/app:v1: tag of missing manifest" in out
    assert "stale upload leftovers: 1\n  crashed: 12 bytes, no open upload row" in out
    assert "INCONSISTENT: 5 findings" in out

    status, out, _ = run(capsys, monkeypatch, ini, "fsck", "--verify-digests", "--show", "0")
    assert status == 1
    assert "digest mismatches: 1\n" in out
    assert digest(corrupted) not in out  # --show 0: counts only
    assert "INCONSISTENT: 6 findings" in out


@pytest.mark.server
def test_fsck_exit_statuses_as_an_operator_sees_them(tmp_path, capsys, monkeypatch, database):
    ini = make_ini(tmp_path)
    _, (image, _) = prepare(capsys, monkeypatch, ini)
    assert stevedore_cli(ini, "fsck").returncode == 0
    os.unlink(tmp_path / "blobs" / default_location(digest(image.blobs[0])))
    result = stevedore_cli(ini, "fsck")
    assert result.returncode == 1
    assert "missing objects (a row without bytes): 1" in result.stdout


def test_a_push_committing_while_fsck_reads_the_database_is_no_finding_of_the_database(
    tmp_path, capsys, monkeypatch, database
):
    """fsck reads the database in one snapshot: a push that commits between its reads of the manifests and of the
    tags (or the links) shows at most as bytes without a row, never as a tag of a missing manifest."""
    ini = make_ini(tmp_path)
    prepare(capsys, monkeypatch, ini)
    hash_manifest = fsck_sql._content_digest
    pushed = []

    def push_meanwhile(manifest_digest: str, content: bytes) -> str | None:
        if not pushed:  # while fsck streams the manifests: another repository's push commits
            testapp, components = open_app(ini)
            try:
                pushed.append(push_image(testapp, basic(*USER), "alice/meanwhile", "v1", seed="meanwhile"))
            finally:
                components.engine.dispose()
        return hash_manifest(manifest_digest, content)

    monkeypatch.setattr(fsck_sql, "_content_digest", push_meanwhile)
    status, out, _ = run(capsys, monkeypatch, ini, "fsck", "--show", "20")
    assert pushed
    assert "checked 6 blobs" in out and "2 manifests, 2 tags" in out
    assert "dangling links: 0" in out and "missing objects (a row without bytes): 0" in out
    assert "unreferenced objects (bytes without a row): 3" in out  # the push's blobs: run again
    assert status == 1

    monkeypatch.setattr(fsck_sql, "_content_digest", hash_manifest)
    status, out, _ = run(capsys, monkeypatch, ini, "fsck")
    assert status == 0, out
    assert "checked 9 blobs, 9 stored objects, 3 manifests, 3 tags" in out


@pytest.mark.s3
@pytest.mark.server
def test_fsck_of_an_s3_store(tmp_path, capsys, monkeypatch, moto_server, database):  # noqa: F811
    from tests.integration.s3.moto_server import DUMMY_CREDENTIALS

    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    bucket = moto_server.new_bucket()
    s3_settings = (
        f"stevedore.s3_endpoint_url = {moto_server.endpoint_url}\nstevedore.s3_region = us-east-1\n"
        "stevedore.s3_addressing = path"
    )
    ini = make_ini(tmp_path, f"s3://{bucket}/registry", s3_settings)
    _, (first, second) = prepare(capsys, monkeypatch, ini)
    status, out, _ = run(capsys, monkeypatch, ini, "fsck", "--verify-digests")
    assert status == 0, out
    assert "checked 6 blobs, 6 stored objects" in out

    client = moto_server.client()
    keys = storage_keys(database)
    missing, truncated = first.blobs[1], second.blobs[2]
    client.delete_object(Bucket=bucket, Key="registry/" + keys[digest(missing)])
    client.put_object(Bucket=bucket, Key="registry/" + keys[digest(truncated)], Body=truncated[:10])
    client.put_object(Bucket=bucket, Key="registry/objects/stray", Body=b"stray bytes")
    client.put_object(Bucket=bucket, Key="registry/uploads/crashed", Body=b"tail")
    client.put_object(Bucket=bucket, Key="other-prefix/not-ours", Body=b"not ours")
    delete_manifest_row(database, second.digest)

    status, out, _ = run(capsys, monkeypatch, ini, "fsck")
    assert status == 1
    assert f"missing objects (a row without bytes): 1\n  {digest(missing)}: no bytes at {keys[digest(missing)]}" in out
    assert f"size mismatches: 1\n  {digest(truncated)}: 10 bytes stored" in out
    assert "unreferenced objects (bytes without a row): 1\n  objects/stray: 11 bytes" in out
    assert "dangling links: 1\n  alice/app:v2: tag of missing manifest" in out
    assert "stale upload leftovers: 1\n  crashed: 4 bytes" in out
    assert "not-ours" not in out


@pytest.mark.s3
@pytest.mark.server
def test_the_s3_inventory_pages_through_listings(moto_server):  # noqa: F811
    from stevedore.adapters.storage_inventory import s3_objects, s3_uploads

    bucket = moto_server.new_bucket()
    store = moto_server.store(bucket)
    client = moto_server.client()
    for number in range(7):
        client.put_object(Bucket=bucket, Key=f"registry/objects/o{number}", Body=b"x" * number)
    client.put_object(Bucket=bucket, Key="registry/uploads/u1", Body=b"tail")
    listed = list(s3_objects(store, page_size=2))
    assert [(item.location, item.size) for item in listed] == [(f"objects/o{n}", n) for n in range(7)]
    assert [(item.upload_id, item.size) for item in s3_uploads(store, page_size=2)] == [("u1", 4)]
