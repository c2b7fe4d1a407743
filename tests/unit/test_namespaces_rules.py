"""domain.namespaces: who sees a namespace and who manages its members on the pages, and the rules of those changes
(the owner of a personal namespace stays its admin; a namespace never loses its last admin from the pages; a
refusal changes nothing), over in-memory fakes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stevedore.domain.access import Access, AccessRules
from stevedore.domain.errors import AccountUnknown, Denied, InvalidInput, NameInvalid
from stevedore.domain.model import Account
from stevedore.domain.namespaces import (
    AccessModel,
    LastAdmin,
    MemberChange,
    Namespace,
    NamespaceExists,
    NamespaceManagement,
    NamespaceService,
    NamespaceUnknown,
    OwnerFixed,
    Right,
    may_manage_namespace,
    may_see_namespace,
)
from tests.fakes import FixedClock, InMemoryAccountStore, InMemoryNamespaceStore, InMemoryRegistryStore

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class World:
    def __init__(self, model: AccessModel = AccessModel.DEFAULT) -> None:
        self.accounts = InMemoryAccountStore()
        self.namespaces = InMemoryNamespaceStore(self.accounts, InMemoryRegistryStore())
        self.rules = AccessRules(model)
        self.clock = FixedClock(NOW)

    def access(self) -> Access:
        return Access(self.namespaces, self.rules)

    def management(self) -> NamespaceManagement:
        return NamespaceManagement(NamespaceService(self.namespaces, self.accounts, self.clock), self.access())

    def user(self, name: str, *, admin: bool = False, active: bool = True) -> Account:
        return self.accounts.add(Account(None, name, None, "x", is_admin=admin, is_active=active))

    def team(self, name: str = "team", **members: Right) -> None:
        self.namespaces.add(Namespace(name, NOW))
        for username, right in members.items():
            account = self.accounts.by_username(username)
            assert account is not None and account.id is not None
            self.namespaces.set_member(name, account.id, right)

    def rights(self, name: str = "team") -> dict[str, str]:
        return {m.username: m.right.value for m in self.namespaces.members(name)}


@pytest.fixture
def world() -> World:
    w = World()
    for name in ("ada", "paula", "sam", "pete"):
        w.user(name)
    w.user("boss", admin=True)
    w.team(ada=Right.ADMIN, paula=Right.PULL, pete=Right.PUSH)
    return w


def test_who_manages_a_namespace(world):
    access = world.access()
    ada, paula, pete, sam, boss = (world.accounts.by_username(n) for n in ("ada", "paula", "pete", "sam", "boss"))
    assert may_manage_namespace(access, ada, "team")
    assert may_manage_namespace(access, boss, "team")
    assert not may_manage_namespace(access, paula, "team")
    assert not may_manage_namespace(access, pete, "team")  # push is not admin
    assert not may_manage_namespace(access, sam, "team")
    assert not may_manage_namespace(access, None, "team")
    assert may_manage_namespace(access, sam, "sam")  # the owner of a personal namespace
    assert not may_manage_namespace(access, sam, "ada")


def test_a_disabled_admin_manages_nothing(world):
    ada = world.accounts.by_username("ada")
    ada.is_active = False
    assert not may_manage_namespace(world.access(), ada, "team")
    assert not may_manage_namespace(world.access(), ada, "ada")
    boss = world.user("old-boss", admin=True, active=False)
    assert not may_manage_namespace(world.access(), boss, "team")


@pytest.mark.parametrize(
    ("model", "seen"),
    [
        (AccessModel.DEFAULT, {"team", "sam", "ada", "other"}),
        (AccessModel.OPEN, {"team", "sam", "ada", "other"}),
        (AccessModel.PRIVATE, {"sam"}),
    ],
)
def test_who_sees_a_namespace_is_who_may_pull_from_it(world, model, seen):
    world.rules = AccessRules(model)
    world.team("other")
    sam = world.accounts.by_username("sam")
    access = world.access()
    assert {n for n in ("team", "sam", "ada", "other") if may_see_namespace(access, sam, n)} == seen
    paula = world.accounts.by_username("paula")
    assert may_see_namespace(access, paula, "team")  # a member sees it in every model
    boss = world.accounts.by_username("boss")
    assert all(may_see_namespace(access, boss, n) for n in ("team", "sam", "other"))
    assert not may_see_namespace(access, None, "team")
    assert not may_see_namespace(access, sam, "Not A Name")


def test_an_admin_of_the_namespace_adds_changes_and_removes_members(world):
    ada = world.accounts.by_username("ada")
    manage = world.management()
    assert manage.set_member(ada, "team", "sam", "push") == MemberChange("team", "sam", Right.PUSH, None)
    assert manage.set_member(ada, "team", "sam", "pull") == MemberChange("team", "sam", Right.PULL, Right.PUSH)
    assert world.rights()["sam"] == "pull"
    assert manage.remove_member(ada, "team", "sam") == MemberChange("team", "sam", None, Right.PULL)
    assert "sam" not in world.rights()
    assert world.namespaces.locked == ["team", "team", "team"]


def test_an_installation_administrator_manages_any_namespace(world):
    boss = world.accounts.by_username("boss")
    world.management().set_member(boss, "team", "sam", "admin")
    assert world.rights()["sam"] == "admin"


def test_the_owner_adds_members_to_a_personal_namespace_which_gets_its_row_then(world):
    sam = world.accounts.by_username("sam")
    assert world.namespaces.get("sam") is None
    world.management().set_member(sam, "sam", "paula", "push")
    assert world.rights("sam") == {"paula": "push"}


@pytest.mark.parametrize("who", ["paula", "pete", "sam"])
def test_others_are_refused_and_nothing_changes(world, who):
    account = world.accounts.by_username(who)
    before = world.rights()
    manage = world.management()
    with pytest.raises(Denied):
        manage.set_member(account, "team", "sam", "admin")
    with pytest.raises(Denied):
        manage.remove_member(account, "team", "paula")
    with pytest.raises(Denied):
        manage.reassign(account, "team", who)
    with pytest.raises(Denied):
        manage.create(account, "newteam")
    assert world.rights() == before and world.namespaces.get("newteam") is None


def test_bad_input_is_refused_with_a_clear_error_and_changes_nothing(world):
    ada = world.accounts.by_username("ada")
    manage = world.management()
    before = world.rights()
    with pytest.raises(AccountUnknown, match="no user nobody"):
        manage.set_member(ada, "team", "nobody", "pull")
    with pytest.raises(AccountUnknown):
        manage.set_member(ada, "team", "nul\x00name", "pull")  # never looked up (PostgreSQL holds no NUL)
    with pytest.raises(InvalidInput, match="unknown right 'owner'"):
        manage.set_member(ada, "team", "sam", "owner")
    with pytest.raises(NamespaceUnknown, match="no namespace nowhere"):
        manage.set_member(ada, "nowhere", "sam", "pull")
    with pytest.raises(NameInvalid):
        manage.set_member(ada, "Bad Name", "sam", "pull")
    with pytest.raises(InvalidInput, match="sam is no member of team"):
        manage.remove_member(ada, "team", "sam")
    assert world.rights() == before


def test_the_owner_of_a_personal_namespace_stays_its_admin(world):
    sam = world.accounts.by_username("sam")
    boss = world.accounts.by_username("boss")
    manage = world.management()
    for actor in (sam, boss):
        with pytest.raises(OwnerFixed, match="sam owns the namespace sam"):
            manage.remove_member(actor, "sam", "sam")
        with pytest.raises(OwnerFixed):
            manage.set_member(actor, "sam", "sam", "pull")
        with pytest.raises(OwnerFixed, match="cannot be reassigned"):
            manage.reassign(boss, "sam", "paula")
    assert world.namespaces.get("sam") is None


def test_the_last_admin_of_a_team_is_neither_removed_nor_demoted(world):
    ada = world.accounts.by_username("ada")
    boss = world.accounts.by_username("boss")
    manage = world.management()
    for actor in (ada, boss):  # installation administrators too: they reassign instead
        with pytest.raises(LastAdmin, match="ada is the last admin of team"):
            manage.remove_member(actor, "team", "ada")
        with pytest.raises(LastAdmin):
            manage.set_member(actor, "team", "ada", "push")
    assert world.rights()["ada"] == "admin"
    manage.set_member(ada, "team", "sam", "admin")  # with a second admin, the first may go
    manage.remove_member(ada, "team", "ada")
    assert world.rights() == {"paula": "pull", "pete": "push", "sam": "admin"}


def test_a_namespace_without_an_admin_can_get_one(world):
    world.team("empty")
    boss = world.accounts.by_username("boss")
    manage = world.management()
    manage.set_member(boss, "empty", "sam", "pull")
    manage.remove_member(boss, "empty", "sam")  # no admin to keep
    manage.set_member(boss, "empty", "sam", "admin")
    assert world.rights("empty") == {"sam": "admin"}


def test_an_administrator_reassigns_a_team_the_old_admins_go_the_others_stay(world):
    boss = world.accounts.by_username("boss")
    world.management().set_member(boss, "team", "sam", "admin")
    changes = world.management().reassign(boss, "team", "pete")
    assert changes == [
        MemberChange("team", "pete", Right.ADMIN, Right.PUSH),
        MemberChange("team", "ada", None, Right.ADMIN),
        MemberChange("team", "sam", None, Right.ADMIN),
    ]
    assert world.rights() == {"paula": "pull", "pete": "admin"}
    assert world.management().reassign(boss, "team", "pete") == []  # already its only admin
    with pytest.raises(AccountUnknown):
        world.management().reassign(boss, "team", "nobody")
    with pytest.raises(NamespaceUnknown):
        world.management().reassign(boss, "nowhere", "pete")
    assert world.rights() == {"paula": "pull", "pete": "admin"}


def test_only_administrators_create_namespaces(world):
    boss = world.accounts.by_username("boss")
    created = world.management().create(boss, "web", owner="sam")
    assert created.name == "web" and world.rights("web") == {"sam": "admin"}
    with pytest.raises(NamespaceExists):
        world.management().create(boss, "web")
    with pytest.raises(NamespaceExists):
        world.management().create(boss, "sam")
    with pytest.raises(AccountUnknown):
        world.management().create(boss, "other", owner="nobody")
    assert world.namespaces.get("other") is None
