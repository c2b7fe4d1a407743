"""`stevedore storage migrate`: folder → S3 → folder, pulls verified through the app after each switch and fsck
consistent; an interrupted migration resumes; bytes that are not the blob's are refused and nothing is switched;
a blob larger than a part goes through a verified multipart upload, and one cut short leaves no upload behind. The
commands run over SQLite and over a real PostgreSQL (STEVEDORE_DATABASE_URL)."""

from __future__ import annotations

import urllib.request

import pytest

from stevedore.adapters import storage_migration
from stevedore.adapters.blobs_fs import FolderBlobStore
from stevedore.domain.fsck import BlobRow, default_location
from stevedore.domain.model import Digest
from tests.integration.protocol.helpers import basic, digest, push_image
from tests.integration.s3.moto_server import DUMMY_CREDENTIALS
from tests.integration.test_fsck import (  # noqa: F401 - database is a fixture
    USER,
    database,
    make_ini,
    open_app,
    prepare,
    run,
    set_storage_url,
    storage_keys,
)

pytestmark = [pytest.mark.s3, pytest.mark.server]


@pytest.fixture
def s3_env(monkeypatch, moto_server):
    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return (
        f"stevedore.s3_endpoint_url = {moto_server.endpoint_url}\nstevedore.s3_region = us-east-1\n"
        "stevedore.s3_addressing = path"
    )


def pull_all(ini: str, images) -> None:
    testapp, components = open_app(ini)
    try:
        auth = basic(*USER)
        for image in images:
            for blob in image.blobs:
                response = testapp.get(f"/v2/{image.repo}/blobs/{digest(blob)}", headers=auth, status=(200, 307))
                if response.status_int == 307:  # S3: a presigned URL
                    with urllib.request.urlopen(response.headers["Location"], timeout=30) as redirected:
                        assert redirected.read() == blob
                else:
                    assert response.body == blob
            pulled = testapp.get(
                f"/v2/{image.repo}/manifests/{image.digest}", headers={**auth, "Accept": image.media_type}, status=200
            )
            assert pulled.body == image.body
    finally:
        components.engine.dispose()


def test_folder_to_s3_and_back(tmp_path, capsys, monkeypatch, moto_server, s3_env, database):  # noqa: F811
    ini = make_ini(tmp_path, extra=s3_env)
    _, images = prepare(capsys, monkeypatch, ini)
    bucket = moto_server.new_bucket()
    s3_url = f"s3://{bucket}/registry"

    status, out, err = run(capsys, monkeypatch, ini, "storage", "migrate", "--to", s3_url)
    assert status == 0, err
    assert "copied 6 blobs" in out and "0 failed" in out
    assert f"set stevedore.storage_url = {s3_url}" in out
    assert "6/6 blobs" in err  # the progress bar
    set_storage_url(ini, s3_url)
    assert run(capsys, monkeypatch, ini, "fsck", "--verify-digests")[0] == 0
    pull_all(ini, images)

    # A push on S3 records its object key; going back, --update-database clears it in one transaction.
    testapp, components = open_app(ini)
    images.append(push_image(testapp, basic(*USER), "alice/app", "v3", seed="v3"))
    components.engine.dispose()
    assert sum(1 for key in storage_keys(database).values() if key) == 3
    folder_url = f"file://{tmp_path}/back"
    status, out, err = run(capsys, monkeypatch, ini, "storage", "migrate", "--to", folder_url)
    assert status == 0, err
    assert "3 blobs have a recorded S3 object key" in out
    status, out, err = run(capsys, monkeypatch, ini, "storage", "migrate", "--to", folder_url, "--update-database")
    assert status == 0, err
    assert "copied 0 blobs (0 bytes), 9 already there" in out
    assert "places 3 blobs by digest" in out
    assert set(storage_keys(database).values()) == {None}
    set_storage_url(ini, folder_url)
    status, out, _ = run(capsys, monkeypatch, ini, "fsck", "--verify-digests")
    assert status == 0, out
    pull_all(ini, images)


