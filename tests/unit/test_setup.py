"""The first administrator: only the holder of the one-time setup code, only on an empty installation."""

import pytest

from stevedore.domain.accounts import AccountService
from stevedore.domain.errors import UsernameInvalid, WeakPassword
from stevedore.domain.setup import EmailRequired, SetupCodeInvalid, SetupDone, SetupService
from tests.fakes import FixedClock, InMemoryAccountStore, InMemorySetupCodeStore, PlainPasswordHasher

KEY = b"k" * 32


def make_service(codes=None, accounts=None, key=KEY):
    accounts = accounts or InMemoryAccountStore()
    clock = FixedClock()
    return SetupService(
        codes or InMemorySetupCodeStore(), AccountService(accounts, PlainPasswordHasher(), clock), clock, secret_key=key
    )


def test_the_code_holder_creates_an_administrator_and_uses_the_code_up():
    service = make_service()
    code = service.setup_code()
    account = service.create_first_administrator(code, "ada", "a long password", "ada@example.com")
    assert account.is_admin and account.is_active and account.email == "ada@example.com"
    assert service.codes.current() is None
    assert service.setup_code() is None
    with pytest.raises(SetupDone):
        service.create_first_administrator(code, "eve", "a long password", "eve@example.com")


def test_every_process_sharing_store_and_key_prints_the_same_code_and_only_a_hash_is_stored():
    codes = InMemorySetupCodeStore()
    first, second = make_service(codes).setup_code(), make_service(codes).setup_code()
    assert first == second and first
    assert first not in codes.stored
    assert make_service(codes, key=b"x" * 32).setup_code() is None  # another key cannot know it


@pytest.mark.parametrize("code", ["", "wrong", "0" * 32])
def test_a_wrong_or_missing_code_claims_nothing(code):
    service = make_service()
    service.setup_code()
    with pytest.raises(SetupCodeInvalid):
        service.create_first_administrator(code, "ada", "a long password", "ada@example.com")
    assert service.accounts.accounts.count() == 0 and service.codes.current() is not None


def test_without_a_stored_code_nothing_is_accepted():
    with pytest.raises(SetupCodeInvalid):
        make_service().check_code("anything")


def test_once_an_account_exists_there_is_nothing_to_set_up():
    accounts = InMemoryAccountStore()
    service = make_service(accounts=accounts)
    code = service.setup_code()
    AccountService(accounts, PlainPasswordHasher(), FixedClock()).create_account("cli-admin", "a long password")
    with pytest.raises(SetupDone):
        service.check_code(code)
    assert service.setup_code() is None


@pytest.mark.parametrize(
    ("username", "password", "email", "error"),
    [
        ("ada", "short", "ada@example.com", WeakPassword),
        ("Not Valid", "a long password", "ada@example.com", UsernameInvalid),
        ("ada", "a long password", "", EmailRequired),
    ],
)
def test_bad_input_is_refused_and_keeps_the_code(username, password, email, error):
    service = make_service()
    code = service.setup_code()
    with pytest.raises(error):
        service.create_first_administrator(code, username, password, email)
    assert service.codes.current() is not None and service.accounts.accounts.count() == 0
