"""SQL adapter: the RegistryStore port — repositories, blob links, manifests, tags and upload sessions."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from stevedore.adapters.sql.engine import Database, dialect_name
from stevedore.adapters.sql.tables import (
    blobs,
    closed_uploads,
    manifest_references,
    manifests,
    repositories,
    repository_blobs,
    tags,
    uploads,
)
from stevedore.domain.errors import ManifestUnknown
from stevedore.domain.model import BlobInfo, Digest, RepositoryName, Tag
from stevedore.domain.registry import StoredManifest, UploadSession, dump_annotations

_BATCH = 500


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@dataclass(frozen=True)
class _ByRepository:
    """One pull query built once (no statement construction or cache-key work per request), in two forms."""

    by_id: Any
    by_name: Any

    @classmethod
    def of(cls, query: sa.Select[Any], repository_id: sa.ColumnElement[int]) -> _ByRepository:
        return cls(
            query.where(repository_id == sa.bindparam("repository_id")),
            query.join(repositories, repositories.c.id == repository_id).where(
                repositories.c.name == sa.bindparam("repository")
            ),
        )


_MANIFEST = _ByRepository.of(
    sa.select(manifests).where(manifests.c.digest == sa.bindparam("digest")), manifests.c.repository_id
)
_TAGGED_MANIFEST = _ByRepository.of(
    sa.select(manifests).join(tags, tags.c.manifest_id == manifests.c.id).where(tags.c.name == sa.bindparam("tag")),
    tags.c.repository_id,
)
_LINKED_BLOB = _ByRepository.of(
    sa.select(blobs.c.size, blobs.c.storage_key)
    .join(repository_blobs, repository_blobs.c.digest == blobs.c.digest)
    .where(blobs.c.digest == sa.bindparam("digest")),
    repository_blobs.c.repository_id,
)


_CLOSED_UPLOAD = sa.select(closed_uploads.c.id).where(closed_uploads.c.id == sa.bindparam("id"))


@functools.cache
def _link_upsert(dialect: str) -> Any:
    """The link's upsert, built once a dialect (on every blob push: building `excluded` costs more than running it)."""
    module: Any = postgresql if dialect == "postgresql" else sqlite
    statement = module.insert(repository_blobs).values(
        repository_id=sa.bindparam("repository_id"),
        digest=sa.bindparam("digest"),
        created_at=sa.bindparam("created_at", type_=repository_blobs.c.created_at.type),
    )
    return statement.on_conflict_do_update(
        index_elements=["repository_id", "digest"], set_={"created_at": statement.excluded.created_at}
    )


