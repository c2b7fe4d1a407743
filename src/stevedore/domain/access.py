"""Domain layer: the authorization rule. Every decision of who may do what to which repository goes through here."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from stevedore.domain.model import Account, RepositoryName, Scope


class Action(StrEnum):
    PULL = "pull"
    PUSH = "push"
    DELETE = "delete"


REGISTRY_CATALOG = Scope("registry", "catalog", frozenset({"*"}))


def may(account: Account | None, action: Action, repository: RepositoryName) -> bool:
    """May `account` do `action` on `repository`?

    For now every active account may pull, push and delete everywhere (the original Stevedore's model); per-namespace
    rights will refine this one function.
    """
    if account is None or not account.is_active:
        return False
    return action in (Action.PULL, Action.PUSH, Action.DELETE)


def may_list_catalog(account: Account | None) -> bool:
    return account is not None and account.is_active


def grant(account: Account, requested: Iterable[Scope]) -> list[Scope]:
    """The part of each requested scope that `account` is allowed: the token flow's intersection. Never raises."""
    granted: list[Scope] = []
    for scope in requested:
        if scope.type == "repository":
            try:
                name = RepositoryName.parse(scope.name)
            except Exception:
                continue
            wanted = {a for a in scope.actions if a != "*"}
            if "*" in scope.actions:
                wanted |= {a.value for a in Action}
            actions = frozenset(a for a in wanted if a in Action._value2member_map_ and may(account, Action(a), name))
            if actions:
                granted.append(Scope("repository", scope.name, actions))
        elif scope.type == "registry" and scope.name == "catalog" and may_list_catalog(account):
            granted.append(REGISTRY_CATALOG)
    return granted
