"""SQL adapter: the NamespaceStore port over the namespaces and namespace_members tables, and the namespaces pages'
read model (domain.namespaces.NamespaceQueries)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from stevedore.adapters.sql.engine import Database, dialect_name
from stevedore.adapters.sql.tables import accounts, manifests, namespace_members, namespaces, repositories
from stevedore.domain.model import ROBOT_SEPARATOR
from stevedore.domain.namespaces import RESERVED_NAMESPACES, Member, Namespace, NamespaceSummary, Right


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _namespace(row: Any) -> Namespace:
    return Namespace(row.name, _utc(row.created_at), row.created_by)


class SqlNamespaceStore:
    def __init__(self, session: Database) -> None:
        self.session = session

    def _id(self, name: str) -> int | None:
        found = self.session.execute(sa.select(namespaces.c.id).where(namespaces.c.name == name)).scalar_one_or_none()
        return None if found is None else int(found)

    def get(self, name: str) -> Namespace | None:
        row = self.session.execute(sa.select(namespaces).where(namespaces.c.name == name)).first()
        return None if row is None else _namespace(row)

    def add(self, namespace: Namespace) -> bool:
        # INSERT … ON CONFLICT DO NOTHING: on PostgreSQL a second transaction inserting the same name waits on the
        # unique index until the first ends, then inserts nothing; SQLite's writers hold the lock from their start.
        module = postgresql if dialect_name(self.session) == "postgresql" else sqlite
        inserted = self.session.execute(
            module.insert(namespaces)
            .values(name=namespace.name, created_at=namespace.created_at, created_by=namespace.created_by)
            .on_conflict_do_nothing(index_elements=["name"])
            .returning(namespaces.c.id)
        ).scalar_one_or_none()
        return inserted is not None

    def all(self) -> list[Namespace]:
        return [_namespace(row) for row in self.session.execute(sa.select(namespaces).order_by(namespaces.c.name))]

    def lock(self, name: str) -> None:
        # PostgreSQL: the row stays locked until the transaction ends, so two member changes of one namespace run
        # one after the other (the last-admin rule counts admins after this). SQLite's writers hold the database's
        # lock from their start already.
        if dialect_name(self.session) == "postgresql":
            self.session.execute(sa.select(namespaces.c.id).where(namespaces.c.name == name).with_for_update())

    def right_of(self, name: str, account_id: int) -> Right | None:
        found = self.session.execute(
            sa.select(namespace_members.c.right)
            .join(namespaces, namespaces.c.id == namespace_members.c.namespace_id)
            .where(namespaces.c.name == name)
            .where(namespace_members.c.account_id == account_id)
        ).scalar_one_or_none()
        return None if found is None else Right(found)

    def set_member(self, name: str, account_id: int, right: Right) -> None:
        namespace_id = self._id(name)
        if namespace_id is None:
            raise LookupError(f"no namespace {name}")
        updated = self.session.execute(
            sa.update(namespace_members)
            .where(namespace_members.c.namespace_id == namespace_id)
            .where(namespace_members.c.account_id == account_id)
            .values(right=right.value)
        )
        if not updated.rowcount:  # type: ignore[attr-defined]
            self.session.execute(
                sa.insert(namespace_members).values(namespace_id=namespace_id, account_id=account_id, right=right.value)
            )

    def remove_member(self, name: str, account_id: int) -> bool:
        namespace_id = self._id(name)
        if namespace_id is None:
            return False
        result = self.session.execute(
            sa.delete(namespace_members)
            .where(namespace_members.c.namespace_id == namespace_id)
            .where(namespace_members.c.account_id == account_id)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def members(self, name: str) -> list[Member]:
        rows = self.session.execute(
            sa.select(accounts.c.id, accounts.c.username, namespace_members.c.right)
            .join(namespace_members, namespace_members.c.account_id == accounts.c.id)
            .join(namespaces, namespaces.c.id == namespace_members.c.namespace_id)
            .where(namespaces.c.name == name)
            .order_by(accounts.c.username)
        )
        return [Member(name, int(row.id), row.username, Right(row.right)) for row in rows]

    def is_username(self, name: str) -> bool:
        found = self.session.execute(sa.select(accounts.c.id).where(accounts.c.username == name)).first()
        return found is not None

    def has_repositories(self, name: str) -> bool:
        # `name/` and everything after it: '/' + 1 is '0', so this is a range on the unique index of names.
        in_namespace = sa.or_(
            repositories.c.name == name,
            sa.and_(repositories.c.name > f"{name}/", repositories.c.name < f"{name}0"),
        )
        found = self.session.execute(sa.select(repositories.c.id).where(in_namespace).limit(1)).first()
        return found is not None


class SqlNamespaceQueries:
    """The read model of the namespaces list: every namespace with a row and every account's own (user names that
    are not reserved and not robots'), each with its counts, in one query a page."""

    def __init__(self, session: Database) -> None:
        self.session = session

    def rights_of(self, account_id: int) -> dict[str, Right]:
        """The account's rights as a member, by namespace: one query for a whole page's decisions."""
        rows = self.session.execute(
            sa.select(namespaces.c.name, namespace_members.c.right)
            .join(namespace_members, namespace_members.c.namespace_id == namespaces.c.id)
            .where(namespace_members.c.account_id == account_id)
        )
        return {name: Right(right) for name, right in rows if right in Right._value2member_map_}

    def summaries(self, *, search: str, names: Iterable[str] | None, offset: int, limit: int) -> list[NamespaceSummary]:
        personal = (
            sa.select(accounts.c.username.label("name"))
            .where(accounts.c.username.notin_(sorted(RESERVED_NAMESPACES)))
            .where(~accounts.c.username.contains(ROBOT_SEPARATOR, autoescape=True))
        )
        every = sa.union(sa.select(namespaces.c.name.label("name")), personal).subquery("every_namespace")
        name = every.c.name
        owner = (
            sa.select(accounts.c.username)
            .where(accounts.c.username == name)
            .where(name.notin_(sorted(RESERVED_NAMESPACES)))
            .scalar_subquery()
            .label("owner")
        )
        members = (
            sa.select(sa.func.count())
            .select_from(namespace_members)
            .join(namespaces, namespaces.c.id == namespace_members.c.namespace_id)
            .join(accounts, accounts.c.id == namespace_members.c.account_id)
            .where(namespaces.c.name == name)
            .where(accounts.c.username != name)  # the owner is counted once, below
            .scalar_subquery()
            .label("members")
        )
        # `name/` and everything after it: '/' + 1 is '0', so this is a range on the unique index of names.
        held = (
            sa.select(sa.func.count())
            .select_from(repositories)
            .where(
                sa.or_(
                    repositories.c.name == name,
                    sa.and_(repositories.c.name > name.concat("/"), repositories.c.name < name.concat("0")),
                )
            )
            .where(sa.exists().where(manifests.c.repository_id == repositories.c.id))
            .scalar_subquery()
            .label("repositories")
        )
        query = sa.select(name, owner, members, held)
        if search:
            query = query.where(name.contains(search, autoescape=True))
        if names is not None:
            wanted = sorted(set(names))
            if not wanted:
                return []
            query = query.where(name.in_(wanted))
        rows = self.session.execute(query.order_by(name).offset(offset).limit(limit))
        return [
            NamespaceSummary(row.name, row.owner, int(row.members) + (1 if row.owner else 0), int(row.repositories))
            for row in rows
        ]
