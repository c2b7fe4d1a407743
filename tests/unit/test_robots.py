"""domain.robots and the robot rules of domain.access: who makes robots, what a robot may do under each model, and
when its namespace no longer stands behind it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stevedore.domain.access import Access, AccessRules, Action
from stevedore.domain.access_tokens import AccessTokenService, TokenScope
from stevedore.domain.errors import AccountExists, Denied, InvalidInput, NotFound
from stevedore.domain.model import Account, RepositoryName
from stevedore.domain.namespaces import AccessModel, Namespace, Right
from stevedore.domain.robots import (
    MAX_ROBOTS_PER_NAMESPACE,
    NO_PASSWORD,
    RobotService,
    RobotUnknown,
    is_robot,
    robot_may_act,
)
from tests.fakes import FixedClock, InMemoryAccountStore, InMemoryNamespaceStore, InMemoryRegistryStore
from tests.fakes_access_tokens import InMemoryAccessTokenStore
from tests.fakes_robots import InMemoryRobotStore

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class World:
    def __init__(self, model: AccessModel = AccessModel.DEFAULT) -> None:
        self.accounts = InMemoryAccountStore()
        self.registry = InMemoryRegistryStore()
        self.namespaces = InMemoryNamespaceStore(self.accounts, self.registry)
        self.tokens = InMemoryAccessTokenStore()
        self.clock = FixedClock(NOW)
        self.rules = AccessRules(model)

    def access(self) -> Access:
        return Access(self.namespaces, self.rules)

    def service(self) -> RobotService:
        return RobotService(
            self.accounts,
            InMemoryRobotStore(self.accounts, self.tokens),
            self.namespaces,
            AccessTokenService(self.tokens, self.clock),
            self.access(),
            self.clock,
        )

    def user(self, name: str, *, admin: bool = False) -> Account:
        return self.accounts.add(Account(None, name, None, "x", is_admin=admin))

    def team(self, *members: tuple[Account, Right]) -> None:
        self.namespaces.add(Namespace("team", NOW))
        for account, right in members:
            assert account.id is not None
            self.namespaces.set_member("team", account.id, right)

    def may(self, account: Account, action: Action, repository: str) -> bool:
        return self.access().may(account, action, RepositoryName.parse(repository))


@pytest.fixture
def world() -> World:
    return World()


def test_a_namespace_admin_makes_a_robot_that_is_an_account_with_no_password_and_a_limited_secret(world):
    ada = world.user("ada")
    world.team((ada, Right.ADMIN))
    issued = world.service().create(ada, "team", name="ci", scope="push", expires_in_days=30)
    robot = issued.robot
    assert robot.login == "team+ci" and robot.namespace == "team" and robot.name == "ci"
    assert robot.account.password_hash == NO_PASSWORD and not robot.account.is_admin and robot.account.email is None
    assert issued.secret.startswith("stv_")
    token = robot.credential
    assert token is not None and token.namespaces == ("team",) and token.scope is TokenScope.PUSH
    assert token.expires_at is not None and robot.state(NOW) == "active"
    assert [r.login for r in world.service().list(ada, "team")] == ["team+ci"]


def test_a_user_makes_robots_for_their_own_namespace_without_a_row(world):
    ada = world.user("ada")
    assert world.service().create(ada, "ada", name="deploy", scope="pull", expires_in_days=None).robot.login == (
        "ada+deploy"
    )


@pytest.mark.parametrize("right", [None, Right.PULL, Right.PUSH])
def test_only_namespace_admins_and_administrators_make_robots(world, right):
    ada, paula, boss = world.user("ada"), world.user("paula"), world.user("boss", admin=True)
    world.team((ada, Right.ADMIN), *([(paula, right)] if right else []))
    with pytest.raises(Denied):
        world.service().create(paula, "team", name="ci", scope="push", expires_in_days=None)
    with pytest.raises(Denied):
        world.service().list(paula, "team")
    assert world.service().create(boss, "team", name="ci", scope="push", expires_in_days=None)


def test_a_robot_never_manages_robots(world):
    ada = world.user("ada")
    robot = world.service().create(ada, "ada", name="ci", scope="delete", expires_in_days=None).robot
    with pytest.raises(Denied):
        world.service().create(robot.account, "ada", name="other", scope="push", expires_in_days=None)


def test_an_unknown_or_reserved_namespace_has_no_robots(world):
    boss = world.user("boss", admin=True)
    with pytest.raises(NotFound):
        world.service().create(boss, "nowhere", name="ci", scope="push", expires_in_days=None)
    with pytest.raises(NotFound):
        world.service().create(boss, "library", name="ci", scope="push", expires_in_days=None)


@pytest.mark.parametrize(
    ("name", "scope", "days"),
    [("", "push", None), ("CI", "push", None), ("a+b", "push", None), ("x" * 61, "push", None), ("ci", "admin", None),
     ("ci", "push", 0), ("ci", "push", 99999)],
)  # fmt: skip
def test_bad_robot_forms_are_refused_and_make_nothing(world, name, scope, days):
    ada = world.user("ada")
    with pytest.raises(InvalidInput):
        world.service().create(ada, "ada", name=name, scope=scope, expires_in_days=days)
    assert world.accounts.count() == 1


def test_a_login_is_made_once_and_a_namespace_has_a_bounded_number_of_robots(world):
    ada = world.user("ada")
    service = world.service()
    service.create(ada, "ada", name="ci", scope="push", expires_in_days=None)
    with pytest.raises(AccountExists):
        service.create(ada, "ada", name="ci", scope="push", expires_in_days=None)
    for number in range(MAX_ROBOTS_PER_NAMESPACE - 1):
        service.create(ada, "ada", name=f"r{number}", scope="pull", expires_in_days=None)
    with pytest.raises(InvalidInput, match="at most"):
        service.create(ada, "ada", name="one-more", scope="pull", expires_in_days=None)


@pytest.mark.parametrize(
    ("model", "expected_elsewhere"),
    [(AccessModel.DEFAULT, {"pull"}), (AccessModel.OPEN, {"pull"}), (AccessModel.PRIVATE, set())],
)
def test_a_robot_pushes_and_deletes_in_its_namespace_only_and_pulls_like_anyone(model, expected_elsewhere):
    world = World(model)
    ada = world.user("ada")
    world.team((ada, Right.ADMIN))
    robot = world.service().create(ada, "team", name="ci", scope="delete", expires_in_days=None).robot.account

    def allowed(repository: str) -> set[str]:
        return {a.value for a in Action if world.may(robot, a, repository)}

    assert allowed("team/app") == {"pull", "push", "delete"}
    assert allowed("ada/app") == expected_elsewhere
    assert allowed("free/app") == expected_elsewhere  # a free namespace: anyone else's push would claim it
    assert world.access().right_of(robot, "team") is Right.PUSH  # never admin of its namespace


def test_a_robot_never_claims_a_namespace(world):
    ada = world.user("ada")
    robot = world.service().create(ada, "ada", name="ci", scope="push", expires_in_days=None).robot.account
    access = world.access()
    with pytest.raises(Denied, match="own namespace"):
        access.claim_for_push(robot, RepositoryName.parse("free/app"), world.clock)
    assert world.namespaces.get("free") is None
    access.claim_for_push(robot, RepositoryName.parse("ada/app"), world.clock)  # its own: allowed, no claim
    assert world.namespaces.get("ada") is None


def test_a_robot_named_like_an_administrator_is_not_one(world):
    robot = world.accounts.add(Account(None, "team+ci", None, NO_PASSWORD, is_admin=True))  # a corrupt row
    assert not world.may(robot, Action.PUSH, "other/app")


def test_disabling_a_robot_ends_its_tokens_and_enabling_brings_back_only_the_secret(world):
    ada = world.user("ada")
    service = world.service()
    robot = service.create(ada, "ada", name="ci", scope="push", expires_in_days=None).robot
    generation = robot.account.token_generation
    disabled = service.set_active(ada, "ada", "ci", False)
    assert not disabled.account.is_active and disabled.account.token_generation == generation + 1
    assert service.list(ada, "ada")[0].state(NOW) == "disabled"
    service.set_active(ada, "ada", "ci", True)
    assert service.list(ada, "ada")[0].state(NOW) == "active"
    assert world.accounts.by_username("ada+ci").token_generation == generation + 1


def test_deleting_a_robot_removes_its_account_and_an_unknown_robot_is_unknown(world):
    ada = world.user("ada")
    service = world.service()
    service.create(ada, "ada", name="ci", scope="push", expires_in_days=None)
    service.delete(ada, "ada", "ci")
    assert world.accounts.by_username("ada+ci") is None and service.list(ada, "ada") == []
    with pytest.raises(RobotUnknown):
        service.delete(ada, "ada", "ci")


def test_a_robot_acts_while_its_namespace_stands_behind_it():
    robot = Account(1, "ada+ci", None, NO_PASSWORD)
    ada = Account(2, "ada", None, "x")
    assert robot_may_act(robot, ada, True)
    assert not robot_may_act(robot, Account(2, "ada", None, "x", is_active=False), True)  # its user is disabled
    assert not robot_may_act(robot, None, False)  # its user is deleted
    assert robot_may_act(Account(3, "team+ci", None, NO_PASSWORD), None, True)  # a team's, whoever made it
    assert not robot_may_act(Account(3, "team+ci", None, NO_PASSWORD, is_active=False), None, True)


def test_robot_names_are_told_apart_from_people():
    assert is_robot("team+ci") and not is_robot("team")


def test_a_robot_is_made_member_of_no_namespace(world):
    from stevedore.domain.namespaces import NamespaceService

    ada, boss = world.user("ada"), world.user("boss", admin=True)
    world.team((ada, Right.ADMIN))
    world.service().create(boss, "ada", name="ci", scope="push", expires_in_days=None)
    with pytest.raises(InvalidInput, match="robot"):
        NamespaceService(world.namespaces, world.accounts, world.clock).add_member("team", "ada+ci", Right.PUSH)
    robot = world.accounts.by_username("ada+ci")
    assert robot is not None and not world.may(robot, Action.PUSH, "team/app")


def test_deleting_a_user_deletes_the_robots_of_its_own_namespace_only(world):
    from stevedore.domain.accounts import AccountService
    from tests.fakes import PlainPasswordHasher

    ada, boss = world.user("ada"), world.user("boss", admin=True)
    world.team((ada, Right.ADMIN))
    world.service().create(ada, "ada", name="ci", scope="push", expires_in_days=None)
    world.service().create(ada, "team", name="ci", scope="push", expires_in_days=None)
    world.accounts.add(Account(None, "adam+ci", None, NO_PASSWORD))  # another namespace that starts alike
    AccountService(world.accounts, PlainPasswordHasher(), world.clock).delete_account("ada")
    assert {a.username for a in world.accounts.accounts.values()} == {"boss", "team+ci", "adam+ci"}
    assert boss.is_admin


def test_a_robot_is_made_admin_of_no_new_namespace(world):
    from stevedore.domain.namespaces import NamespaceService

    ada = world.user("ada")
    world.service().create(ada, "ada", name="ci", scope="push", expires_in_days=None)
    with pytest.raises(InvalidInput, match="robot"):
        NamespaceService(world.namespaces, world.accounts, world.clock).create("newteam", owner="ada+ci")
    assert world.namespaces.get("newteam") is None
