"""SQL adapter: the GarbageStore port (domain/gc.py) — unreferenced blob rows found by indexed, paged queries, and
deleted under row locks so that no concurrent claim (a finish, a mount, a manifest push) is lost."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from stevedore.adapters.sql.engine import Database, dialect_name, make_session_factory, writer_engine
from stevedore.adapters.sql.tables import blobs, manifest_references, repository_blobs, uploads
from stevedore.domain.model import BlobInfo, Digest

# Both probes use an index: ix_repository_blobs_digest, ix_manifest_references_digest.
_UNREFERENCED = sa.and_(
    ~sa.exists().where(repository_blobs.c.digest == blobs.c.digest),
    ~sa.exists().where(manifest_references.c.digest == blobs.c.digest).where(manifest_references.c.kind == "blob"),
)


def _blob(row: Any) -> BlobInfo:
    return BlobInfo(Digest.parse(row.digest), int(row.size), row.storage_key)


class SqlGarbageStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def unreferenced_blobs(self, created_before: datetime, after: str | None, limit: int) -> list[BlobInfo]:
        """A walk of the blobs' primary key in digest order (keyset pages), each row probed in the two indexes."""
        query = (
            sa.select(blobs.c.digest, blobs.c.size, blobs.c.storage_key)
            .where(blobs.c.created_at < created_before)
            .where(_UNREFERENCED)
            .order_by(blobs.c.digest)
            .limit(limit)
        )
        if after is not None:
            query = query.where(blobs.c.digest > after)
        return [_blob(row) for row in self.database.execute(query)]

    def delete_unreferenced(self, digests: Sequence[str], created_before: datetime) -> list[BlobInfo]:
        if not digests:
            return []
        wanted = list(digests)
        if dialect_name(self.database) == "postgresql":
            # Lock first; rows a claim holds (FOR KEY SHARE, or a link's foreign-key check) are skipped, not waited
            # for. Once locked no claim can start on them, and the DELETE below (a new statement: a new snapshot in
            # READ COMMITTED) sees every claim that committed before.
            wanted = list(
                self.database.execute(
                    sa.select(blobs.c.digest)
                    .where(blobs.c.digest.in_(wanted))
                    .where(blobs.c.created_at < created_before)
                    .with_for_update(skip_locked=True)
                ).scalars()
            )
            if not wanted:
                return []
        # SQLite: the transaction holds the database's one write lock from its BEGIN IMMEDIATE.
        deleted = self.database.execute(
            sa.delete(blobs)
            .where(blobs.c.digest.in_(wanted))
            .where(blobs.c.created_at < created_before)
            .where(_UNREFERENCED)
            .returning(blobs.c.digest, blobs.c.size, blobs.c.storage_key)
        )
        return sorted((_blob(row) for row in deleted), key=lambda blob: str(blob.digest))

    def count_uploads_created_before(self, cutoff: datetime) -> int:
        """How many upload sessions (every account's) were started before `cutoff`: what a sweep would abort."""
        return int(
            self.database.execute(
                sa.select(sa.func.count()).select_from(uploads).where(uploads.c.created_at < cutoff)
            ).scalar_one()
        )


Unit = Callable[[], contextlib.AbstractContextManager[SqlGarbageStore]]


def garbage_units(engine: sa.Engine) -> tuple[Unit, Unit]:
    """The collector's units of work on `engine`: (reads, writes), each a transaction of its own committed when its
    block ends; a write one takes SQLite's write lock at its BEGIN."""
    read_sessions = make_session_factory(engine)
    write_sessions = make_session_factory(writer_engine(engine))

    @contextlib.contextmanager
    def reads() -> Iterator[SqlGarbageStore]:
        with read_sessions() as session, session.begin():
            yield SqlGarbageStore(session)

    @contextlib.contextmanager
    def writes() -> Iterator[SqlGarbageStore]:
        with write_sessions() as session, session.begin():
            yield SqlGarbageStore(session)

    return reads, writes
