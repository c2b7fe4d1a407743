"""PostgreSQL's disk full (SQLSTATE 53100, disk_full): a push whose SQL meets it gets the registry's 507 UNAVAILABLE in
the spec's error body, never a 500; nothing of it is visible; pulls keep working; and the same push succeeds once space
is freed. The registry's tables and indexes live in a tablespace on a small tmpfs the test mounts (the tests run as
root here and on CI), while the catalogs and the WAL stay on the real disk: a full tablespace is an ordinary ERROR
"could not extend file", where a full WAL disk would make PostgreSQL PANIC."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from stevedore.adapters.sql.engine import make_engine
from stevedore.domain.errors import StorageFull
from tests.integration.durability.helpers import (
    MANIFEST_TYPE,
    Client,
    Image,
    Node,
    check_consistency,
    push_image,
    sha256,
)
from tests.integration.durability.test_full_disk import small_disk

pytestmark = [pytest.mark.postgres, pytest.mark.server]

NAME = "pgfull/app"
_counter = itertools.count()


@contextlib.contextmanager
def database_on_a_small_tablespace(server, size: str = "4m") -> Iterator[tuple[str, sa.Engine]]:
    """A migrated database whose tables and indexes are on a tmpfs of `size`, and an engine on it as superuser.
    The mount point is outside pytest's tmp_path, whose folders the `postgres` user may not enter."""
    suffix = f"{os.getpid()}_{next(_counter)}"
    database, tablespace = f"diskfull_{suffix}", f"small_{suffix}"
    mount_point = tempfile.mkdtemp(prefix="stevedore-pg-tablespace-")
    admin = make_engine(server.url())
    try:
        with small_disk(mount_point, size=size) as disk:
            shutil.chown(disk, server.user, server.user)
            os.chmod(disk, 0o700)
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql(f"CREATE TABLESPACE {tablespace} LOCATION '{disk}'")
                conn.exec_driver_sql(f"CREATE DATABASE {database} TEMPLATE stevedore_template")
            engine = make_engine(server.url(database), poolclass=sa.pool.NullPool)
            try:
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    # The registry's relations, not the catalogs (which stay with the WAL on the real disk).
                    conn.exec_driver_sql(f"ALTER TABLE ALL IN TABLESPACE pg_default SET TABLESPACE {tablespace}")
                    conn.exec_driver_sql(f"ALTER INDEX ALL IN TABLESPACE pg_default SET TABLESPACE {tablespace}")
                    moved = conn.exec_driver_sql(
                        "SELECT count(*) FROM pg_class c JOIN pg_tablespace t ON t.oid = c.reltablespace "
                        "WHERE t.spcname = %(name)s AND c.relname IN ('blobs', 'manifests', 'tags')",
                        {"name": tablespace},
                    ).scalar_one()
                    assert moved == 3
                    # No autovacuum: truncating the failed inserts' pages would free space behind the test's back.
                    conn.exec_driver_sql(
                        f"CREATE TABLE filler (data text) WITH (autovacuum_enabled = false) TABLESPACE {tablespace}"
                    )
                yield server.url(database), engine
            finally:
                engine.dispose()
                with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
                    conn.exec_driver_sql(f"DROP TABLESPACE IF EXISTS {tablespace}")
    finally:
        admin.dispose()
        with contextlib.suppress(OSError):
            os.rmdir(mount_point)


def fill_tablespace(engine: sa.Engine) -> None:
    """Insert into the filler table, in ever smaller batches, until not even one row fits: the tablespace is full.
    The engine maps PostgreSQL's disk_full to StorageFull here too."""
    refusals = 0
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for rows in (2000, 200, 20, 1):
            while True:
                try:
                    conn.exec_driver_sql(
                        "INSERT INTO filler SELECT string_agg(md5(random()::text), '') "
                        "FROM generate_series(1, 3) s, generate_series(1, %(rows)s) r GROUP BY r",
                        {"rows": rows},
                    )
                except StorageFull:
                    refusals += 1
                    break
    assert refusals == 4


def assert_database_full(status: int, body: bytes) -> None:
    assert status == 507, (status, body)
    errors = json.loads(body)["errors"]
    assert len(errors) == 1 and errors[0]["code"] == "UNAVAILABLE", errors
    assert "database disk is full" in errors[0]["message"]


