"""A sign-up and a first push that claims the same name, at the same moment on PostgreSQL: exactly one wins. Without
the account's own namespace row the push could claim `bob` while `bob` signs up, and its pusher would administer
bob's namespace."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from stevedore.adapters.sql.accounts import SqlAccountStore
from stevedore.adapters.sql.engine import make_session_factory
from stevedore.adapters.sql.namespaces import SqlNamespaceStore
from stevedore.domain.access import Access, AccessRules, Action
from stevedore.domain.accounts import AccountService
from stevedore.domain.errors import AccountExists, Denied
from stevedore.domain.model import RepositoryName
from tests.fakes import FixedClock, PlainPasswordHasher

PASSWORD = "a long enough password"
CLOCK = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))


def sign_up(session, name):
    return AccountService(
        SqlAccountStore(session), PlainPasswordHasher(), CLOCK, namespaces=SqlNamespaceStore(session)
    ).create_account(name, PASSWORD)


def race(components, first_step, second_step):
    """`first_step` runs and holds its transaction open; `second_step` must wait for it, then its outcome counts."""
    sessions = make_session_factory(components.engine)
    first = sessions()
    first_step(first)
    outcome: list[str] = []

    def second() -> None:
        with sessions() as session:
            try:
                second_step(session)
            except (Denied, AccountExists) as exc:
                outcome.append(type(exc).__name__)
                session.rollback()
            else:
                outcome.append("done")
                session.commit()

    racer = threading.Thread(target=second)
    racer.start()
    racer.join(timeout=1.0)
    assert racer.is_alive(), "the second transaction did not wait for the first"
    first.commit()
    first.close()
    racer.join(timeout=30)
    return outcome


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_sign_up_first_makes_the_racing_claim_denied(components, make_user):
    sam = make_user("sam", PASSWORD)
    name = RepositoryName.parse("bob/app")

    def claim(session):
        access = Access(SqlNamespaceStore(session), AccessRules())
        assert access.may(sam, Action.PUSH, name)  # free when it looked: bob's account is not committed yet
        access.claim_for_push(sam, name, CLOCK)

    assert race(components, lambda s: sign_up(s, "bob"), claim) == ["Denied"]
    with make_session_factory(components.engine)() as check:
        assert SqlNamespaceStore(check).right_of("bob", sam.id) is None


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_claim_first_makes_the_racing_sign_up_refused(components, make_user):
    sam = make_user("sam", PASSWORD)

    def claim(session):
        Access(SqlNamespaceStore(session), AccessRules()).claim_for_push(sam, RepositoryName.parse("bob/app"), CLOCK)

    assert race(components, claim, lambda s: sign_up(s, "bob")) == ["AccountExists"]
    with make_session_factory(components.engine)() as check:
        assert SqlAccountStore(check).by_username("bob") is None


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_one_accounts_parallel_first_pushes_into_a_free_namespace_all_go_through(components, make_user):
    """docker pushes layers at once: the second claim waits for the first, then finds the claimer is itself."""
    sam = make_user("sam", PASSWORD)

    def claim(session):
        Access(SqlNamespaceStore(session), AccessRules()).claim_for_push(sam, RepositoryName.parse("fresh/app"), CLOCK)

    assert race(components, claim, claim) == ["done"]
    with make_session_factory(components.engine)() as check:
        assert [m.username for m in SqlNamespaceStore(check).members("fresh")] == ["sam"]
