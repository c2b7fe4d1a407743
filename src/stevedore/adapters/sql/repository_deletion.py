"""SQL adapter: a whole repository's rows deleted at once (domain.repository_deletion.RepositoryDeletionStore)."""

from __future__ import annotations

import sqlalchemy as sa

from stevedore.adapters.sql.engine import Database
from stevedore.adapters.sql.tables import manifest_references, manifests, repositories, repository_blobs, tags, uploads
from stevedore.domain.model import Digest, RepositoryName
from stevedore.domain.repository_deletion import RemovedManifest, RemovedRepository, RemovedTag


class SqlRepositoryDeletionStore:
    def __init__(self, session: Database) -> None:
        self.session = session

    def delete_repository(self, name: RepositoryName) -> RemovedRepository | None:
        # Locks the row on PostgreSQL, so a push racing the delete waits and then finds no repository (or recreates it).
        repository_id = self.session.execute(
            sa.select(repositories.c.id).where(repositories.c.name == name.value).with_for_update()
        ).scalar()
        if repository_id is None:
            return None
        # Explicit rather than trusting every database's ON DELETE CASCADE to be switched on. The tags' and the
        # manifests' deletions say what they removed (RETURNING: PostgreSQL, SQLite 3.35+), so the events are of the
        # rows actually gone, at no extra statement; each is by the repository's id (a primary key's or a unique
        # index's prefix), and returns a few columns a row, never the manifests' content.
        removed_tags = self.session.execute(
            sa.delete(tags).where(tags.c.repository_id == repository_id).returning(tags.c.name, tags.c.manifest_id)
        ).all()
        manifest_ids = sa.select(manifests.c.id).where(manifests.c.repository_id == repository_id)
        self.session.execute(sa.delete(manifest_references).where(manifest_references.c.manifest_id.in_(manifest_ids)))
        removed_manifests = self.session.execute(
            sa.delete(manifests)
            .where(manifests.c.repository_id == repository_id)
            .returning(manifests.c.id, manifests.c.digest, manifests.c.media_type, manifests.c.size)
        ).all()
        self.session.execute(sa.delete(repository_blobs).where(repository_blobs.c.repository_id == repository_id))
        self.session.execute(sa.delete(uploads).where(uploads.c.repository_id == repository_id))
        self.session.execute(sa.delete(repositories).where(repositories.c.id == repository_id))
        digests = {row.id: Digest.parse(row.digest) for row in removed_manifests}
        return RemovedRepository(
            manifests=[RemovedManifest(digests[row.id], row.media_type, row.size) for row in removed_manifests],
            tags=[RemovedTag(row.name, digests[row.manifest_id]) for row in removed_tags if row.manifest_id in digests],
        )
