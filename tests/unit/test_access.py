"""domain.access: who may do what, and grant() — the token flow's intersection of asked and allowed."""

from __future__ import annotations

import pytest

from stevedore.domain.access import REGISTRY_CATALOG, Action, grant, may, may_list_catalog
from stevedore.domain.model import Account, RepositoryName, Scope

APP = RepositoryName.parse("team/app")


def account(active: bool = True) -> Account:
    return Account(1, "alice", None, "x", is_active=active)


def scope(text: str) -> Scope:
    return Scope.parse(text)


@pytest.mark.parametrize("action", list(Action))
def test_active_account_may_do_everything_and_nobody_else_anything(action):
    assert may(account(), action, APP)
    assert not may(account(active=False), action, APP)
    assert not may(None, action, APP)


def test_catalog_is_for_active_accounts():
    assert may_list_catalog(account())
    assert not may_list_catalog(account(active=False))
    assert not may_list_catalog(None)


def test_grant_keeps_the_asked_actions():
    assert grant(account(), [scope("repository:team/app:pull")]) == [scope("repository:team/app:pull")]
    assert grant(account(), [scope("repository:team/app:push,pull")]) == [scope("repository:team/app:pull,push")]


def test_star_means_every_action():
    assert grant(account(), [scope("repository:team/app:*")]) == [scope("repository:team/app:delete,pull,push")]
    assert grant(account(), [scope("repository:team/app:pull,*")]) == [scope("repository:team/app:delete,pull,push")]


def test_unknown_actions_are_dropped_and_a_scope_left_empty_is_not_granted():
    assert grant(account(), [scope("repository:team/app:pull,admin")]) == [scope("repository:team/app:pull")]
    assert grant(account(), [scope("repository:team/app:admin")]) == []
    assert grant(account(), [Scope("repository", "team/app")]) == []


@pytest.mark.parametrize(
    "name", ["Team/App", "team//app", "/team", "team/", "localhost:5000/app", "a" * 256, "with space", "-x"]
)
def test_invalid_repository_names_are_skipped_without_error(name):
    asked = [Scope("repository", name, frozenset({"pull"})), scope("repository:team/app:pull")]
    assert grant(account(), asked) == [scope("repository:team/app:pull")]


def test_catalog_scope_is_granted_as_registry_catalog_star():
    assert grant(account(), [scope("registry:catalog:*")]) == [REGISTRY_CATALOG]
    assert scope("registry:catalog:*") == REGISTRY_CATALOG


def test_other_registry_scopes_and_unknown_types_are_not_granted():
    asked = [scope("registry:other:*"), scope("unknown:team/app:pull"), scope("repository(plugin):team/app:pull")]
    assert grant(account(), asked) == []


def test_inactive_account_is_granted_nothing():
    asked = [scope("repository:team/app:*"), scope("registry:catalog:*")]
    assert grant(account(active=False), asked) == []


def test_several_scopes_are_granted_in_the_order_asked():
    asked = [
        scope("repository:team/b:pull"),
        scope("registry:catalog:*"),
        scope("repository:Bad:pull"),
        scope("repository:team/a:push"),
    ]
    assert grant(account(), asked) == [
        scope("repository:team/b:pull"),
        REGISTRY_CATALOG,
        scope("repository:team/a:push"),
    ]