def push_until_refused(client: Client) -> tuple[Image, str, bytes | None, int, bytes]:
    """Push small images (each blob in one POST, then the manifest) until the registry refuses a request: the image,
    its tag, the refused blob (None: the manifest was refused), and the refused request's status and body."""
    for index in range(400):
        image, tag = Image.random(f"small-{index}", (2000,)), f"t{index}"
        for data in [*image.layers, image.config]:
            status, _, body = client.request("POST", f"/v2/{NAME}/blobs/uploads/?digest={sha256(data)}", data)
            if status != 201:
                return image, tag, data, status, body
        status, _, body = client.request(
            "PUT", f"/v2/{NAME}/manifests/{tag}", image.manifest, {"Content-Type": MANIFEST_TYPE}
        )
        if status != 201:
            return image, tag, None, status, body
    raise AssertionError("the registry never met the full tablespace")


def annotated(image: Image, size: int) -> bytes:
    """The image's manifest with `size` bytes of incompressible annotation: a row PostgreSQL keeps out of line
    (TOAST), in pages the table does not have yet."""
    manifest = json.loads(image.manifest)
    manifest["annotations"] = {"org.example.noise": os.urandom(size // 2).hex()}
    return json.dumps(manifest, sort_keys=True).encode()


def pull(client: Client, reference: str) -> tuple[int, bytes]:
    status, _, body = client.request("GET", f"/v2/{NAME}/manifests/{reference}", headers={"Accept": MANIFEST_TYPE})
    return status, body


def test_a_full_postgresql_tablespace_is_refused_cleanly_and_pushes_work_again_once_space_is_freed(
    tmp_path, postgres_server
):
    with database_on_a_small_tablespace(postgres_server) as (database_url, engine):
        node = Node.create(str(tmp_path), database_url=database_url).start()
        try:
            client = node.client
            existing = Image.random("before")
            assert push_image(client, NAME, "v1", existing) == [201, 201, 201]
            big = Image.random("big")
            assert push_image(client, NAME, "big-blobs-only", big) == [201, 201, 201]
            big_manifest = annotated(big, 24 * 1024)

            fill_tablespace(engine)
            # A manifest whose row needs new pages: its PUT is refused.
            put = client.request("PUT", f"/v2/{NAME}/manifests/big", big_manifest, {"Content-Type": MANIFEST_TYPE})
            assert_database_full(put[0], put[2])
            # Small pushes go on in the pages the tables have, until a blob's or a manifest's rows need one more.
            image, tag, refused_blob, status, body = push_until_refused(client)
            assert_database_full(status, body)

            # Nothing of the refused pushes is visible: the manifests, their tags, the blob that was refused.
            assert pull(client, "big")[0] == 404
            assert pull(client, sha256(big_manifest))[0] == 404
            assert pull(client, tag)[0] == 404
            assert pull(client, sha256(image.manifest))[0] == 404
            if refused_blob is not None:
                assert client.head_blob(NAME, sha256(refused_blob)) == 404
            with engine.connect() as conn:
                tagged = conn.exec_driver_sql("SELECT name FROM tags ORDER BY name").scalars().all()
            assert "big" not in tagged and tag not in tagged and "v1" in tagged
            report = check_consistency(database_url, node.storage_dir)
            assert report.ok, report.problems

            # Pulls keep working meanwhile (with Basic auth, as docker pulls).
            assert pull(client, "v1") == (200, existing.manifest)
            assert client.get_blob(NAME, sha256(existing.layers[0])) == (200, existing.layers[0])

            # Space freed: the same pushes succeed.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("DROP TABLE filler")
            put = client.request("PUT", f"/v2/{NAME}/manifests/big", big_manifest, {"Content-Type": MANIFEST_TYPE})
            assert put[0] == 201, put
            assert pull(client, "big") == (200, big_manifest)
            assert push_image(client, NAME, tag, image)[-1] == 201
            assert pull(client, tag) == (200, image.manifest)

            report = check_consistency(database_url, node.storage_dir)
            assert report.ok, report.problems
            log = node.log_text()
            assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]
        finally:
            node.stop()
