"""SQL adapter: the read model behind the repository pages (domain.browse.BrowseQueries), as Core selects over the
registry's tables, each list paged in the database: one query a page, whatever the repository holds."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from stevedore.adapters.sql.engine import Database
from stevedore.adapters.sql.tables import Timestamp, manifests, namespace_members, namespaces, repositories, tags
from stevedore.domain.browse import ManifestRow, RecentPush, RepositorySummary, TagCursor, TagOf, TagRow, TagSort
from stevedore.domain.namespaces import Right


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _later(*values: datetime | None) -> datetime | None:
    present = [_utc(v) for v in values if v is not None]
    return max(present) if present else None


def in_namespace(name: sa.ColumnElement[str], namespace: str) -> sa.ColumnElement[bool]:
    """`name` is `namespace` itself or below it; no LIKE, so `_` and `%` in names stay plain characters."""
    prefix = namespace + "/"
    return sa.or_(name == namespace, sa.func.substr(name, 1, len(prefix)) == prefix)


class SqlBrowseQueries:
    def __init__(self, session: Database) -> None:
        self.session = session

    def rights_of(self, account_id: int) -> dict[str, Right]:
        rows = self.session.execute(
            sa.select(namespaces.c.name, namespace_members.c.right)
            .join(namespace_members, namespace_members.c.namespace_id == namespaces.c.id)
            .where(namespace_members.c.account_id == account_id)
        )
        found: dict[str, Right] = {}
        for name, right in rows:
            try:
                found[name] = Right(right)
            except ValueError:
                continue
        return found

    def repositories(
        self, *, search: str, namespaces: Iterable[str] | None, offset: int, limit: int
    ) -> list[RepositorySummary]:
        tag_count = (
            sa.select(sa.func.count())
            .where(tags.c.repository_id == repositories.c.id)
            .scalar_subquery()
            .label("tag_count")
        )
        last_manifest = (
            sa.select(sa.func.max(manifests.c.created_at))
            .where(manifests.c.repository_id == repositories.c.id)
            .scalar_subquery()
            .label("last_manifest")
        )
        last_tag = (
            sa.select(sa.func.max(tags.c.updated_at))
            .where(tags.c.repository_id == repositories.c.id)
            .scalar_subquery()
            .label("last_tag")
        )
        query = sa.select(repositories.c.name, tag_count, last_manifest, last_tag).where(
            sa.exists().where(manifests.c.repository_id == repositories.c.id)
        )
        if search:
            query = query.where(repositories.c.name.contains(search, autoescape=True))
        if namespaces is not None:
            wanted = sorted(set(namespaces))
            if not wanted:
                return []
            query = query.where(sa.or_(*(in_namespace(repositories.c.name, ns) for ns in wanted)))
        rows = self.session.execute(query.order_by(repositories.c.name).offset(offset).limit(limit))
        return [
            RepositorySummary(row.name, int(row.tag_count), _later(row.last_manifest, row.last_tag)) for row in rows
        ]

    def repository_id(self, name: str) -> int | None:
        found = self.session.execute(sa.select(repositories.c.id).where(repositories.c.name == name)).scalar()
        return int(found) if found is not None else None

    def tag_count(self, repository_id: int) -> int:
        return int(
            self.session.execute(
                sa.select(sa.func.count()).select_from(tags).where(tags.c.repository_id == repository_id)
            ).scalar_one()
        )

    def tags(
        self,
        repository_id: int,
        *,
        sort: TagSort,
        after: TagCursor | None = None,
        before: TagCursor | None = None,
        limit: int,
    ) -> list[TagRow]:
        # Keyset paging: the page starts at its cursor through an index — the primary key (repository_id, name) by
        # name, ix_tags_repository_id_updated_at by date — so a deep page costs what the first one does.
        query = (
            sa.select(
                tags.c.name,
                tags.c.updated_at,
                tags.c.pushed_by,
                manifests.c.digest,
                manifests.c.media_type,
                manifests.c.size,
                manifests.c.created_at,
                manifests.c.content,
            )
            .join(manifests, manifests.c.id == tags.c.manifest_id)
            .where(tags.c.repository_id == repository_id)
        )
        backwards = before is not None
        cursor = before if before is not None else after
        if sort is TagSort.NAME:
            if cursor is not None:
                query = query.where(tags.c.name < cursor.name if backwards else tags.c.name > cursor.name)
            order: list[Any] = [tags.c.name.desc() if backwards else tags.c.name]
        else:
            if cursor is not None and cursor.updated_at is not None:
                # Newest first, ties by name from z to a: the exact reverse of the index's order, so the database
                # seeks to the cursor (a row-value comparison) and reads one page, with no sort, in both directions.
                key = sa.tuple_(tags.c.updated_at, tags.c.name)
                boundary = sa.tuple_(
                    sa.literal(cursor.updated_at, Timestamp), sa.literal(cursor.name, tags.c.name.type)
                )
                query = query.where(key > boundary if backwards else key < boundary)
            order = [tags.c.updated_at, tags.c.name] if backwards else [tags.c.updated_at.desc(), tags.c.name.desc()]
        rows = [
            TagRow(
                name=row.name,
                updated_at=_utc(row.updated_at),
                digest=row.digest,
                media_type=row.media_type,
                size=int(row.size),
                created_at=_utc(row.created_at),
                content=bytes(row.content),
                pushed_by=row.pushed_by,
            )
            for row in self.session.execute(query.order_by(*order).limit(limit))
        ]
        return rows[::-1] if backwards else rows

    def recent_pushes(self, *, namespaces: Iterable[str] | None, limit: int) -> list[RecentPush]:
        query = (
            sa.select(
                repositories.c.name.label("repository"),
                tags.c.name.label("tag"),
                manifests.c.digest,
                tags.c.pushed_by,
                tags.c.updated_at,
            )
            .select_from(tags)
            .join(repositories, repositories.c.id == tags.c.repository_id)
            .join(manifests, manifests.c.id == tags.c.manifest_id)
        )
        if namespaces is not None:
            wanted = sorted(set(namespaces))
            if not wanted:
                return []
            query = query.where(sa.or_(*(in_namespace(repositories.c.name, ns) for ns in wanted)))
        rows = self.session.execute(
            query.order_by(tags.c.updated_at.desc(), repositories.c.name, tags.c.name).limit(limit)
        )
        return [
            RecentPush(
                repository=row.repository,
                tag=row.tag,
                digest=row.digest,
                pushed_by=row.pushed_by,
                updated_at=_utc(row.updated_at),
            )
            for row in rows
        ]

    def _manifest_query(self, repository_id: int) -> sa.Select[Any]:
        return sa.select(
            manifests.c.digest,
            manifests.c.media_type,
            manifests.c.size,
            manifests.c.created_at,
            manifests.c.content,
            manifests.c.artifact_type,
            manifests.c.subject_digest,
        ).where(manifests.c.repository_id == repository_id)

    @staticmethod
    def _manifest_row(row: Any) -> ManifestRow:
        return ManifestRow(
            digest=row.digest,
            media_type=row.media_type,
            size=int(row.size),
            created_at=_utc(row.created_at),
            content=bytes(row.content),
            artifact_type=row.artifact_type,
            subject=row.subject_digest,
        )

    def manifest(self, repository_id: int, digest: str) -> ManifestRow | None:
        row = self.session.execute(self._manifest_query(repository_id).where(manifests.c.digest == digest)).first()
        return self._manifest_row(row) if row is not None else None

    def manifests(self, repository_id: int, digests: Iterable[str]) -> dict[str, ManifestRow]:
        wanted = sorted(set(digests))
        if not wanted:
            return {}
        rows = self.session.execute(self._manifest_query(repository_id).where(manifests.c.digest.in_(wanted)))
        return {row.digest: self._manifest_row(row) for row in rows}

    def tags_of(self, repository_id: int, digest: str) -> list[TagOf]:
        rows = self.session.execute(
            sa.select(tags.c.name, tags.c.pushed_by, tags.c.updated_at)
            .join(manifests, manifests.c.id == tags.c.manifest_id)
            .where(tags.c.repository_id == repository_id)
            .where(manifests.c.digest == digest)
            .order_by(tags.c.name)
            .limit(1000)
        )
        return [TagOf(row.name, row.pushed_by, _utc(row.updated_at)) for row in rows]
