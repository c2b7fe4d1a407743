"""SQL adapter: the tag history — recording a move (domain.tag_history.TagHistoryStore) and reading a tag's
history back for its page (TagHistoryQueries), each a single statement over tables_tag_history's indexes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import sqlalchemy as sa

from stevedore.adapters.sql.engine import Database
from stevedore.adapters.sql.tables import Timestamp, manifests, repositories, tags
from stevedore.adapters.sql.tables_tag_history import tag_history
from stevedore.domain.lifecycle import TagChange
from stevedore.domain.tag_history import CurrentTag, HistoryCursor, HistoryEntry


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _text(value: str | None) -> sa.ColumnElement[str]:
    return sa.literal(value, sa.String())


class SqlTagHistoryStore:
    """Writes in the caller's session (the request's transaction): a move is kept only if the push that made it is."""

    def __init__(self, session: Database) -> None:
        self.session = session

    def record(self, change: TagChange) -> None:
        # One INSERT … SELECT: the repository's id is looked up by the statement itself, so a push of one tag costs
        # exactly one more statement. An unknown repository inserts nothing.
        values = sa.select(
            repositories.c.id,
            _text(change.tag),
            _text(str(change.old) if change.old is not None else None),
            _text(str(change.new) if change.new is not None else None),
            _text(change.actor),
            _text(change.cause),
            # Bound as the column's type (SQLite keeps it as text), never CAST: SQLite would make a number of it.
            sa.literal(_utc(change.at), Timestamp),
        ).where(repositories.c.name == change.repository.value)
        self.session.execute(
            sa.insert(tag_history).from_select(
                ["repository_id", "tag", "old_digest", "new_digest", "actor", "cause", "at"], values
            )
        )


class SqlTagHistoryQueries:
    """The read model of a tag's history page (domain.tag_history.TagHistoryQueries)."""

    def __init__(self, session: Database) -> None:
        self.session = session

    def current(self, repository_id: int, tag: str) -> CurrentTag | None:
        row = self.session.execute(
            sa.select(manifests.c.digest, tags.c.updated_at, tags.c.pushed_by)
            .join(manifests, manifests.c.id == tags.c.manifest_id)
            .where(tags.c.repository_id == repository_id, tags.c.name == tag)
        ).first()
        return CurrentTag(row.digest, _utc(row.updated_at), row.pushed_by) if row is not None else None

    def entries(self, repository_id: int, tag: str, *, before: HistoryCursor | None, limit: int) -> list[HistoryEntry]:
        # Newest first by (at, id) — the index ix_tag_history_repository_id_tag_at read backwards from the cursor,
        # so a deep page costs what the first one does; the id orders the moves of one instant.
        c = tag_history.c
        query = sa.select(c.id, c.at, c.cause, c.old_digest, c.new_digest, c.actor).where(
            c.repository_id == repository_id, c.tag == tag
        )
        if before is not None:
            boundary = sa.tuple_(sa.literal(_utc(before.at), Timestamp), sa.literal(before.id, sa.Integer))
            query = query.where(sa.tuple_(c.at, c.id) < boundary)
        rows = self.session.execute(query.order_by(c.at.desc(), c.id.desc()).limit(limit))
        return [
            HistoryEntry(
                id=int(row.id),
                at=_utc(row.at),
                cause=row.cause,
                old=row.old_digest,
                new=row.new_digest,
                actor=row.actor,
            )
            for row in rows
        ]

    def has_history(self, repository_id: int, tag: str) -> bool:
        c = tag_history.c
        found = self.session.execute(
            sa.select(sa.literal(1)).where(c.repository_id == repository_id, c.tag == tag).limit(1)
        ).first()
        return found is not None

    def held(self, repository_id: int, digests: Iterable[str]) -> set[str]:
        wanted = sorted(set(digests))
        if not wanted:
            return set()
        rows = self.session.execute(
            sa.select(manifests.c.digest).where(
                manifests.c.repository_id == repository_id, manifests.c.digest.in_(wanted)
            )
        )
        return set(rows.scalars())
