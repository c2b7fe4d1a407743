"""Pushes race garbage collection (grace period 0) on the folder store, over SQLite and PostgreSQL: threads re-push
digests that were made unreferenced (their links deleted), mount them, push manifests over them and delete links
again, while a collector runs over and over. Afterwards `stevedore fsck` finds nothing referenced missing (nor any
other inconsistency), and one more collection leaves no unreferenced blob row."""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Iterable
from datetime import timedelta

import pytest
import sqlalchemy as sa
import webtest
from pyramid.paster import get_appsettings

from stevedore.adapters.blobs_fs import FolderBlobStore
from stevedore.adapters.clock import SystemClock
from stevedore.adapters.sql.engine import make_engine
from stevedore.adapters.sql.gc import _UNREFERENCED, garbage_units
from stevedore.adapters.sql.tables import blobs
from stevedore.domain.gc import GarbageCollector
from stevedore.domain.model import BlobInfo, Digest
from stevedore.web.app import build_components, make_app
from stevedore.web.settings import Settings
from tests.integration.protocol.helpers import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    basic,
    descriptor,
    digest,
    image_manifest,
    with_query,
)
from tests.integration.test_fsck import USER, database, make_ini, prepare, run  # noqa: F401 - fixture

pytestmark = [pytest.mark.server, pytest.mark.usefixtures("database")]

AUTH = basic(*USER)
POOL = [f"shared layer {i} ".encode() * 30 for i in range(12)]  # manifests come to reference these
GARBAGE = [f"churned blob {i} ".encode() * 30 for i in range(6)]  # never referenced: pushed, mounted, unlinked
SECONDS = 6.0


def push(testapp: webtest.TestApp, repo: str, data: bytes, stats: dict[str, int]) -> None:
    """POST ?digest= (a whole blob): never refused because the collector took the digest's bytes meanwhile (the
    finish puts them back once it holds the row), and pulled at once."""
    answer = testapp.post(
        with_query(f"/v2/{repo}/blobs/uploads/", digest=digest(data)),
        params=data,
        headers=AUTH,
        content_type="application/octet-stream",
        status="*",
    )
    if answer.status_int != 201:
        stats["refused"] += 1
    assert answer.status_int == 201, answer.body
    # Linked now, so no collector may take it: its bytes must be there.
    pulled = testapp.get(f"/v2/{repo}/blobs/{digest(data)}", headers=AUTH, status="*")
    assert pulled.status_int == 200 and pulled.body == data, f"{digest(data)} pushed, then {pulled.status}"


class SlowFinishes(FolderBlobStore):
    """A folder store whose finishes take a moment after the bytes are in place (a slow disk, a busy node): the
    window in which a collector may unlink a file that a finish has just renamed there or found there."""

    def finish(
        self, upload_id: str, digest: Digest, final_chunks: Iterable[bytes] = (), *, place: bool = True
    ) -> BlobInfo:
        info = super().finish(upload_id, digest, final_chunks, place=place)
        time.sleep(random.uniform(0, 0.03))
        return info


def pusher(app, seed: int, stop: threading.Event, stats: dict[str, int], errors: list[BaseException]) -> None:
    testapp = webtest.TestApp(app)
    rng = random.Random(seed)
    repo = f"alice/app{seed}"
    try:
        while not stop.is_set():
            config, layer = rng.sample(POOL, 2)
            churned = rng.choice(GARBAGE)
            for data in (config, layer, churned):
                push(testapp, repo, data, stats)
            # Mount into a scratch repository, then delete the links: garbage again.
            mounted = testapp.post(
                with_query(f"/v2/alice/scratch{seed}/blobs/uploads/", mount=digest(churned), **{"from": repo}),
                headers=AUTH,
                status="*",
            )
            assert mounted.status_int in (201, 202), mounted.body
            if mounted.status_int == 201:
                stats["mounted"] += 1
                testapp.delete(f"/v2/alice/scratch{seed}/blobs/{digest(churned)}", headers=AUTH, status=202)
            testapp.delete(f"/v2/{repo}/blobs/{digest(churned)}", headers=AUTH, status=202)
            for _ in range(3):  # garbage now: pushed again at once, while a collector may be deleting it
                push(testapp, repo, churned, stats)
                testapp.delete(f"/v2/{repo}/blobs/{digest(churned)}", headers=AUTH, status=202)
            body = image_manifest(descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, layer)])
            answer = testapp.put(
                f"/v2/{repo}/manifests/t{rng.randrange(3)}",
                params=body,
                headers=AUTH,
                content_type=OCI_MANIFEST,
                status="*",
            )
            assert answer.status_int == 201, answer.body
            stats["manifests"] += 1
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def unreferenced_rows(database_url: str) -> int:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(sa.select(sa.func.count()).select_from(blobs).where(_UNREFERENCED)).scalar_one()
            )
    finally:
        engine.dispose()


def test_pushes_racing_gc_lose_nothing_referenced_and_gc_leaves_no_garbage(tmp_path, capsys, monkeypatch):
    ini = make_ini(tmp_path, extra="stevedore.blob_fsync = false")
    prepare(capsys, monkeypatch, ini)
    settings = Settings.from_mapping(get_appsettings(ini, "main"))
    components = build_components(settings, blob_store=SlowFinishes(str(tmp_path / "blobs"), fsync=False))
    app = make_app(components)
    reads, writes = garbage_units(components.engine)
    collector = GarbageCollector(reads, writes, components.blob_store, SystemClock(), batch=5)  # type: ignore[arg-type]

    # The pool exists and is garbage to begin with.
    seeder = webtest.TestApp(app)
    stats = {"refused": 0, "mounted": 0, "manifests": 0}
    for data in POOL + GARBAGE:
        push(seeder, "alice/seed", data, stats)
        seeder.delete(f"/v2/alice/seed/blobs/{digest(data)}", headers=AUTH, status=202)
    assert unreferenced_rows(settings.database_url) == len(POOL + GARBAGE)

    stop = threading.Event()
    errors: list[BaseException] = []
    threads = [threading.Thread(target=pusher, args=(app, seed, stop, stats, errors)) for seed in range(3)]
    collected = 0
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline and not errors:
            collected += collector.collect(grace=timedelta(0)).objects
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not errors, errors[0]
    assert collected > 2 * len(POOL + GARBAGE), "the collector never raced the pushes"
    assert stats["manifests"] > 10
    print(f"collected {collected}, pushes refused {stats['refused']}, mounts {stats['mounted']}", file=sys.__stderr__)

    collector.collect(grace=timedelta(0))
    assert unreferenced_rows(settings.database_url) == 0
    components.engine.dispose()
    status, out, _ = run(capsys, monkeypatch, ini, "fsck")
    assert status == 0, out
    status, out, _ = run(capsys, monkeypatch, ini, "gc", "--grace-period", "0")
    assert "deleted 0 unreferenced blobs" in out
