"""SQL adapter: the AuditLog port over the audit_events table."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from stevedore.adapters.sql.engine import Database
from stevedore.adapters.sql.tables_audit import audit_events
from stevedore.domain.audit import AuditAction, AuditEvent, AuditFilter


class SqlAuditLog:
    def __init__(self, session: Database) -> None:
        self.session = session

    def record(self, event: AuditEvent) -> None:
        self.session.execute(
            sa.insert(audit_events).values(
                at=event.at,
                action=event.action.value,
                actor_id=event.actor_id,
                actor_name=event.actor_name,
                address=event.address,
                namespace=event.namespace,
                target=event.target,
                detail=event.detail,
            )
        )

    def newest(self, selection: AuditFilter, *, before_id: int | None, limit: int) -> list[AuditEvent]:
        query = sa.select(audit_events).order_by(audit_events.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(audit_events.c.id < before_id)
        if selection.actor_name is not None:
            query = query.where(audit_events.c.actor_name == selection.actor_name)
        if selection.namespace is not None:
            query = query.where(audit_events.c.namespace == selection.namespace)
        if selection.action is not None:
            query = query.where(audit_events.c.action == selection.action.value)
        return [_event(row) for row in self.session.execute(query)]


def _event(row: sa.Row[tuple[object, ...]]) -> AuditEvent:
    return AuditEvent(
        id=row.id,
        at=_aware(row.at),
        action=_action(row.action),
        actor_id=row.actor_id,
        actor_name=row.actor_name,
        address=row.address,
        namespace=row.namespace,
        target=row.target,
        detail=row.detail,
    )


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything in the domain is aware UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _action(text: str) -> AuditAction:
    # Only this code writes the column, from the vocabulary; an unknown value is a bug worth a loud error.
    return AuditAction(text)
