"""domain.access: the rights matrix under the three models, the claim of a first push, and grant() — the token
flow's intersection of asked and allowed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stevedore.domain.access import REGISTRY_CATALOG, Access, AccessRules, Action
from stevedore.domain.errors import Denied
from stevedore.domain.model import Account, RepositoryName, Scope
from stevedore.domain.namespaces import AccessModel, Namespace, Right, namespace_of
from tests.fakes import FixedClock, InMemoryAccountStore, InMemoryNamespaceStore, InMemoryRegistryStore

APP = RepositoryName.parse("team/app")
PULL, PUSH, DELETE = Action.PULL, Action.PUSH, Action.DELETE
NOW = datetime(2026, 1, 1, tzinfo=UTC)


class World:
    """Accounts, namespaces and repositories in fakes, and an Access over them."""

    def __init__(self, model: AccessModel = AccessModel.DEFAULT, claiming: bool = True) -> None:
        self.accounts = InMemoryAccountStore()
        self.registry = InMemoryRegistryStore()
        self.namespaces = InMemoryNamespaceStore(self.accounts, self.registry)
        self.rules = AccessRules(model, claiming)
        self.clock = FixedClock(NOW)

    def access(self) -> Access:
        return Access(self.namespaces, self.rules)  # a fresh one per request, as the app builds it

    def user(self, name: str, *, admin: bool = False, active: bool = True) -> Account:
        return self.accounts.add(Account(None, name, None, "x", is_admin=admin, is_active=active))

    def member(self, namespace: str, account: Account, right: Right) -> None:
        self.namespaces.add(Namespace(namespace, NOW))
        assert account.id is not None
        self.namespaces.set_member(namespace, account.id, right)

    def may(self, account: Account | None, action: Action, repository: str) -> bool:
        return self.access().may(account, action, RepositoryName.parse(repository))


def allowed(world: World, account: Account | None, repository: str = "team/app") -> set[str]:
    return {action.value for action in Action if world.may(account, action, repository)}


# --- the matrix ------------------------------------------------------------------------------------------------------
# (who, default, open, private): what each may do on team/app, where `team` has pull, push and admin members.
MATRIX = [
    ("admin", "delete,pull,push", "delete,pull,push", "delete,pull,push"),
    ("team_admin", "delete,pull,push", "delete,pull,push", "delete,pull,push"),
    ("team_pusher", "delete,pull,push", "delete,pull,push", "delete,pull,push"),
    ("team_puller", "pull", "delete,pull,push", "pull"),
    ("stranger", "pull", "delete,pull,push", ""),
    ("disabled_pusher", "", "", ""),
    ("anonymous", "", "", ""),
]


@pytest.fixture(params=list(AccessModel))
def model(request):
    return request.param


def team_world(model: AccessModel) -> tuple[World, dict[str, Account | None]]:
    world = World(model)
    who: dict[str, Account | None] = {
        "admin": world.user("root", admin=True),
        "team_admin": world.user("ada"),
        "team_pusher": world.user("pat"),
        "team_puller": world.user("paula"),
        "stranger": world.user("sam"),
        "disabled_pusher": world.user("dan", active=False),
        "anonymous": None,
    }
    world.registry.ensure_repository(APP, NOW)
    for role, right in (
        ("team_admin", Right.ADMIN),
        ("team_pusher", Right.PUSH),
        ("team_puller", Right.PULL),
        ("disabled_pusher", Right.PUSH),
    ):
        account = who[role]
        assert account is not None
        world.member("team", account, right)
    return world, who


@pytest.mark.parametrize(("who", "default", "open_", "private"), MATRIX)
def test_rights_matrix(model, who, default, open_, private):
    world, accounts = team_world(model)
    expected = {AccessModel.DEFAULT: default, AccessModel.OPEN: open_, AccessModel.PRIVATE: private}[model]
    assert allowed(world, accounts[who]) == set(filter(None, expected.split(",")))


@pytest.mark.parametrize("model", [AccessModel.DEFAULT, AccessModel.PRIVATE])
def test_an_account_owns_the_namespace_of_its_user_name_without_a_row(model):
    world = World(model, claiming=False)
    alice, bob = world.user("alice"), world.user("bob")
    assert allowed(world, alice, "alice/app") == {"pull", "push", "delete"}
    assert allowed(world, alice, "alice") == {"pull", "push", "delete"}  # a bare name is its own namespace
    assert allowed(world, alice, "alice/deep/er") == {"pull", "push", "delete"}
    assert PUSH.value not in allowed(world, bob, "alice/app")
    assert world.namespaces.all() == []


def test_a_name_that_only_starts_like_a_namespace_is_another_namespace():
    world = World(claiming=False)
    alice = world.user("alice")
    assert not world.may(alice, PUSH, "alice2/app")
    assert not world.may(alice, PUSH, "alice-x")
    assert namespace_of(RepositoryName.parse("alice-x/y")) == "alice-x"


@pytest.mark.parametrize("model", list(AccessModel))
def test_a_disabled_account_may_do_nothing_even_in_its_own_namespace(model):
    world = World(model)
    dan = world.user("dan", active=False)
    assert allowed(world, dan, "dan/app") == set()
    assert allowed(world, world.user("root", admin=True, active=False), "team/app") == set()


def test_a_right_taken_away_is_gone_for_the_next_request():
    world = World(AccessModel.PRIVATE)
    pat = world.user("pat")
    world.member("team", pat, Right.PUSH)
    assert world.may(pat, PUSH, "team/app")
    world.namespaces.remove_member("team", pat.id)  # type: ignore[arg-type]
    assert allowed(world, pat) == set()


def test_catalog_is_for_active_accounts_in_every_model(model):
    world = World(model)
    assert world.access().may_list_catalog(world.user("alice"))
    assert not world.access().may_list_catalog(world.user("dan", active=False))
    assert not world.access().may_list_catalog(None)


# --- reserved names --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("repository", ["library/alpine", "library", "v2/x", "admin/tool", "static"])
def test_reserved_namespaces_are_never_claimed(repository):
    world = World()
    alice = world.user("alice")
    assert not world.may(alice, PUSH, repository)
    with pytest.raises(Denied):
        world.access().claim_for_push(alice, RepositoryName.parse(repository), world.clock)
    assert world.namespaces.all() == []


def test_a_reserved_namespace_an_administrator_created_takes_members():
    world = World()
    alice = world.user("alice")
    world.member("library", alice, Right.PUSH)
    assert world.may(alice, PUSH, "library/alpine")
    assert world.may(world.user("root", admin=True), DELETE, "library/alpine")


def test_an_account_named_like_a_reserved_namespace_does_not_own_it():
    world = World()
    library = world.user("library")
    assert not world.may(library, PUSH, "library/alpine")


# --- claims ---------------------------------------------------------------------------------------------------------
def test_a_push_into_a_free_namespace_may_claim_it_and_the_claim_makes_the_pusher_its_admin():
    world = World()
    alice, bob = world.user("alice"), world.user("bob")
    assert world.may(alice, PUSH, "team/app")
    assert not world.may(alice, DELETE, "team/app")  # nothing to delete before the claim
    world.access().claim_for_push(alice, APP, world.clock)
    assert world.namespaces.get("team") == Namespace("team", NOW, alice.id)
    assert world.namespaces.right_of("team", alice.id) is Right.ADMIN  # type: ignore[arg-type]
    assert allowed(world, alice, "team/other") == {"pull", "push", "delete"}
    assert allowed(world, bob, "team/app") == {"pull"}
    with pytest.raises(Denied):
        world.access().claim_for_push(bob, APP, world.clock)


def test_a_bare_name_claims_itself():
    world = World()
    alice, bob = world.user("alice"), world.user("bob")
    world.access().claim_for_push(alice, RepositoryName.parse("tool"), world.clock)
    assert world.namespaces.get("tool") is not None
    assert world.may(alice, PUSH, "tool/plugin")
    assert not world.may(bob, PUSH, "tool")


def test_of_two_racing_first_pushes_the_second_is_denied():
    """Both were told they may push (the namespace was free when each was checked); the claim decides."""
    world = World()
    alice, bob = world.user("alice"), world.user("bob")
    first, second = world.access(), world.access()
    assert first.may(alice, PUSH, APP) and second.may(bob, PUSH, APP)
    first.claim_for_push(alice, APP, world.clock)
    with pytest.raises(Denied):
        second.claim_for_push(bob, APP, world.clock)
    assert [m.username for m in world.namespaces.members("team")] == ["alice"]


def test_a_member_with_push_claims_nothing_and_a_puller_cannot_push():
    world = World()
    pat, paula = world.user("pat"), world.user("paula")
    world.member("team", pat, Right.PUSH)
    world.member("team", paula, Right.PULL)
    world.access().claim_for_push(pat, APP, world.clock)
    assert world.namespaces.right_of("team", pat.id) is Right.PUSH  # type: ignore[arg-type]
    with pytest.raises(Denied):
        world.access().claim_for_push(paula, APP, world.clock)


def test_with_claiming_off_a_free_namespace_takes_no_push():
    world = World(claiming=False)
    alice = world.user("alice")
    assert not world.may(alice, PUSH, "team/app")
    with pytest.raises(Denied):
        world.access().claim_for_push(alice, APP, world.clock)
    assert world.may(alice, PUSH, "alice/app")  # its own namespace still


@pytest.mark.parametrize("model", [AccessModel.DEFAULT, AccessModel.PRIVATE])
def test_the_namespace_of_another_user_cannot_be_claimed(model):
    world = World(model)
    world.user("bob")
    alice = world.user("alice")
    assert not world.may(alice, PUSH, "bob/app")
    with pytest.raises(Denied):
        world.access().claim_for_push(alice, RepositoryName.parse("bob/app"), world.clock)


def test_a_namespace_holding_repositories_from_before_cannot_be_claimed():
    world = World()
    world.registry.ensure_repository(RepositoryName.parse("legacy/app"), NOW)
    world.registry.ensure_repository(RepositoryName.parse("solo"), NOW)
    alice = world.user("alice")
    assert not world.may(alice, PUSH, "legacy/new")
    assert not world.may(alice, PUSH, "solo/x")
    assert world.may(alice, PUSH, "legacy2/app")  # a different namespace


def test_the_open_model_and_administrators_push_without_claiming():
    world = World(AccessModel.OPEN)
    alice = world.user("alice")
    world.access().claim_for_push(alice, APP, world.clock)
    admin_world = World()
    admin_world.access().claim_for_push(admin_world.user("root", admin=True), APP, admin_world.clock)
    assert world.namespaces.all() == [] and admin_world.namespaces.all() == []


def test_no_claim_for_the_anonymous_or_a_disabled_account():
    world = World()
    for account in (None, world.user("dan", active=False)):
        with pytest.raises(Denied):
            world.access().claim_for_push(account, APP, world.clock)
    assert world.namespaces.all() == []


# --- grant: the token flow --------------------------------------------------------------------------------------------
def scope(text: str) -> Scope:
    return Scope.parse(text)


@pytest.fixture
def open_world() -> tuple[Access, Account]:
    world = World(AccessModel.OPEN)
    return world.access(), world.user("alice")


def test_grant_keeps_the_asked_actions(open_world):
    access, alice = open_world
    assert access.grant(alice, [scope("repository:team/app:pull")]) == [scope("repository:team/app:pull")]
    assert access.grant(alice, [scope("repository:team/app:push,pull")]) == [scope("repository:team/app:pull,push")]


def test_star_means_every_action(open_world):
    access, alice = open_world
    assert access.grant(alice, [scope("repository:team/app:*")]) == [scope("repository:team/app:delete,pull,push")]
    assert access.grant(alice, [scope("repository:team/app:pull,*")]) == [scope("repository:team/app:delete,pull,push")]


def test_unknown_actions_are_dropped_and_a_scope_left_empty_is_not_granted(open_world):
    access, alice = open_world
    assert access.grant(alice, [scope("repository:team/app:pull,admin")]) == [scope("repository:team/app:pull")]
    assert access.grant(alice, [scope("repository:team/app:admin")]) == []
    assert access.grant(alice, [Scope("repository", "team/app")]) == []


@pytest.mark.parametrize(
    "name", ["Team/App", "team//app", "/team", "team/", "localhost:5000/app", "a" * 256, "with space", "-x"]
)
def test_invalid_repository_names_are_skipped_without_error(open_world, name):
    access, alice = open_world
    asked = [Scope("repository", name, frozenset({"pull"})), scope("repository:team/app:pull")]
    assert access.grant(alice, asked) == [scope("repository:team/app:pull")]


def test_catalog_scope_is_granted_as_registry_catalog_star(open_world):
    access, alice = open_world
    assert access.grant(alice, [scope("registry:catalog:*")]) == [REGISTRY_CATALOG]
    assert scope("registry:catalog:*") == REGISTRY_CATALOG


def test_other_registry_scopes_and_unknown_types_are_not_granted(open_world):
    access, alice = open_world
    asked = [scope("registry:other:*"), scope("unknown:team/app:pull"), scope("repository(plugin):team/app:pull")]
    assert access.grant(alice, asked) == []


def test_inactive_account_is_granted_nothing():
    world = World(AccessModel.OPEN)
    asked = [scope("repository:team/app:*"), scope("registry:catalog:*")]
    assert world.access().grant(world.user("dan", active=False), asked) == []


def test_several_scopes_are_granted_in_the_order_asked(open_world):
    access, alice = open_world
    asked = [
        scope("repository:team/b:pull"),
        scope("registry:catalog:*"),
        scope("repository:Bad:pull"),
        scope("repository:team/a:push"),
    ]
    assert access.grant(alice, asked) == [
        scope("repository:team/b:pull"),
        REGISTRY_CATALOG,
        scope("repository:team/a:push"),
    ]


def test_grant_gives_only_what_the_rights_allow_in_the_default_model():
    world = World()
    pat, paula = world.user("pat"), world.user("paula")
    world.member("team", pat, Right.PUSH)
    world.member("team", paula, Right.PULL)
    asked = [scope("repository:team/app:pull,push,delete"), scope("repository:pat/x:*"), scope("repository:free/x:*")]
    assert world.access().grant(paula, asked) == [
        scope("repository:team/app:pull"),
        scope("repository:pat/x:pull"),
        scope("repository:free/x:pull,push"),  # a claim by first push, not yet a right to delete
    ]
    assert world.access().grant(pat, asked)[0] == scope("repository:team/app:delete,pull,push")


def test_grant_in_the_private_model_leaves_out_what_the_account_may_not_pull():
    world = World(AccessModel.PRIVATE, claiming=False)
    paula = world.user("paula")
    world.member("team", paula, Right.PULL)
    asked = [scope("repository:team/app:pull"), scope("repository:other/app:pull"), scope("registry:catalog:*")]
    assert world.access().grant(paula, asked) == [scope("repository:team/app:pull"), REGISTRY_CATALOG]


def test_grant_without_claims_gives_push_only_on_rights_held_now():
    """For a token another registry enforces: no push of ours will make the claim, so it cannot be what allows."""
    world = World()
    alice, pat = world.user("alice"), world.user("pat")
    world.member("team", pat, Right.PUSH)
    asked = [scope("repository:free/x:pull,push"), scope("repository:alice/x:push"), scope("repository:team/x:push")]
    assert world.access().grant(alice, asked, by_claim=False) == [
        scope("repository:free/x:pull"),
        scope("repository:alice/x:push"),
    ]
    assert world.access().grant(pat, asked, by_claim=False)[1:] == [scope("repository:team/x:push")]
    assert world.access().grant(alice, asked)[0] == scope("repository:free/x:pull,push")
    assert not world.access().may(alice, PUSH, RepositoryName.parse("free/x"), by_claim=False)
    root = world.user("root", admin=True)
    assert world.access().grant(root, asked, by_claim=False) == [
        scope("repository:free/x:pull,push"),
        scope("repository:alice/x:push"),
        scope("repository:team/x:push"),
    ]
    assert world.namespaces.get("free") is None


def test_only_active_administrators_may_administer():
    from stevedore.domain.access import may_administer

    assert may_administer(Account(1, "ada", None, "x", is_admin=True))
    assert not may_administer(Account(1, "ada", None, "x", is_admin=True, is_active=False))
    assert not may_administer(Account(2, "bob", None, "x"))
    assert not may_administer(None)


def test_a_claim_lost_to_the_same_accounts_parallel_push_is_no_refusal():
    world = World()
    sam = world.user("sam")
    first, second = world.access(), world.access()
    assert second.may(sam, PUSH, RepositoryName.parse("fresh/app"))  # both looked while it was free
    assert first.claim_for_push(sam, RepositoryName.parse("fresh/app"), world.clock) is True
    assert second.claim_for_push(sam, RepositoryName.parse("fresh/app"), world.clock) is False
    other = world.user("other")
    with pytest.raises(Denied, match="claimed by someone else"):
        third = world.access()
        third._claimable["fresh"] = True  # it looked before the claim, like a racing transaction
        third.claim_for_push(other, RepositoryName.parse("fresh/app"), world.clock)


def test_a_namespace_claimed_between_reading_the_right_and_the_claim_check_is_judged_on_the_right_read_again():
    """Two nodes: this request read sam's right (none) just before sam's parallel push on the other node committed
    its claim; the claim check then finds the namespace taken. sam may push; a stranger still may not."""
    world = World()
    sam, stranger = world.user("sam"), world.user("stranger")
    late = world.access()
    assert late.right_of(sam, "fresh") is None and late.right_of(stranger, "fresh") is None
    world.access().claim_for_push(sam, RepositoryName.parse("fresh/app"), world.clock)  # the other node's push
    assert late.may(sam, PUSH, RepositoryName.parse("fresh/app"))
    assert not late.may(stranger, PUSH, RepositoryName.parse("fresh/app"))


def test_a_claim_check_after_the_same_accounts_claim_committed_elsewhere_lets_the_push_through():
    world = World()
    sam, stranger = world.user("sam"), world.user("stranger")
    late = world.access()
    assert late.right_of(sam, "fresh") is None and late.right_of(stranger, "fresh") is None
    world.access().claim_for_push(sam, RepositoryName.parse("fresh/app"), world.clock)  # the other node's push
    assert late.claim_for_push(sam, RepositoryName.parse("fresh/app"), world.clock) is False
    with pytest.raises(Denied):
        late.claim_for_push(stranger, RepositoryName.parse("fresh/app"), world.clock)
