"""SQL adapter: the database's view for `stevedore fsck` — blob rows, repository links, manifests with what they
reference and the digest of their stored bytes, tags, open uploads. Read only, streamed in batches."""

from __future__ import annotations

import hashlib
from collections import defaultdict

import sqlalchemy as sa
from sqlalchemy.orm import Session

from stevedore.adapters.sql.tables import (
    blobs,
    manifest_references,
    manifests,
    repositories,
    repository_blobs,
    tags,
    uploads,
)
from stevedore.domain.fsck import BlobRow, DatabaseView, ManifestRow, TagRow

BATCH = 1000


def _content_digest(digest: str, content: bytes) -> str | None:
    algorithm = digest.split(":", 1)[0]
    try:
        return f"{algorithm}:{hashlib.new(algorithm, content).hexdigest()}"
    except ValueError:  # an algorithm hashlib does not know: nothing to compare
        return None


def read_database_view(session: Session) -> DatabaseView:
    """One consistent read (call it first in a transaction): SQLite's read transaction is one snapshot; PostgreSQL's
    default, READ COMMITTED, takes one per statement, so a push committing between the reads of the manifests and of
    the tags would show as a tag of a missing manifest: the transaction is REPEATABLE READ there."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    blob_rows = [
        BlobRow(row.digest, int(row.size), row.storage_key)
        for row in session.execute(
            sa.select(blobs.c.digest, blobs.c.size, blobs.c.storage_key).execution_options(yield_per=BATCH)
        )
    ]
    links = [
        (row.name, row.digest)
        for row in session.execute(
            sa.select(repositories.c.name, repository_blobs.c.digest)
            .select_from(repository_blobs.outerjoin(repositories))
            .execution_options(yield_per=BATCH)
        )
    ]
    references: dict[int, dict[str, set[str]]] = defaultdict(lambda: {"blob": set(), "manifest": set()})
    for row in session.execute(
        sa.select(
            manifest_references.c.manifest_id, manifest_references.c.kind, manifest_references.c.digest
        ).execution_options(yield_per=BATCH)
    ):
        references[row.manifest_id].setdefault(row.kind, set()).add(row.digest)
    manifest_rows = []
    for manifest in session.execute(
        sa.select(manifests.c.id, repositories.c.name, manifests.c.digest, manifests.c.content)
        .select_from(manifests.join(repositories))
        .execution_options(yield_per=BATCH)
    ):
        referenced = references.get(manifest.id, {})
        manifest_rows.append(
            ManifestRow(
                id=manifest.id,
                repository=manifest.name,
                digest=manifest.digest,
                content_digest=_content_digest(manifest.digest, bytes(manifest.content)),
                blobs=frozenset(referenced.get("blob", ())),
                children=frozenset(referenced.get("manifest", ())),
            )
        )
    tag_rows = [
        TagRow(row.name, row.tag, row.manifest_id)
        for row in session.execute(
            sa.select(repositories.c.name, tags.c.name.label("tag"), tags.c.manifest_id)
            .select_from(tags.join(repositories))
            .execution_options(yield_per=BATCH)
        )
    ]
    upload_ids = read_upload_ids(session)
    return DatabaseView(blob_rows, links, manifest_rows, tag_rows, upload_ids)


def read_upload_ids(session: Session) -> set[str]:
    """The ids of every open upload session (every account's)."""
    return {str(upload_id) for upload_id in session.execute(sa.select(uploads.c.id)).scalars()}


def clear_storage_keys(session: Session, digests: list[str]) -> int:
    """Forget where the store put these blobs' bytes: they live at their digest's place from now on. The count
    of rows changed."""
    changed = 0
    for start in range(0, len(digests), BATCH):
        result = session.execute(
            sa.update(blobs)
            .where(blobs.c.digest.in_(digests[start : start + BATCH]))
            .where(blobs.c.storage_key.is_not(None))
            .values(storage_key=None)
        )
        changed += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return changed


def blob_rows(session: Session) -> list[BlobRow]:
    return [
        BlobRow(row.digest, int(row.size), row.storage_key)
        for row in session.execute(
            sa.select(blobs.c.digest, blobs.c.size, blobs.c.storage_key)
            .order_by(blobs.c.digest)
            .execution_options(yield_per=BATCH)
        )
    ]
