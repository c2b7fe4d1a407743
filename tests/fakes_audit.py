"""Test double of the audit log port: events in a list, numbered like the table's ids."""

from __future__ import annotations

import dataclasses

from stevedore.domain.audit import AuditEvent, AuditFilter


class InMemoryAuditLog:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.events.append(dataclasses.replace(event, id=len(self.events) + 1))

    def newest(self, selection: AuditFilter, *, before_id: int | None, limit: int) -> list[AuditEvent]:
        found = [
            e
            for e in reversed(self.events)
            if (before_id is None or (e.id or 0) < before_id)
            and (selection.actor_name is None or e.actor_name == selection.actor_name)
            and (selection.namespace is None or e.namespace == selection.namespace)
            and (selection.action is None or e.action == selection.action)
        ]
        return found[:limit]