def test_an_interrupted_migration_resumes(tmp_path, capsys, monkeypatch, moto_server, s3_env, database):  # noqa: F811
    ini = make_ini(tmp_path, extra=s3_env)
    prepare(capsys, monkeypatch, ini)
    s3_url = f"s3://{moto_server.new_bucket()}/registry"
    real_copy = storage_migration.copy_blob
    calls = []

    def interrupted(source, target, row):
        calls.append(row.digest)
        if len(calls) == 3:
            raise KeyboardInterrupt  # ^C in the middle
        real_copy(source, target, row)

    monkeypatch.setattr(storage_migration, "copy_blob", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(capsys, monkeypatch, ini, "storage", "migrate", "--to", s3_url)
    monkeypatch.setattr(storage_migration, "copy_blob", real_copy)
    status, out, err = run(capsys, monkeypatch, ini, "storage", "migrate", "--to", s3_url)
    assert status == 0, err
    assert "copied 4 blobs" in out and "2 already there" in out
    set_storage_url(ini, s3_url)
    assert run(capsys, monkeypatch, ini, "fsck", "--verify-digests")[0] == 0


def test_bytes_that_are_not_the_blob_s_are_refused(tmp_path, capsys, monkeypatch, moto_server, s3_env, database):  # noqa: F811
    ini = make_ini(tmp_path, extra=s3_env)
    _, (image, _) = prepare(capsys, monkeypatch, ini)
    bad = image.blobs[1]
    with open(tmp_path / "blobs" / default_location(digest(bad)), "r+b") as handle:
        handle.write(b"X")
    bucket = moto_server.new_bucket()
    status, out, err = run(capsys, monkeypatch, ini, "storage", "migrate", "--to", f"s3://{bucket}/registry")
    assert status == 1
    assert "5 blobs" in out and "1 failed" in out
    assert f"{digest(bad)}: the source's bytes hash to" in err
    assert "nothing was switched" in err
    keys = {item["Key"] for item in moto_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert f"registry/{default_location(digest(bad))}" not in keys and len(keys) == 5


def test_same_store_and_bad_urls_are_refused(tmp_path, capsys, monkeypatch, s3_env):
    ini = make_ini(tmp_path, extra=s3_env)
    prepare(capsys, monkeypatch, ini)
    status, _, err = run(capsys, monkeypatch, ini, "storage", "migrate", "--to", f"file://{tmp_path}/blobs/")
    assert status == 2 and "the same store" in err
    status, _, err = run(capsys, monkeypatch, ini, "storage", "migrate", "--to", "ftp://example.org/x")
    assert status == 2 and "unsupported storage URL" in err


def test_a_multipart_copy_is_verified_and_a_broken_one_leaves_nothing(tmp_path, moto_server):
    source = FolderBlobStore(str(tmp_path / "source"), fsync=False)
    data = bytes(range(256)) * 17  # 4352 bytes: four parts of 1 KiB and a tail
    blob = Digest.parse(digest(data))
    source.start_upload("u")
    source.append("u", [data])
    source.finish("u", blob)
    bucket = moto_server.new_bucket()
    target = moto_server.store(bucket, part_size=1024)
    row = BlobRow(str(blob), len(data))

    result = storage_migration.migrate(source, target, [row])
    assert result.copied == [str(blob)]
    assert b"".join(target.open(blob)) == data

    class Broken:
        """A source whose stream stops half-way, then one whose bytes differ."""

        def __init__(self, fail: bool) -> None:
            self.fail = fail

        def open(self, digest, location=None):
            yield data[:2048]
            if self.fail:
                raise ConnectionResetError("source gone")
            yield b"Y" * (len(data) - 2048)

    other = Digest.parse("sha256:" + "0" * 64)
    for broken in (Broken(True), Broken(False)):
        result = storage_migration.migrate(broken, target, [BlobRow(str(other), len(data))])
        assert [d for d, _ in result.failed] == [str(other)]
        assert target.stat(other) is None
    assert moto_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
