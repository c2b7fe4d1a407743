"""SQL adapter: the GarbageStore port (domain/gc.py) — unreferenced blob rows found by indexed, paged queries, and
deleted under row locks so that no concurrent claim (a finish, a mount, a manifest push) is lost — and the
RetentionStore port: tags and untagged manifests removed by retention rules, each checked again under its locks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from stevedore.adapters.sql.engine import Database, dialect_name, make_session_factory, writer_engine
from stevedore.adapters.sql.tables import (
    blobs,
    manifest_references,
    manifests,
    repositories,
    repository_blobs,
    tags,
    uploads,
)
from stevedore.adapters.sql.tables_rules import tag_rules
from stevedore.adapters.sql.tables_tag_history import tag_history
from stevedore.domain.model import BlobInfo, Digest
from stevedore.domain.rules import ManifestState, RuleKind, TagRule, TagState

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


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class SqlRetentionStore:
    """domain.gc.RetentionStore: reads of one repository, and removals checked again under their locks."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def _postgresql(self) -> bool:
        return dialect_name(self.database) == "postgresql"

    def _repository_id(self, repository: str) -> int | None:
        found = self.database.execute(
            sa.select(repositories.c.id).where(repositories.c.name == repository)
        ).scalar_one_or_none()
        return None if found is None else int(found)

    def retention_rules(self) -> list[TagRule]:
        from stevedore.adapters.sql.rules import rule_of

        with_retention = sa.select(tag_rules.c.namespace).where(tag_rules.c.kind == RuleKind.RETENTION.value)
        rows = self.database.execute(
            sa.select(tag_rules).where(tag_rules.c.namespace.in_(with_retention)).order_by(tag_rules.c.id)
        )
        return [rule_of(row) for row in rows]

    def repositories(self, namespace: str) -> list[str]:
        # `team` itself and `team/…`: a range on the byte-ordered unique index ('0' follows '/'); no LIKE, whose
        # wildcards `_` a namespace's name may hold.
        name = repositories.c.name
        in_namespace = (name == namespace) | ((name >= namespace + "/") & (name < namespace + "0"))
        return list(self.database.execute(sa.select(name).where(in_namespace).order_by(name)).scalars())

    def tag_states(self, repository: str) -> list[TagState]:
        rows = self.database.execute(
            sa.select(tags.c.name, tags.c.updated_at, manifests.c.digest)
            .join(manifests, manifests.c.id == tags.c.manifest_id)
            .join(repositories, repositories.c.id == tags.c.repository_id)
            .where(repositories.c.name == repository)
            .order_by(tags.c.name)
        )
        return [TagState(row.name, row.digest, _utc(row.updated_at)) for row in rows]

    def manifest_states(self, repository: str) -> list[ManifestState]:
        repository_id = self._repository_id(repository)
        if repository_id is None:
            return []
        tagged = sa.exists().where(tags.c.manifest_id == manifests.c.id)
        rows = list(
            self.database.execute(
                sa.select(
                    manifests.c.id,
                    manifests.c.digest,
                    manifests.c.created_at,
                    manifests.c.subject_digest,
                    tagged.label("tagged"),
                ).where(manifests.c.repository_id == repository_id)
            )
        )
        children: dict[int, set[str]] = {}
        for manifest_id, child in self.database.execute(
            sa.select(manifest_references.c.manifest_id, manifest_references.c.digest)
            .join(manifests, manifests.c.id == manifest_references.c.manifest_id)
            .where(manifests.c.repository_id == repository_id)
            .where(manifest_references.c.kind == "manifest")
        ):
            children.setdefault(int(manifest_id), set()).add(child)
        return [
            ManifestState(
                row.digest,
                _utc(row.created_at),
                bool(row.tagged),
                frozenset(children.get(int(row.id), ())),
                row.subject_digest,
            )
            for row in rows
        ]

    def history_digests(self, repository: str, since: datetime | None) -> set[str]:
        repository_id = self._repository_id(repository)
        if repository_id is None:
            return set()
        found: set[str] = set()
        for column in (tag_history.c.old_digest, tag_history.c.new_digest):
            query = sa.select(column).distinct().where(tag_history.c.repository_id == repository_id)
            query = query.where(column.is_not(None))
            if since is not None:
                query = query.where(tag_history.c.at >= since)
            found.update(self.database.execute(query).scalars())
        return found

    def remove_tag(self, repository: str, state: TagState, now: datetime) -> bool:
        repository_id = self._repository_id(repository)
        if repository_id is None:
            return False
        manifest_id = (
            sa.select(manifests.c.id)
            .where(manifests.c.repository_id == repository_id)
            .where(manifests.c.digest == state.digest)
            .scalar_subquery()
        )
        # PostgreSQL: a push moving the tag holds its row (FOR UPDATE) until it commits; this DELETE waits for it,
        # then re-checks its conditions on the row as that push left it (READ COMMITTED), so a moved or re-pushed
        # tag stays. SQLite: writers run one at a time.
        deleted = self.database.execute(
            sa.delete(tags)
            .where(tags.c.repository_id == repository_id)
            .where(tags.c.name == state.tag)
            .where(tags.c.manifest_id == manifest_id)
            .where(tags.c.updated_at <= state.pushed_at)
            .returning(tags.c.name)
        ).first()
        if deleted is None:
            return False
        self.database.execute(
            sa.insert(tag_history).values(
                repository_id=repository_id,
                tag=state.tag,
                old_digest=state.digest,
                new_digest=None,
                actor=None,
                cause="retention",
                at=now,
            )
        )
        return True

    def remove_manifest(
        self,
        repository: str,
        digest: str,
        *,
        pushed_before: datetime,
        history_since: datetime | None,
        links_before: datetime,
    ) -> int | None:
        repository_id = self._repository_id(repository)
        if repository_id is None:
            return None
        postgresql = self._postgresql()
        # The row first, locked: a push tagging this manifest right now holds it (FOR UPDATE), and it is skipped.
        query = (
            sa.select(manifests.c.id)
            .where(manifests.c.repository_id == repository_id)
            .where(manifests.c.digest == digest)
            .where(manifests.c.created_at < pushed_before)
        )
        if postgresql:
            query = query.with_for_update(skip_locked=True)
        manifest_id = self.database.execute(query).scalar_one_or_none()
        if manifest_id is None:
            return None
        # Then, in a fresh statement (a new snapshot: every write that committed meanwhile), whether it still goes.
        parent = manifests.alias("parent")
        subject = manifests.alias("subject")
        this = manifests.alias("this")
        history = sa.exists().where(tag_history.c.repository_id == repository_id)
        history = history.where((tag_history.c.old_digest == digest) | (tag_history.c.new_digest == digest))
        if history_since is not None:
            history = history.where(tag_history.c.at >= history_since)
        still_goes = self.database.execute(
            sa.select(this.c.id)
            .where(this.c.id == manifest_id)
            .where(~sa.exists().where(tags.c.manifest_id == manifest_id))
            .where(
                ~sa.exists()
                .where(manifest_references.c.kind == "manifest")
                .where(manifest_references.c.digest == digest)
                .where(parent.c.id == manifest_references.c.manifest_id)
                .where(parent.c.repository_id == repository_id)
            )
            .where(
                (this.c.subject_digest.is_(None))
                | ~sa.exists()
                .where(subject.c.repository_id == repository_id)
                .where(subject.c.digest == this.c.subject_digest)
            )
            .where(~history)
        ).scalar_one_or_none()
        if still_goes is None:
            return None
        referenced = list(
            self.database.execute(
                sa.select(manifest_references.c.digest)
                .where(manifest_references.c.manifest_id == manifest_id)
                .where(manifest_references.c.kind == "blob")
            ).scalars()
        )
        self.database.execute(sa.delete(manifest_references).where(manifest_references.c.manifest_id == manifest_id))
        self.database.execute(sa.delete(manifests).where(manifests.c.id == manifest_id))
        if not referenced:
            return 0
        return self._unlink_unreferenced(repository_id, referenced, links_before)

    def _unlink_unreferenced(self, repository_id: int, digests: list[str], links_before: datetime) -> int:
        """Delete the repository's links to these blobs that no manifest of it references any more. The blob rows
        are locked first (PostgreSQL: FOR UPDATE SKIP LOCKED): a manifest push holds those it read (FOR KEY SHARE)
        until it commits, so a blob a push is using is skipped; once locked, a push that reads it waits, then reads
        its links again (SqlRegistryStore.linked_blob_sizes) and finds this one gone; and the DELETE's fresh
        snapshot sees the references of every push that committed before."""
        candidates = (
            sa.select(repository_blobs.c.digest)
            .where(repository_blobs.c.repository_id == repository_id)
            .where(repository_blobs.c.digest.in_(digests))
            .where(repository_blobs.c.created_at < links_before)
        )
        locked = list(self.database.execute(candidates).scalars())
        if locked and self._postgresql():
            locked = list(
                self.database.execute(
                    sa.select(blobs.c.digest).where(blobs.c.digest.in_(locked)).with_for_update(skip_locked=True)
                ).scalars()
            )
        if not locked:
            return 0
        still_referenced = (
            sa.select(manifest_references.c.digest)
            .join(manifests, manifests.c.id == manifest_references.c.manifest_id)
            .where(manifests.c.repository_id == repository_id)
            .where(manifest_references.c.kind == "blob")
            .where(manifest_references.c.digest == repository_blobs.c.digest)
        )
        deleted = self.database.execute(
            sa.delete(repository_blobs)
            .where(repository_blobs.c.repository_id == repository_id)
            .where(repository_blobs.c.digest.in_(locked))
            .where(~sa.exists(still_referenced))
            .returning(repository_blobs.c.digest)
        )
        return len(list(deleted))

    def repository_ids_after(self, after: int, limit: int) -> list[int]:
        return list(
            self.database.execute(
                sa.select(repositories.c.id).where(repositories.c.id > after).order_by(repositories.c.id).limit(limit)
            ).scalars()
        )

    def dangling_links(self, repository_id: int, links_before: datetime, limit: int) -> list[str]:
        """The repository's blob links older than `links_before` that no manifest of it references (its manifests
        were deleted, or the blobs were uploaded for a push that never came), from its primary key."""
        referenced = (
            sa.select(manifest_references.c.digest)
            .join(manifests, manifests.c.id == manifest_references.c.manifest_id)
            .where(manifests.c.repository_id == repository_id)
            .where(manifest_references.c.kind == "blob")
            .where(manifest_references.c.digest == repository_blobs.c.digest)
        )
        return list(
            self.database.execute(
                sa.select(repository_blobs.c.digest)
                .where(repository_blobs.c.repository_id == repository_id)
                .where(repository_blobs.c.created_at < links_before)
                .where(~sa.exists(referenced))
                .order_by(repository_blobs.c.digest)
                .limit(limit)
            ).scalars()
        )

    def unlink_dangling(self, repository_id: int, digests: list[str], links_before: datetime) -> int:
        """Delete those links that are still dangling, under the same locks as retention's (`_unlink_unreferenced`)."""
        return self._unlink_unreferenced(repository_id, digests, links_before)

    def prune_history(self, before: datetime) -> int:
        deleted = self.database.execute(sa.delete(tag_history).where(tag_history.c.at < before))
        return int(deleted.rowcount)  # type: ignore[attr-defined]


RetentionUnit = Callable[[], contextlib.AbstractContextManager[SqlRetentionStore]]


def retention_units(engine: sa.Engine) -> tuple[RetentionUnit, RetentionUnit]:
    """Retention's units of work on `engine`: (reads, writes), as `garbage_units`."""
    read_sessions = make_session_factory(engine)
    write_sessions = make_session_factory(writer_engine(engine))

    @contextlib.contextmanager
    def reads() -> Iterator[SqlRetentionStore]:
        with read_sessions() as session, session.begin():
            yield SqlRetentionStore(session)

    @contextlib.contextmanager
    def writes() -> Iterator[SqlRetentionStore]:
        with write_sessions() as session, session.begin():
            yield SqlRetentionStore(session)

    return reads, writes
