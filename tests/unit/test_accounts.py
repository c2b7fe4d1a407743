from datetime import timedelta

import pytest

from stevedore.domain.accounts import (
    AccountService,
    InviteService,
    LastAdministrator,
    check_password_strength,
    hash_invite_code,
    may_invite,
)
from stevedore.domain.errors import AccountExists, InvalidInput, InviteUnknown, UsernameInvalid, WeakPassword
from stevedore.domain.model import Account, Invite
from stevedore.domain.namespaces import Namespace
from tests.fakes import FixedClock, InMemoryAccountStore, InMemoryNamespaceStore, PlainPasswordHasher


@pytest.fixture
def service():
    return AccountService(InMemoryAccountStore(), PlainPasswordHasher(), FixedClock())


def test_created_account_can_log_in_and_wrong_password_cannot(service):
    service.create_account("alice", "correct horse", is_admin=True)
    account = service.authenticate("alice", "correct horse")
    assert account is not None and account.is_admin
    assert service.authenticate("alice", "wrong password") is None
    assert service.authenticate("nobody", "correct horse") is None


def test_password_is_stored_hashed(service):
    account = service.create_account("alice", "correct horse")
    assert "correct horse" not in account.password_hash


def test_duplicate_user_is_refused(service):
    service.create_account("alice", "correct horse")
    with pytest.raises(AccountExists):
        service.create_account("alice", "another one!")


@pytest.mark.parametrize("password", ["", "   ", "short", "aaaaaaaaaa", "alice", "x" * 73])
def test_weak_passwords_are_refused(password):
    with pytest.raises(WeakPassword):
        check_password_strength(password, "alice")


@pytest.mark.parametrize("name", ["", "Alice", "a b", "-x", "x" * 65])
def test_bad_user_names_are_refused(service, name):
    with pytest.raises(UsernameInvalid):
        service.create_account(name, "correct horse")


def test_inactive_account_cannot_log_in(service):
    account = service.create_account("bob", "correct horse")
    service.accounts.accounts[account.id].is_active = False
    assert service.authenticate("bob", "correct horse") is None


def test_a_new_password_or_a_disable_raises_the_token_generation_and_an_enable_does_not():
    store = InMemoryAccountStore()
    service = AccountService(store, PlainPasswordHasher(), FixedClock())
    account = service.create_account("dora", "a fine password")
    assert account.token_generation == 0
    service.change_password("dora", "another password")
    assert store.get(account.id).token_generation == 1
    service.set_active("dora", False)
    service.set_active("dora", False)  # already disabled: nothing more ends
    assert store.get(account.id).token_generation == 2
    service.set_active("dora", True)
    assert store.get(account.id).token_generation == 2 and store.get(account.id).is_active


def _with_namespaces():
    store = InMemoryAccountStore()
    namespaces = InMemoryNamespaceStore(store)
    clock = FixedClock()
    return AccountService(store, PlainPasswordHasher(), clock, namespaces=namespaces), namespaces, clock


def test_a_new_user_name_that_names_an_existing_namespace_is_refused():
    """Else the new account would own, by its name, a namespace someone claimed or an administrator made."""
    service, namespaces, clock = _with_namespaces()
    owner = service.create_account("alice", "correct horse")
    namespaces.add(Namespace("team", clock.now(), owner.id))
    with pytest.raises(AccountExists, match="namespace"):
        service.create_account("team", "correct horse")
    assert service.accounts.by_username("team") is None
    assert service.create_account("team2", "correct horse").username == "team2"


def test_a_new_account_writes_its_own_namespace_row_so_a_racing_claim_finds_it_taken():
    service, namespaces, clock = _with_namespaces()
    ada = service.create_account("ada", "correct horse")
    row = namespaces.get("ada")
    assert row is not None and row.created_by == ada.id
    assert not namespaces.add(Namespace("ada", clock.now()))  # what a first push's claim would try


def test_an_invite_cannot_make_an_account_named_like_an_existing_namespace():
    service, namespaces, clock = _with_namespaces()
    namespaces.add(Namespace("team", clock.now()))
    code = "an invite code"
    invite = service.accounts.add_invite(
        Invite(None, hash_invite_code(code), None, None, clock.now(), clock.now() + timedelta(days=1))
    )
    with pytest.raises(AccountExists):
        service.redeem_invite(code, "team", "correct horse")
    assert service.accounts.invite(invite.id).used_at is None  # still usable, with another name
    assert service.redeem_invite(code, "teammate", "correct horse").username == "teammate"


