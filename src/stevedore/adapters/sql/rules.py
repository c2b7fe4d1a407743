"""SQL adapter: the rules of namespaces (domain.rules.TagRuleStore) over `tag_rules`, and what the repository
deletion guard reads of a repository's tags."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from stevedore.adapters.sql.engine import Database
from stevedore.adapters.sql.tables import repositories, tags
from stevedore.adapters.sql.tables_rules import tag_rules
from stevedore.domain.rules import RuleKind, TagRule


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def rule_of(row: Any) -> TagRule:
    return TagRule(
        namespace=row.namespace,
        repository=row.repository,
        kind=RuleKind(row.kind),
        pattern=row.pattern,
        keep_newest=row.keep_newest,
        keep_days=row.keep_days,
        untagged_days=row.untagged_days,
        id=int(row.id),
        created_at=_utc(row.created_at),
        created_by=row.created_by,
    )


class SqlTagRuleStore:
    def __init__(self, session: Database) -> None:
        self.session = session

    def rules_of(self, namespace: str, kind: RuleKind | None = None) -> list[TagRule]:
        # One probe of ix_tag_rules_namespace_kind: what every write that moves a tag pays.
        query = sa.select(tag_rules).where(tag_rules.c.namespace == namespace)
        if kind is not None:
            query = query.where(tag_rules.c.kind == kind.value)
        return [rule_of(row) for row in self.session.execute(query.order_by(tag_rules.c.id))]

    def add(self, rule: TagRule) -> TagRule:
        new_id = self.session.execute(
            sa.insert(tag_rules)
            .values(
                namespace=rule.namespace,
                repository=rule.repository,
                kind=rule.kind.value,
                pattern=rule.pattern,
                keep_newest=rule.keep_newest,
                keep_days=rule.keep_days,
                untagged_days=rule.untagged_days,
                created_at=rule.created_at,
                created_by=rule.created_by,
            )
            .returning(tag_rules.c.id)
        ).scalar_one()
        row = self.session.execute(sa.select(tag_rules).where(tag_rules.c.id == new_id)).one()
        return rule_of(row)

    def remove(self, namespace: str, rule_id: int) -> TagRule | None:
        row = self.session.execute(
            sa.delete(tag_rules)
            .where(tag_rules.c.namespace == namespace)
            .where(tag_rules.c.id == rule_id)
            .returning(*tag_rules.c)
        ).first()
        return None if row is None else rule_of(row)

    def tag_names(self, repository: str) -> list[str]:
        """Every tag of the repository, by name (the repository deletion guard, when a rule covers it)."""
        return list(
            self.session.execute(
                sa.select(tags.c.name)
                .join(repositories, repositories.c.id == tags.c.repository_id)
                .where(repositories.c.name == repository)
                .order_by(tags.c.name)
            ).scalars()
        )