class SqlRegistryStore:
    def __init__(self, session: Database) -> None:
        self._database = session
        self._connection: sa.Connection | None = None
        self._transaction: object = None  # the Session's transaction `_connection` belongs to
        # Manifest rows this transaction inserted or locked (FOR UPDATE): (repository id, digest) -> id. Tagging the
        # manifest just pushed needs no second look-up.
        self._held_manifests: dict[tuple[int, str], int] = {}
        self._ids: dict[str, int] = {}

    @property
    def session(self) -> sa.Connection:
        """Where the statements run: a Session's connection in its transaction (taken at the first statement, which
        begins it), or the look-up connection. Every statement here is Core, and Connection.execute skips the ORM
        Session's per-statement bookkeeping, about half of a simple statement's time in Python: time a write
        transaction would spend holding SQLite's write lock. A store kept across a Session's transactions (the
        commands') takes the connection of each."""
        database = self._database
        if isinstance(database, sa.Connection):
            return database
        transaction = database.get_transaction()
        if self._connection is None or transaction is None or transaction is not self._transaction:
            self._connection = database.connection()
            self._transaction = database.get_transaction()
            self._held_manifests.clear()
        return self._connection

    # --- helpers -------------------------------------------------------------------------------------
    def _insert(self, table: sa.Table) -> Any:
        dialect = dialect_name(self.session)
        module = postgresql if dialect == "postgresql" else sqlite
        return module.insert(table)

    def _insert_ignore(self, table: sa.Table, index_elements: list[str], **values: Any) -> None:
        self.session.execute(self._insert(table).values(**values).on_conflict_do_nothing(index_elements=index_elements))

    def _repository_id(self, name: RepositoryName) -> int | None:
        if name.value not in self._ids:
            found = self.session.execute(
                sa.select(repositories.c.id).where(repositories.c.name == name.value)
            ).scalar_one_or_none()
            if found is None:
                return None
            self._ids[name.value] = int(found)
        return self._ids[name.value]

    def _in_repository(self, pair: _ByRepository, name: RepositoryName, **values: Any) -> tuple[Any, dict[str, Any]]:
        """A pull's query and its parameters, limited to the repository `name`: by its id when this store knows it
        already, else by a join on the repository's unique name: one indexed query, not two."""
        known = self._ids.get(name.value)
        if known is not None:
            return pair.by_id, {**values, "repository_id": known}
        return pair.by_name, {**values, "repository": name.value}

    @staticmethod
    def _manifest(row: Any, with_content: bool = True) -> StoredManifest:
        return StoredManifest(
            digest=Digest.parse(row.digest),
            media_type=row.media_type,
            size=int(row.size),
            content=bytes(row.content) if with_content else b"",
            artifact_type=row.artifact_type,
            subject=Digest.parse(row.subject_digest) if row.subject_digest else None,
            annotations=json.loads(row.annotations) if row.annotations else None,
        )

    # --- repositories --------------------------------------------------------------------------------
    def repository_exists(self, name: RepositoryName) -> bool:
        return self._repository_id(name) is not None

    def ensure_repository(self, name: RepositoryName, now: datetime) -> None:
        if self._repository_id(name) is None:
            self._insert_ignore(repositories, ["name"], name=name.value, created_at=now)

    def _require_repository(self, name: RepositoryName, now: datetime) -> int:
        self.ensure_repository(name, now)
        repository_id = self._repository_id(name)
        assert repository_id is not None
        return repository_id

    # --- blobs ---------------------------------------------------------------------------------------
    def add_blob(self, info: BlobInfo, now: datetime) -> BlobInfo:
        # The first location recorded stays (a re-push at another location is deleted by the domain). A new row is
        # ours until commit; an existing one is held (FOR KEY SHARE) so that garbage collection skips it, and if a
        # collector deleted it meanwhile (the lock waited for it), a new row goes in.
        for _attempt in range(3):
            inserted = self.session.execute(
                self._insert(blobs)
                .values(digest=str(info.digest), size=info.size, created_at=now, storage_key=info.location)
                .on_conflict_do_nothing(index_elements=["digest"])
                .returning(blobs.c.digest)
            ).first()
            if inserted is not None:
                return info
            held = self.hold_blob(info.digest)
            if held is not None:
                return held
        raise RuntimeError(f"blob {info.digest} kept vanishing while being recorded")

    def hold_blob(self, digest: Digest) -> BlobInfo | None:
        query = sa.select(blobs.c.size, blobs.c.storage_key).where(blobs.c.digest == str(digest))
        if dialect_name(self.session) == "postgresql":  # SQLite's writers hold the one write lock already
            query = query.with_for_update(read=True, key_share=True)
        row = self.session.execute(query).first()
        return None if row is None else BlobInfo(digest, int(row.size), row.storage_key)

    def link_blob(self, name: RepositoryName, digest: Digest, now: datetime) -> None:
        repository_id = self._require_repository(name, now)
        # A link made again (the blob uploaded or mounted again) is as young as this push: retention and gc spare
        # links younger than their grace period, and this one is about to be used by the push's manifest.
        self.session.execute(
            _link_upsert(dialect_name(self.session)),
            {"repository_id": repository_id, "digest": str(digest), "created_at": now},
        )

    def linked_blob(self, name: RepositoryName, digest: Digest) -> BlobInfo | None:
        row = self.session.execute(*self._in_repository(_LINKED_BLOB, name, digest=str(digest))).first()
        return None if row is None else BlobInfo(digest, int(row.size), row.storage_key)

    def linked_blob_sizes(self, name: RepositoryName, digests: Iterable[Digest]) -> dict[Digest, int]:
        repository_id = self._repository_id(name)
        wanted = {str(d): d for d in digests}
        if repository_id is None or not wanted:
            return {}
        found: dict[Digest, int] = {}
        keys = list(wanted)
        # Held against garbage collection (PostgreSQL: FOR KEY SHARE of the blob rows) until the manifest that
        # references them is stored: a link deleted meanwhile must not let a collector take them.
        hold = dialect_name(self.session) == "postgresql"
        for start in range(0, len(keys), _BATCH):
            query = (
                sa.select(blobs.c.digest, blobs.c.size)
                .join(repository_blobs, repository_blobs.c.digest == blobs.c.digest)
                .where(repository_blobs.c.repository_id == repository_id)
                .where(blobs.c.digest.in_(keys[start : start + _BATCH]))
            )
            if hold:
                query = query.with_for_update(read=True, key_share=True, of=blobs)
            rows = self.session.execute(query)
            found.update({wanted[row.digest]: int(row.size) for row in rows})
        if hold and found:
            # Retention (domain/gc.py) unlinks a blob only while it holds the blob's row (FOR UPDATE): if the read
            # above waited for such a row, it answered from its snapshot, taken before that unlink committed. With
            # the rows held now, the links read again in a statement of its own are the ones that stay.
            held = [str(d) for d in found]
            linked: set[str] = set()
            for start in range(0, len(held), _BATCH):
                linked.update(
                    self.session.execute(
                        sa.select(repository_blobs.c.digest)
                        .where(repository_blobs.c.repository_id == repository_id)
                        .where(repository_blobs.c.digest.in_(held[start : start + _BATCH]))
                    ).scalars()
                )
            found = {d: size for d, size in found.items() if str(d) in linked}
        return found

    def blob_holders(self, digest: Digest) -> list[RepositoryName]:
        rows = self.session.execute(
            sa.select(repositories.c.name)
            .join(repository_blobs, repository_blobs.c.repository_id == repositories.c.id)
            .where(repository_blobs.c.digest == str(digest))
            .order_by(repositories.c.name)
        ).scalars()
        return [RepositoryName(name) for name in rows]

    def unlink_blob(self, name: RepositoryName, digest: Digest) -> bool:
        repository_id = self._repository_id(name)
        if repository_id is None:
            return False
        result = self.session.execute(
            sa.delete(repository_blobs)
            .where(repository_blobs.c.repository_id == repository_id)
            .where(repository_blobs.c.digest == str(digest))
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    # --- uploads -------------------------------------------------------------------------------------
    def add_upload(self, upload: UploadSession) -> bool:
        repository_id = self._require_repository(upload.repository, upload.created_at)
        added = self.session.execute(
            self._insert(uploads)
            .values(
                id=upload.id,
                repository_id=repository_id,
                account_id=upload.account_id,
                digest_algorithm=upload.digest_algorithm,
                created_at=upload.created_at,
            )
            .on_conflict_do_nothing(index_elements=["id"])
        )
        return bool(added.rowcount)  # type: ignore[attr-defined]

    def get_upload(self, upload_id: str) -> UploadSession | None:
        row = self.session.execute(
            sa.select(uploads, repositories.c.name)
            .join(repositories, repositories.c.id == uploads.c.repository_id)
            .where(uploads.c.id == upload_id)
        ).first()
        return None if row is None else self._upload(row)

    @staticmethod
    def _upload(row: Any) -> UploadSession:
        return UploadSession(
            id=row.id,
            repository=RepositoryName(row.name),
            account_id=row.account_id,
            digest_algorithm=row.digest_algorithm,
            created_at=_utc(row.created_at),
        )

    def delete_upload(self, upload_id: str) -> bool:
        deleted = self.session.execute(sa.delete(uploads).where(uploads.c.id == upload_id))
        return bool(deleted.rowcount)  # type: ignore[attr-defined]

    def delete_uploads_created_before(self, cutoff: datetime) -> list[str]:
        """One DELETE ... RETURNING: a row a concurrent transaction deleted first (a finish, a cancel) is not
        returned, so its bytes are never aborted by the caller."""
        deleted = self.session.execute(sa.delete(uploads).where(uploads.c.created_at < cutoff).returning(uploads.c.id))
        return sorted(str(upload_id) for upload_id in deleted.scalars())

    def close_upload(self, upload_id: str, now: datetime) -> bool:
        inserted = self.session.execute(
            self._insert(closed_uploads)
            .values(id=upload_id, closed_at=now)
            .on_conflict_do_nothing(index_elements=["id"])
        )
        return bool(inserted.rowcount)  # type: ignore[attr-defined]

    def upload_closed(self, upload_id: str) -> bool:
        return self.session.execute(_CLOSED_UPLOAD, {"id": upload_id}).first() is not None

    def prune_closed_uploads(self, closed_before: datetime) -> int:
        pruned = self.session.execute(sa.delete(closed_uploads).where(closed_uploads.c.closed_at < closed_before))
        return int(pruned.rowcount)  # type: ignore[attr-defined]

    def count_uploads(self, account_id: int | None) -> int:
        owner = uploads.c.account_id.is_(None) if account_id is None else uploads.c.account_id == account_id
        return int(self.session.execute(sa.select(sa.func.count()).select_from(uploads).where(owner)).scalar_one())

    def account_uploads(
        self, account_id: int | None, *, created_before: datetime | None = None, limit: int | None = None
    ) -> list[UploadSession]:
        owner = uploads.c.account_id.is_(None) if account_id is None else uploads.c.account_id == account_id
        query = (
            sa.select(uploads, repositories.c.name)
            .join(repositories, repositories.c.id == uploads.c.repository_id)
            .where(owner)
            .order_by(uploads.c.created_at, uploads.c.id)
            .limit(limit)
        )
        if created_before is not None:
            query = query.where(uploads.c.created_at < created_before)
        return [self._upload(row) for row in self.session.execute(query)]

    # --- manifests -----------------------------------------------------------------------------------
    def get_manifest(self, name: RepositoryName, digest: Digest) -> StoredManifest | None:
        row = self.session.execute(*self._in_repository(_MANIFEST, name, digest=str(digest))).first()
        return self._manifest(row) if row else None

    def tagged_manifest(self, name: RepositoryName, tag: Tag) -> StoredManifest | None:
        row = self.session.execute(*self._in_repository(_TAGGED_MANIFEST, name, tag=tag.value)).first()
        return self._manifest(row) if row else None

    def present_manifests(self, name: RepositoryName, digests: Iterable[Digest]) -> set[Digest]:
        repository_id = self._repository_id(name)
        wanted = {str(d): d for d in digests}
        if repository_id is None or not wanted:
            return set()
        keys = list(wanted)
        present: set[Digest] = set()
        # Held (PostgreSQL: FOR KEY SHARE) until the index that lists them is stored: retention removes an untagged
        # manifest only under FOR UPDATE SKIP LOCKED, so it skips these; a read that waited for a removal that then
        # committed does not see the removed row.
        hold = dialect_name(self.session) == "postgresql"
        for start in range(0, len(keys), _BATCH):
            query = (
                sa.select(manifests.c.digest)
                .where(manifests.c.repository_id == repository_id)
                .where(manifests.c.digest.in_(keys[start : start + _BATCH]))
            )
            if hold:
                query = query.with_for_update(read=True, key_share=True)
            present.update(wanted[d] for d in self.session.execute(query).scalars())
        return present

    def put_manifest(
        self,
        name: RepositoryName,
        manifest: StoredManifest,
        blobs: Iterable[Digest],
        children: Iterable[Digest],
        now: datetime,
    ) -> None:
        repository_id = self._require_repository(name, now)
        for _attempt in range(3):
            inserted = self.session.execute(
                self._insert(manifests)
                .values(
                    repository_id=repository_id,
                    digest=str(manifest.digest),
                    media_type=manifest.media_type,
                    artifact_type=manifest.artifact_type,
                    subject_digest=str(manifest.subject) if manifest.subject else None,
                    annotations=dump_annotations(manifest.annotations),
                    size=manifest.size,
                    content=manifest.content,
                    created_at=now,
                )
                .on_conflict_do_nothing(index_elements=["repository_id", "digest"])
                .returning(manifests.c.id)
            ).scalar_one_or_none()
            if inserted is not None:
                references = [{"manifest_id": inserted, "kind": "blob", "digest": str(d)} for d in set(blobs)]
                references += [{"manifest_id": inserted, "kind": "manifest", "digest": str(d)} for d in set(children)]
                if references:
                    self.session.execute(sa.insert(manifest_references), references)
                self._held_manifests[(repository_id, str(manifest.digest))] = int(inserted)
                return
            # The same bytes were pushed before: lock the row so a concurrent DELETE waits for this transaction (and
            # its tags) instead of pulling the manifest from under it, and make it as young as this push (retention's
            # untagged_days counts from the last push), in one UPDATE. If that DELETE won, the row is gone: insert
            # again.
            key = (repository_id, str(manifest.digest))
            refreshed = self.session.execute(
                sa.update(manifests)
                .where(manifests.c.repository_id == repository_id)
                .where(manifests.c.digest == str(manifest.digest))
                .values(created_at=now)
                .returning(manifests.c.id)
            ).scalar_one_or_none()
            if refreshed is not None:
                self._held_manifests[key] = int(refreshed)
                return
        raise RuntimeError(f"manifest {manifest.digest} kept vanishing while being pushed")

    def _manifest_id(self, repository_id: int, digest: Digest, *, lock: bool = False) -> int | None:
        query = (
            sa.select(manifests.c.id)
            .where(manifests.c.repository_id == repository_id)
            .where(manifests.c.digest == str(digest))
        )
        key = (repository_id, str(digest))
        connection = self.session  # first: a new transaction forgets what the last one held
        if lock and key in self._held_manifests:
            return self._held_manifests[key]  # inserted or locked by this transaction: still there, still ours
        if lock:
            query = query.with_for_update()  # PostgreSQL; SQLite's writers are serialized already
        found = connection.execute(query).scalar_one_or_none()
        if found is None:
            return None
        if lock:
            self._held_manifests[key] = int(found)
        return int(found)

    def tag_manifest(
        self, name: RepositoryName, tag: Tag, digest: Digest, now: datetime, pushed_by: str | None = None
    ) -> Digest | None:
        repository_id = self._require_repository(name, now)
        manifest_id = self._manifest_id(repository_id, digest, lock=True)
        if manifest_id is None:
            raise ManifestUnknown(detail={"digest": str(digest)})
        values = {"manifest_id": manifest_id, "updated_at": now, "pushed_by": pushed_by}
        for _attempt in range(3):
            # A new tag: inserted, or (another push inserted it first) found below, under its row lock, so the
            # digest it pointed at is the one this push replaces (immutable tags and history rely on it).
            inserted = self.session.execute(
                self._insert(tags)
                .values(repository_id=repository_id, name=tag.value, **values)
                .on_conflict_do_nothing(index_elements=["repository_id", "name"])
                .returning(tags.c.name)
            ).scalar_one_or_none()
            if inserted is not None:
                return None
            where = (tags.c.repository_id == repository_id) & (tags.c.name == tag.value)
            # The tag's row alone, locked (a join would be re-checked against the manifest row a concurrent push
            # moved it from, and find nothing), then the digest it points at.
            previous_id = self.session.execute(
                sa.select(tags.c.manifest_id).where(where).with_for_update()
            ).scalar_one_or_none()
            if previous_id is None:
                continue  # deleted between the two statements: insert again
            self.session.execute(sa.update(tags).where(where).values(**values))
            if previous_id == manifest_id:
                return digest
            previous = self.session.execute(
                sa.select(manifests.c.digest).where(manifests.c.id == previous_id)
            ).scalar_one()
            return Digest.parse(previous)
        raise RuntimeError(f"tag {tag.value} kept vanishing while being pushed")

    def delete_manifest(self, name: RepositoryName, digest: Digest) -> list[str] | None:
        repository_id = self._repository_id(name)
        if repository_id is None:
            return None
        manifest_id = self._manifest_id(repository_id, digest, lock=True)
        if manifest_id is None:
            return None
        self._held_manifests.pop((repository_id, str(digest)), None)
        # Explicit rather than trusting every database's ON DELETE CASCADE to be switched on.
        removed = list(
            self.session.execute(
                sa.delete(tags).where(tags.c.manifest_id == manifest_id).returning(tags.c.name)
            ).scalars()
        )
        self.session.execute(sa.delete(manifest_references).where(manifest_references.c.manifest_id == manifest_id))
        self.session.execute(sa.delete(manifests).where(manifests.c.id == manifest_id))
        return sorted(removed)

    def delete_tag(self, name: RepositoryName, tag: Tag) -> Digest | None:
        repository_id = self._repository_id(name)
        if repository_id is None:
            return None
        manifest_id = self.session.execute(
            sa.delete(tags)
            .where(tags.c.repository_id == repository_id)
            .where(tags.c.name == tag.value)
            .returning(tags.c.manifest_id)
        ).scalar_one_or_none()
        if manifest_id is None:
            return None
        digest = self.session.execute(sa.select(manifests.c.digest).where(manifests.c.id == manifest_id)).scalar_one()
        return Digest.parse(digest)

    # --- discovery -----------------------------------------------------------------------------------
    def list_tags(self, name: RepositoryName, last: str | None, limit: int) -> list[str]:
        repository_id = self._repository_id(name)
        if repository_id is None:
            return []
        query = sa.select(tags.c.name).where(tags.c.repository_id == repository_id)
        if last:
            query = query.where(tags.c.name > last)
        return list(self.session.execute(query.order_by(tags.c.name).limit(limit)).scalars())

    def list_repositories(self, last: str | None, limit: int) -> list[str]:
        has_manifest = sa.exists().where(manifests.c.repository_id == repositories.c.id)
        query = sa.select(repositories.c.name).where(has_manifest)
        if last:
            query = query.where(repositories.c.name > last)
        return list(self.session.execute(query.order_by(repositories.c.name).limit(limit)).scalars())

    def referrers(self, name: RepositoryName, subject: Digest) -> list[StoredManifest]:
        repository_id = self._repository_id(name)
        if repository_id is None:
            return []
        rows = self.session.execute(
            sa.select(
                manifests.c.digest,
                manifests.c.media_type,
                manifests.c.size,
                manifests.c.artifact_type,
                manifests.c.subject_digest,
                manifests.c.annotations,
            )
            .where(manifests.c.repository_id == repository_id)
            .where(manifests.c.subject_digest == str(subject))
        )
        return [self._manifest(row, with_content=False) for row in rows]
