"""SQL adapter: the QuotaStore port (domain/quotas.py) over `namespace_quotas`, and the usage a quota is measured
against, summed from the registry's tables.

Every query starts from an index: a namespace's repositories are a range of the unique index on their names
(`acme/` up to `acme0`, '0' being the character after '/'; byte order on both databases), their blob links the
primary key of `repository_blobs` (repository, digest), the blobs the primary key of `blobs`, their manifests the
unique (repository, digest) index of `manifests`. A blob linked into several repositories of the namespace is
counted once (DISTINCT over its digest)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from stevedore.adapters.sql.engine import Database, dialect_name
from stevedore.adapters.sql.tables import blobs, manifests, repositories, repository_blobs
from stevedore.adapters.sql.tables_quotas import namespace_quotas
from stevedore.domain.model import Digest, RepositoryName
from stevedore.domain.quotas import Quota, Usage


def in_namespace(namespace: str) -> sa.ColumnElement[bool]:
    """The repository is `namespace` itself or below it, as two ranges of the unique index on names (no LIKE, so
    `_` and `%` stay plain characters)."""
    name = repositories.c.name
    return sa.or_(name == namespace, sa.and_(name >= f"{namespace}/", name < f"{namespace}0"))


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _quota(row: Any) -> Quota:
    return Quota(
        namespace=row.namespace,
        max_bytes=None if row.max_bytes is None else int(row.max_bytes),
        max_repositories=None if row.max_repositories is None else int(row.max_repositories),
        updated_at=_utc(row.updated_at),
        updated_by=row.updated_by,
    )


class SqlQuotaStore:
    """On a request's session (writes, the locked re-read) or on a look-up connection (the reads before a push)."""

    def __init__(self, session: Database) -> None:
        self.session = session

    def quota(self, namespace: str) -> Quota | None:
        row = self.session.execute(sa.select(namespace_quotas).where(namespace_quotas.c.namespace == namespace)).first()
        return None if row is None else _quota(row)

    def lock_quota(self, namespace: str) -> Quota | None:
        # FOR UPDATE on PostgreSQL; SQLite has no row locks (the statement compiles without it) and needs none: its
        # writers hold the database's one write lock from their BEGIN on.
        row = self.session.execute(
            sa.select(namespace_quotas).where(namespace_quotas.c.namespace == namespace).with_for_update()
        ).first()
        return None if row is None else _quota(row)

    def put_quota(self, quota: Quota) -> None:
        module: Any = postgresql if dialect_name(self.session) == "postgresql" else sqlite
        values = {
            "max_bytes": quota.max_bytes,
            "max_repositories": quota.max_repositories,
            "updated_at": quota.updated_at,
            "updated_by": quota.updated_by,
        }
        statement = module.insert(namespace_quotas).values(namespace=quota.namespace, **values)
        self.session.execute(statement.on_conflict_do_update(index_elements=["namespace"], set_=values))

    def delete_quota(self, namespace: str) -> None:
        self.session.execute(sa.delete(namespace_quotas).where(namespace_quotas.c.namespace == namespace))

    def repository_exists(self, name: RepositoryName) -> bool:
        found = self.session.execute(sa.select(repositories.c.id).where(repositories.c.name == name.value)).first()
        return found is not None

    def repository_count(self, namespace: str) -> int:
        return int(
            self.session.execute(
                sa.select(sa.func.count()).select_from(repositories).where(in_namespace(namespace))
            ).scalar_one()
        )

    def holds_blob(self, namespace: str, digest: Digest) -> bool:
        # From the blob's links (index on digest) to their repositories (primary key): a few rows at most.
        found = self.session.execute(
            sa.select(sa.literal(1))
            .select_from(repository_blobs)
            .join(repositories, repositories.c.id == repository_blobs.c.repository_id)
            .where(repository_blobs.c.digest == str(digest))
            .where(in_namespace(namespace))
            .limit(1)
        ).first()
        return found is not None

    def usage(self, namespace: str) -> Usage:
        """One round trip: the distinct blobs' bytes, the manifests' bytes and the repositories, each driven by the
        range of the namespace's repository names."""
        distinct_blobs = (
            sa.select(blobs.c.digest, blobs.c.size)
            .select_from(repositories)
            .join(repository_blobs, repository_blobs.c.repository_id == repositories.c.id)
            .join(blobs, blobs.c.digest == repository_blobs.c.digest)
            .where(in_namespace(namespace))
            .distinct()
            .subquery("namespace_blobs")
        )
        blob_bytes = sa.select(sa.func.coalesce(sa.func.sum(distinct_blobs.c.size), 0)).scalar_subquery()
        manifest_bytes = (
            sa.select(sa.func.coalesce(sa.func.sum(manifests.c.size), 0))
            .select_from(repositories)
            .join(manifests, manifests.c.repository_id == repositories.c.id)
            .where(in_namespace(namespace))
            .scalar_subquery()
        )
        count = sa.select(sa.func.count()).select_from(repositories).where(in_namespace(namespace)).scalar_subquery()
        row = self.session.execute(sa.select(blob_bytes, manifest_bytes, count)).one()
        return Usage(int(row[0]), int(row[1]), int(row[2]))

    def repository_usage(self, name: RepositoryName) -> Usage | None:
        repository_id = self.session.execute(
            sa.select(repositories.c.id).where(repositories.c.name == name.value)
        ).scalar_one_or_none()
        if repository_id is None:
            return None
        return self.repository_usage_by_id(int(repository_id))

    def repository_usage_by_id(self, repository_id: int) -> Usage:
        """A repository's blobs (each linked once: the primary key) and manifests, in one round trip."""
        blob_bytes = (
            sa.select(sa.func.coalesce(sa.func.sum(blobs.c.size), 0))
            .select_from(repository_blobs)
            .join(blobs, blobs.c.digest == repository_blobs.c.digest)
            .where(repository_blobs.c.repository_id == repository_id)
            .scalar_subquery()
        )
        manifest_bytes = (
            sa.select(sa.func.coalesce(sa.func.sum(manifests.c.size), 0))
            .where(manifests.c.repository_id == repository_id)
            .scalar_subquery()
        )
        row = self.session.execute(sa.select(blob_bytes, manifest_bytes)).one()
        return Usage(int(row[0]), int(row[1]), 1)

    def repository_usages(self, namespace: str, *, offset: int, limit: int) -> list[tuple[str, Usage]]:
        """A page of the namespace's repositories by name, each with its own deduplicated usage: one query, whose
        sums run per repository of the page over the indexes of its links and manifests."""
        blob_bytes = (
            sa.select(sa.func.coalesce(sa.func.sum(blobs.c.size), 0))
            .select_from(repository_blobs)
            .join(blobs, blobs.c.digest == repository_blobs.c.digest)
            .where(repository_blobs.c.repository_id == repositories.c.id)
            .correlate(repositories)
            .scalar_subquery()
        )
        manifest_bytes = (
            sa.select(sa.func.coalesce(sa.func.sum(manifests.c.size), 0))
            .where(manifests.c.repository_id == repositories.c.id)
            .correlate(repositories)
            .scalar_subquery()
        )
        rows = self.session.execute(
            sa.select(repositories.c.name, blob_bytes, manifest_bytes)
            .where(in_namespace(namespace))
            .order_by(repositories.c.name)
            .offset(offset)
            .limit(limit)
        ).all()
        return [(row[0], Usage(int(row[1]), int(row[2]), 1)) for row in rows]