# --- the last active administrator ----------------------------------------------------------------------------------
def _admins(*names):
    store = InMemoryAccountStore()
    service = AccountService(store, PlainPasswordHasher(), FixedClock())
    for name in names:
        service.create_account(name, "a fine password", is_admin=True)
    service.create_account("member", "a fine password")
    return store, service


def test_the_last_active_administrator_cannot_be_disabled_unmade_or_deleted():
    store, service = _admins("ada")
    for change in (
        lambda: service.set_active("ada", False),
        lambda: service.set_admin("ada", False),
        lambda: service.delete_account("ada"),
    ):
        with pytest.raises(LastAdministrator) as raised:
            change()
        assert "last active administrator" in raised.value.message
    ada = store.by_username("ada")
    assert ada.is_admin and ada.is_active and ada.token_generation == 0


def test_with_two_administrators_one_may_go_but_not_the_second():
    store, service = _admins("ada", "bea")
    service.set_active("ada", False)  # an admin may disable themselves while another remains
    with pytest.raises(LastAdministrator):
        service.set_active("bea", False)
    with pytest.raises(LastAdministrator):
        service.set_admin("bea", False)
    service.set_active("ada", True)
    service.set_admin("bea", False)
    assert not store.by_username("bea").is_admin
    with pytest.raises(LastAdministrator):
        service.delete_account("ada")


def test_a_disabled_administrator_does_not_count_and_may_be_deleted_or_unmade():
    store, service = _admins("ada", "bea")
    service.set_active("bea", False)
    with pytest.raises(LastAdministrator):
        service.set_active("ada", False)
    service.set_admin("bea", False)
    service.set_admin("bea", True)
    service.delete_account("bea")
    assert store.by_username("bea") is None


def test_members_are_made_and_unmade_administrators_and_robots_never_are():
    store, service = _admins("ada")
    service.set_admin("member", True)
    assert store.by_username("member").is_admin
    service.set_admin("ada", False)  # member is an active administrator now
    assert not store.by_username("ada").is_admin
    store.add(Account(None, "team+ci", None, "x"))
    with pytest.raises(InvalidInput):
        service.set_admin("team+ci", True)
    assert not store.by_username("team+ci").is_admin


def test_disabling_and_deleting_members_needs_no_administrator_check():
    store, service = _admins("ada")
    service.set_active("member", False)
    service.delete_account("member")
    assert store.by_username("member") is None


# --- who may invite ------------------------------------------------------------------------------------------------
def test_administrators_may_invite_and_members_only_when_the_settings_let_them():
    admin = Account(1, "ada", None, "x", is_admin=True)
    member = Account(2, "bob", None, "x")
    disabled = Account(3, "carl", None, "x", is_active=False, is_admin=True)
    robot = Account(4, "team+ci", None, "x")
    assert may_invite(admin, False) and may_invite(admin, True)
    assert not may_invite(member, False) and may_invite(member, True)
    for nobody in (None, disabled, robot):
        assert not may_invite(nobody, True)


def test_members_see_and_revoke_only_their_own_invites_and_administrators_all():
    store = InMemoryAccountStore()
    clock = FixedClock()
    accounts = AccountService(store, PlainPasswordHasher(), clock)
    ada = accounts.create_account("ada", "a fine password", is_admin=True)
    bob = accounts.create_account("bob", "a fine password")
    cid = accounts.create_account("cid", "a fine password")
    invites = InviteService(store, clock, None, public_url=None)
    by_ada = invites.send_invite(invited_by=ada).invite
    by_bob = invites.send_invite(invited_by=bob).invite
    assert [r.invite.id for r in invites.list_invites(viewer=bob).records] == [by_bob.id]
    assert invites.list_invites(viewer=cid).records == []
    assert len(invites.list_invites(viewer=ada).records) == 2 and len(invites.list_invites().records) == 2
    with pytest.raises(InviteUnknown):
        invites.revoke_invite(by_ada.id, revoked_by=bob)
    with pytest.raises(InviteUnknown):
        invites.revoke_invite(by_bob.id, revoked_by=cid)
    assert store.invite(by_ada.id).revoked_at is None and store.invite(by_bob.id).revoked_at is None
    invites.revoke_invite(by_bob.id, revoked_by=bob)
    invites.revoke_invite(by_ada.id, revoked_by=ada)
    assert store.invite(by_ada.id).revoked_at is not None and store.invite(by_bob.id).revoked_at is not None
