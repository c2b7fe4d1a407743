"""Pending attempts left by a process that died between the reservation and the outcome (domain/login_backoff.py):
they go `PENDING_FOR` after they were made, however many attempts of the same key come and go meanwhile. Otherwise
every later reservation of the key would carry them on, and a busy account (its CI logging in every minute from a
known address) would keep them for ever: once they outnumber the free failures, every login of the account from a
new address would wait for them (LoginBusy) and be refused, for good."""

from __future__ import annotations

import pytest

from stevedore.domain.login_backoff import PENDING_FOR, BackoffRule, LoginBackoff, LoginBusy
from tests.fakes import FixedClock
from tests.fakes_login_backoff import InMemoryLoginFailureStore

HOME = "198.51.100.4"  # the owner's CI, which has logged in before


@pytest.fixture
def clock():
    return FixedClock()


@pytest.fixture
def store():
    return InMemoryLoginFailureStore()


@pytest.fixture
def backoff(store, clock):
    return LoginBackoff(store, clock, account=BackoffRule(5, 60), address=BackoffRule(5, 900))


def leak(backoff, count):
    """`count` attempts reserved from as many addresses whose process died before they resolved."""
    for n in range(count):
        backoff.reserve("alice", f"192.0.2.{n + 1}")


def test_attempts_of_a_dead_process_go_in_time_while_the_owner_keeps_logging_in(backoff, clock, store):
    backoff.succeeded(backoff.reserve("alice", HOME))
    leak(backoff, 6)
    with pytest.raises(LoginBusy):  # while they could still be in flight, a new address waits for them
        backoff.reserve("alice", "203.0.113.9")
    for _ in range(10):  # the owner's CI logs in every minute from its known address (exempt: it never waits)
        clock.advance(seconds=60)
        backoff.succeeded(backoff.reserve("alice", HOME))
    backoff.succeeded(backoff.reserve("alice", "203.0.113.9"))  # the owner from a new address is not held up


def test_one_attempt_of_a_dead_process_does_not_lower_the_free_failures_for_ever(backoff, clock, store):
    leak(backoff, 1)
    for _ in range(10):
        clock.advance(seconds=60)
        backoff.succeeded(backoff.reserve("alice", HOME))
    let_through = [backoff.reserve("alice", f"203.0.113.{n}") for n in range(6)]  # the free five and one more
    assert len(let_through) == 6
    with pytest.raises(LoginBusy):
        backoff.reserve("alice", "203.0.113.99")


def test_attempts_in_flight_are_still_counted_until_their_time_is_up(backoff, clock):
    leak(backoff, 5)
    clock.advance(seconds=PENDING_FOR.total_seconds() - 30)
    backoff.reserve("alice", HOME)  # a sixth, still within the free failures and one more
    with pytest.raises(LoginBusy):
        backoff.reserve("alice", "203.0.113.9")
