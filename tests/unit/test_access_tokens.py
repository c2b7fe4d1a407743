"""Personal access tokens: scopes and namespaces, expiry, revocation, the hashed secret, the intersection."""

from __future__ import annotations

import hashlib

import pytest

from stevedore.domain.access_tokens import (
    TOKEN_PREFIX,
    AccessTokenService,
    AccessTokenUnknown,
    TokenScope,
    parse_namespaces,
)
from stevedore.domain.errors import InvalidInput
from stevedore.domain.model import Account, Scope
from tests.fakes import FixedClock
from tests.fakes_access_tokens import InMemoryAccessTokenStore

ADA = Account(id=1, username="ada", email=None, password_hash="x")
BOB = Account(id=2, username="bob", email=None, password_hash="x")


@pytest.fixture
def clock():
    return FixedClock()


@pytest.fixture
def store():
    return InMemoryAccessTokenStore()


@pytest.fixture
def service(store, clock):
    return AccessTokenService(store, clock)


def test_the_secret_is_shown_once_and_only_its_sha256_is_kept(service, store):
    issued = service.create(ADA, name="ci", scope="push")
    assert issued.secret.startswith(TOKEN_PREFIX) and len(issued.secret) > 40
    (stored,) = store.tokens.values()
    assert stored.secret_hash == hashlib.sha256(issued.secret.encode()).hexdigest()
    assert issued.secret not in repr(stored)
    assert service.authenticate(issued.secret).id == stored.id


def test_two_tokens_never_share_a_secret(service):
    assert service.create(ADA, name="a", scope="pull").secret != service.create(ADA, name="b", scope="pull").secret


def test_a_wrong_or_unprefixed_secret_is_no_token(service):
    issued = service.create(ADA, name="ci", scope="push")
    assert service.authenticate(issued.secret + "x") is None
    assert service.authenticate(issued.secret[len(TOKEN_PREFIX) :]) is None
    assert service.authenticate("") is None


@pytest.mark.parametrize(
    ("scope", "allowed"),
    [
        ("pull", {"pull"}),
        ("push", {"pull", "push"}),
        ("delete", {"pull", "push", "delete"}),
    ],
)
def test_each_scope_allows_its_actions_and_those_before_it(service, scope, allowed):
    token = service.create(ADA, name="t", scope=scope).token
    assert {a for a in ("pull", "push", "delete") if token.allows(a, "ada/app")} == allowed


def test_a_namespace_limit_allows_only_those_namespaces(service):
    token = service.create(ADA, name="t", scope="delete", namespaces=("team", "ada")).token
    assert token.allows("push", "ada/app") and token.allows("push", "team/x/y") and token.allows("pull", "team")
    assert not token.allows("pull", "other/app") and not token.allows("pull", "teams/app")
    assert not token.allows("pull", "not a name")


def test_the_token_limits_what_the_account_is_granted(service):
    token = service.create(ADA, name="t", scope="pull", namespaces=("ada",)).token
    granted = [
        Scope("repository", "ada/app", frozenset({"pull", "push"})),
        Scope("repository", "team/app", frozenset({"pull"})),
        Scope("registry", "catalog", frozenset({"*"})),
    ]
    assert token.limit(granted) == [
        Scope("repository", "ada/app", frozenset({"pull"})),
        Scope("registry", "catalog", frozenset({"*"})),
    ]


def test_a_token_expires(service, clock):
    issued = service.create(ADA, name="t", scope="pull", expires_in_days=1)
    clock.advance(hours=23)
    assert service.authenticate(issued.secret) is not None
    clock.advance(hours=1)
    assert service.authenticate(issued.secret) is None
    assert service.list_for(ADA)[0].state(clock.now()) == "expired"


def test_a_token_without_expiry_keeps_working(service, clock):
    issued = service.create(ADA, name="t", scope="pull")
    clock.advance(days=3000)
    assert service.authenticate(issued.secret) is not None


def test_a_revoked_token_stops(service, clock):
    issued = service.create(ADA, name="t", scope="pull")
    service.revoke(ADA, issued.token.id)
    assert service.authenticate(issued.secret) is None
    assert service.usable(issued.token.id, ADA) is None
    assert service.list_for(ADA)[0].state(clock.now()) == "revoked"
    service.revoke(ADA, issued.token.id)  # again: harmless


def test_nobody_revokes_or_uses_another_accounts_token(service):
    issued = service.create(ADA, name="t", scope="pull")
    with pytest.raises(AccessTokenUnknown):
        service.revoke(BOB, issued.token.id)
    with pytest.raises(AccessTokenUnknown):
        service.revoke(BOB, 999)
    assert service.usable(issued.token.id, BOB) is None
    assert service.authenticate(issued.secret) is not None


def test_the_last_use_is_written_at_most_once_a_minute(service, store, clock):
    issued = service.create(ADA, name="t", scope="pull")
    for _ in range(5):
        service.authenticate(issued.secret)
    assert store.touches == 1
    clock.advance(seconds=59)
    service.authenticate(issued.secret)
    assert store.touches == 1
    clock.advance(seconds=1)
    service.authenticate(issued.secret)
    assert store.touches == 2 and store.tokens[issued.token.id].last_used_at == clock.now()


def test_tokens_are_listed_per_account_newest_first(service):
    service.create(ADA, name="first", scope="pull")
    service.create(BOB, name="bobs", scope="pull")
    service.create(ADA, name="second", scope="pull")
    assert [t.name for t in service.list_for(ADA)] == ["second", "first"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "", "scope": "pull"},
        {"name": "   ", "scope": "pull"},
        {"name": "x" * 101, "scope": "pull"},
        {"name": "two\nlines", "scope": "pull"},
        {"name": "t", "scope": "admin"},
        {"name": "t", "scope": "pull", "expires_in_days": 0},
        {"name": "t", "scope": "pull", "expires_in_days": 100_000},
    ],
)
def test_bad_forms_are_refused(service, store, kwargs):
    with pytest.raises(InvalidInput):
        service.create(ADA, **kwargs)
    assert not store.tokens


def test_a_disabled_account_gets_no_new_token(service):
    with pytest.raises(InvalidInput):
        service.create(
            Account(id=3, username="gone", email=None, password_hash="x", is_active=False), name="t", scope="pull"
        )


def test_namespaces_are_parsed_from_spaces_and_commas():
    assert parse_namespaces(" team, ada  other,,") == ("ada", "other", "team")
    assert parse_namespaces("") == ()
    for bad in ("Team", "a/b", "-x", "x" * 256, " ".join(f"n{i}" for i in range(21))):
        with pytest.raises(InvalidInput):
            parse_namespaces(bad)


def test_scopes_say_what_they_hold():
    assert TokenScope("push").actions == {"pull", "push"}
    assert TokenScope.DELETE.label == "pull, push, delete"
