from datetime import timedelta

import pytest

from stevedore.domain.accounts import AccountService, check_password_strength, hash_invite_code
from stevedore.domain.errors import AccountExists, UsernameInvalid, WeakPassword
from stevedore.domain.model import Invite
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
