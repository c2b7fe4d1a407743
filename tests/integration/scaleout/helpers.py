"""Helpers for the scale-out tests: a consistency checker over PostgreSQL and the bucket (the S3 twin of
tests/integration/durability/helpers.py's folder checker, until `stevedore fsck` replaces both), and the load test's
worker, which runs in its own process."""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import sqlalchemy as sa

from stevedore.adapters.blobs_s3 import S3BlobStore
from stevedore.adapters.sql.engine import make_engine
from stevedore.adapters.sql.tables import blobs, manifest_references, manifests, repositories, tags, uploads
from stevedore.domain.model import Digest
from tests.integration.durability.helpers import Client, Image, push_image, sha256


@dataclass
class Consistency:
    problems: list[str]  # each an inconsistency a client could see
    unreferenced: list[str]  # data objects no blob row names (invisible: the database answers), for a future GC
    open_upload_states: list[str]  # uploads/<id> objects in the bucket
    blob_rows: int
    upload_rows: int

    @property
    def ok(self) -> bool:
        return not self.problems


def check_s3_consistency(database_url: str, store: S3BlobStore) -> Consistency:
    """Every blob row has its object (at its storage_key, else the digest's key) with its size and digest; every
    tag, manifest and manifest reference points at something present; every manifest's bytes have its digest."""
    problems: list[str] = []
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = list(conn.execute(sa.select(blobs.c.digest, blobs.c.size, blobs.c.storage_key)))
            for row in rows:
                digest = Digest.parse(row.digest)
                info = store.stat(digest, location=row.storage_key)
                if info is None:
                    problems.append(f"blob {row.digest}: row without object")
                    continue
                if info.size != row.size:
                    problems.append(f"blob {row.digest}: size {info.size} in the bucket, {row.size} in the database")
                    continue
                hasher = hashlib.new(digest.algorithm)
                for chunk in store.open(digest, location=row.storage_key):
                    hasher.update(chunk)
                if hasher.hexdigest() != digest.hex:
                    problems.append(f"blob {row.digest}: the object's bytes have another digest")
            for row in conn.execute(
                sa.select(repositories.c.name, tags.c.name.label("tag"), tags.c.manifest_id)
                .select_from(tags.join(repositories))
                .outerjoin(manifests, manifests.c.id == tags.c.manifest_id)
                .where(manifests.c.id.is_(None))
            ):
                problems.append(f"tag {row.name}:{row.tag} points at missing manifest {row.manifest_id}")
            for row in conn.execute(sa.select(manifests.c.digest, manifests.c.content)):
                if sha256(bytes(row.content)) != row.digest:
                    problems.append(f"manifest {row.digest}: content has another digest")
            known = {row.digest for row in rows}
            for row in conn.execute(
                sa.select(manifest_references.c.manifest_id, manifest_references.c.digest).where(
                    manifest_references.c.kind == "blob"
                )
            ):
                if row.digest not in known:
                    problems.append(f"manifest {row.manifest_id} references missing blob {row.digest}")
            upload_rows = int(conn.execute(sa.select(sa.func.count()).select_from(uploads)).scalar_one())
    finally:
        engine.dispose()
    locations = {row.storage_key or f"blobs/{row.digest.replace(':', '/', 1)}" for row in rows}
    unreferenced, states = [], []
    for page in store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=store.prefix):
        for item in page.get("Contents", []):
            relative = item["Key"][len(store.prefix) :]
            if relative.startswith("uploads/"):
                states.append(relative)
            elif relative.startswith("blobs/"):
                algorithm, _, hex_ = relative.removeprefix("blobs/").split("/")
                if f"{algorithm}:{hex_}" not in {row.digest for row in rows}:
                    unreferenced.append(relative)
            elif relative not in locations:
                unreferenced.append(relative)
    return Consistency(problems, sorted(unreferenced), sorted(states), len(rows), upload_rows)


# --- the load test's worker (one process, many threads) ---------------------------------------------------------------
@dataclass(frozen=True)
class PushResult:
    repository: str
    tag: str
    manifest_digest: str
    statuses: list[int]
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(status in (201, 202) for status in self.statuses)


def shared_image() -> Image:
    """The image every 'identical' pusher pushes: the same bytes in every process."""
    return Image(b'{"label": "shared"}', [hashlib.sha256(b"shared layer %d" % n).digest() * 2048 for n in range(2)])


def push_many(host: str, username: str, password: str, worker: int, threads: int) -> list[PushResult]:
    """`threads` pushes at once through `host`: even threads push an image of their own to a repository of their
    own, odd ones all push the same image to the same tag. Runs in a child process of the load test."""

    def one(index: int) -> PushResult:
        if index % 2 == 0:
            repository, tag = f"load/distinct-{worker}-{index}", "v1"
            image = Image.random(f"{worker}-{index}", (48 * 1024, 16 * 1024))
        else:
            repository, tag = "load/identical", "latest"
            image = shared_image()
        started = time.monotonic()
        try:
            statuses = push_image(Client(host, username, password), repository, tag, image)
            error = None
        except Exception as exc:  # a broken connection counts as an error, never as a crash of the test
            statuses, error = [], f"{type(exc).__name__}: {exc}"
        return PushResult(repository, tag, sha256(image.manifest), statuses, time.monotonic() - started, error)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(threads)))
