"""SQL adapter: the leases of periodic jobs (domain/periodic.py's JobLeases), one conditional UPDATE each, which
PostgreSQL and SQLite both apply atomically: of several processes asking at once, one row count is 1."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from stevedore.adapters.sql.engine import Database, dialect_name
from stevedore.adapters.sql.tables_jobs import gc_runs, job_leases


class SqlJobLeases:
    def __init__(self, session: Session) -> None:
        self.session = session

    def acquire(self, job: str, holder: str, now: datetime, due_before: datetime, lease_until: datetime) -> bool:
        insert = (postgresql if dialect_name(self.session) == "postgresql" else sqlite).insert
        self.session.execute(insert(job_leases).values(name=job).on_conflict_do_nothing())
        taken = self.session.execute(
            sa.update(job_leases)
            .where(job_leases.c.name == job)
            .where(sa.or_(job_leases.c.lease_until.is_(None), job_leases.c.lease_until <= now))
            .where(sa.or_(job_leases.c.last_started_at.is_(None), job_leases.c.last_started_at <= due_before))
            .values(holder=holder, lease_until=lease_until, last_started_at=now)
        )
        return bool(taken.rowcount)  # type: ignore[attr-defined]

    def renew(self, job: str, holder: str, lease_until: datetime) -> bool:
        renewed = self.session.execute(
            sa.update(job_leases)
            .where(job_leases.c.name == job)
            .where(job_leases.c.holder == holder)
            .values(lease_until=lease_until)
        )
        return bool(renewed.rowcount)  # type: ignore[attr-defined]

    def release(self, job: str, holder: str, now: datetime, outcome: str) -> None:
        self.session.execute(
            sa.update(job_leases)
            .where(job_leases.c.name == job)
            .where(job_leases.c.holder == holder)
            .values(holder=None, lease_until=None, last_finished_at=now, last_outcome=outcome[:255])
        )

    def last_run(self, job: str) -> tuple[datetime | None, datetime | None, str | None] | None:
        """When the job last started and ended, and how it went; None: it never ran."""
        row = self.session.execute(
            sa.select(job_leases.c.last_started_at, job_leases.c.last_finished_at, job_leases.c.last_outcome).where(
                job_leases.c.name == job
            )
        ).one_or_none()
        return None if row is None else (row[0], row[1], row[2])


class SqlJobLeaseUnits:
    """JobLeases where each call is a short transaction of its own (a periodic job runs outside any request)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def acquire(self, job: str, holder: str, now: datetime, due_before: datetime, lease_until: datetime) -> bool:
        with self.sessions() as session, session.begin():
            return SqlJobLeases(session).acquire(job, holder, now, due_before, lease_until)

    def renew(self, job: str, holder: str, lease_until: datetime) -> bool:
        with self.sessions() as session, session.begin():
            return SqlJobLeases(session).renew(job, holder, lease_until)

    def release(self, job: str, holder: str, now: datetime, outcome: str) -> None:
        with self.sessions() as session, session.begin():
            SqlJobLeases(session).release(job, holder, now, outcome)


@dataclass(frozen=True)
class GcRunTotals:
    """What every recorded `stevedore gc` run did, by trigger ("command line", "periodic") and success."""

    trigger: str
    succeeded: bool
    runs: int
    objects: int
    bytes_freed: int
    tags_removed: int
    manifests_removed: int
    last_finished_at: datetime | None


def gc_run_totals(session: Database) -> list[GcRunTotals]:
    """One aggregate over `gc_runs` (a row a run: a few thousand a year at most)."""
    c = gc_runs.c
    rows = session.execute(
        sa.select(
            c.trigger,
            c.succeeded,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(c.objects), 0),
            sa.func.coalesce(sa.func.sum(c.bytes_freed), 0),
            sa.func.coalesce(sa.func.sum(c.tags_removed), 0),
            sa.func.coalesce(sa.func.sum(c.manifests_removed), 0),
            sa.func.max(c.finished_at),
        ).group_by(c.trigger, c.succeeded)
    )
    return [
        GcRunTotals(
            trigger=row[0],
            succeeded=bool(row[1]),
            runs=int(row[2]),
            objects=int(row[3]),
            bytes_freed=int(row[4]),
            tags_removed=int(row[5]),
            manifests_removed=int(row[6]),
            last_finished_at=_utc(row[7]),
        )
        for row in rows
    ]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
