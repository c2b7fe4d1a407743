"""SQL adapter: a whole repository's rows deleted at once (domain.repository_deletion.RepositoryDeletionStore)."""

from __future__ import annotations

import sqlalchemy as sa

from stevedore.adapters.sql.engine import Database
from stevedore.adapters.sql.tables import manifest_references, manifests, repositories, repository_blobs, tags, uploads
from stevedore.domain.model import RepositoryName


class SqlRepositoryDeletionStore:
    def __init__(self, session: Database) -> None:
        self.session = session

    def delete_repository(self, name: RepositoryName) -> bool:
        # Locks the row on PostgreSQL, so a push racing the delete waits and then finds no repository (or recreates it).
        repository_id = self.session.execute(
            sa.select(repositories.c.id).where(repositories.c.name == name.value).with_for_update()
        ).scalar()
        if repository_id is None:
            return False
        # Explicit rather than trusting every database's ON DELETE CASCADE to be switched on.
        manifest_ids = sa.select(manifests.c.id).where(manifests.c.repository_id == repository_id)
        self.session.execute(sa.delete(tags).where(tags.c.repository_id == repository_id))
        self.session.execute(sa.delete(manifest_references).where(manifest_references.c.manifest_id.in_(manifest_ids)))
        self.session.execute(sa.delete(manifests).where(manifests.c.repository_id == repository_id))
        self.session.execute(sa.delete(repository_blobs).where(repository_blobs.c.repository_id == repository_id))
        self.session.execute(sa.delete(uploads).where(uploads.c.repository_id == repository_id))
        self.session.execute(sa.delete(repositories).where(repositories.c.id == repository_id))
        return True
