"""The backoff of failed password logins (domain/login_backoff.py), with an in-memory store and a fixed clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from stevedore.domain.login_backoff import (
    HASHED_PREFIX,
    KEY_COLUMN_LENGTH,
    BackoffKey,
    BackoffRule,
    KeyKind,
    LoginBackoff,
    LoginThrottled,
)
from tests.fakes import FixedClock
from tests.fakes_login_backoff import InMemoryLoginFailureStore

HERE = "198.51.100.4"
THERE = "203.0.113.9"


@pytest.fixture
def clock():
    return FixedClock()


@pytest.fixture
def store():
    return InMemoryLoginFailureStore()


@pytest.fixture
def backoff(store, clock):
    return LoginBackoff(
        store, clock, account=BackoffRule(free_failures=5, max_seconds=60), address=BackoffRule(5, max_seconds=900)
    )


def fail(backoff, clock, times, username="alice", address=HERE):
    """`times` refused passwords, each checked first and made once the key is free again (as a patient guesser)."""
    for _ in range(times):
        while True:
            try:
                backoff.check(username, address)
                break
            except LoginThrottled as exc:
                clock.advance(seconds=exc.retry_after_seconds)
        backoff.failed(username, address)


def wait_of(backoff, username="alice", address=HERE) -> int:
    try:
        backoff.check(username, address)
    except LoginThrottled as exc:
        return exc.retry_after_seconds
    return 0


def test_the_free_failures_cost_nothing(backoff, clock):
    fail(backoff, clock, 5)
    assert wait_of(backoff) == 0


def test_each_failure_after_the_free_ones_doubles_the_wait(backoff, clock):
    fail(backoff, clock, 5)
    waits = []
    for _ in range(5):
        backoff.failed("alice", HERE)
        waits.append(wait_of(backoff))
        clock.advance(seconds=waits[-1])
        assert wait_of(backoff) == 0  # the wait is over exactly when it said
    assert waits == [2, 4, 8, 16, 32]


def test_the_throttled_error_is_a_429_with_the_seconds_left(backoff, clock):
    fail(backoff, clock, 6)
    clock.advance(seconds=0.5)
    with pytest.raises(LoginThrottled) as raised:
        backoff.check("alice", HERE)
    assert raised.value.retry_after_seconds == 2  # 1.5 s left, rounded up: never "retry in 0 seconds"
    assert "try again in 2 seconds" in raised.value.message


def test_the_account_wait_is_capped_at_a_minute_so_the_owner_is_only_delayed(backoff, clock):
    fail(backoff, clock, 30, address=None)
    backoff.failed("alice", None)
    assert wait_of(backoff, address=None) == 60


def test_the_address_wait_has_its_own_larger_cap(backoff, clock):
    names = iter(f"user{n}" for n in range(100))
    for _ in range(30):  # a different name each time: only the address key grows
        fail(backoff, clock, 1, username=next(names))
    assert wait_of(backoff, username="someone-else") == 900
    assert wait_of(backoff, username="someone-else", address=THERE) == 0


def test_a_blocked_address_blocks_every_name_and_a_blocked_name_every_address(backoff, clock):
    for n in range(6):
        backoff.failed(f"user{n}", HERE)
    assert wait_of(backoff, username="bob", address=HERE) == 2
    assert wait_of(backoff, username="bob", address=THERE) == 0
    for n in range(6):
        backoff.failed("carol", f"192.0.2.{n}")
    assert wait_of(backoff, username="carol", address=THERE) == 2


def test_failures_older_than_the_window_are_forgotten(backoff, clock, store):
    fail(backoff, clock, 9)
    assert wait_of(backoff) > 0
    clock.advance(hours=1, seconds=1)
    assert wait_of(backoff) == 0
    fail(backoff, clock, 5)
    assert wait_of(backoff) == 0  # the count started over: five are free again


def test_forgotten_keys_are_dropped_from_the_store(backoff, clock, store):
    backoff.failed("alice", HERE)
    clock.advance(hours=2)
    backoff.failed("bob", THERE)
    assert {key.value for key in store.failures} == {"bob", THERE}


def test_the_window_outlasts_the_longest_block():
    rule = BackoffRule(free_failures=5, max_seconds=7200)
    assert rule.window == timedelta(seconds=14400)
    assert BackoffRule(5, 60).window == timedelta(hours=1)


def test_a_success_clears_the_account_but_never_the_address(backoff, clock):
    for n in range(9):  # the attacker guesses other names from here, and...
        backoff.failed(f"victim{n}", HERE)
    backoff.failed("mallory", HERE)
    backoff.succeeded("mallory")  # ...logs in to their own account between guesses
    assert wait_of(backoff, username="victim9", address=HERE) > 0
    fail(backoff, clock, 8, username="alice", address=THERE)
    backoff.succeeded("alice")
    assert wait_of(backoff, username="alice", address="192.0.2.1") == 0


def test_a_failure_reports_a_key_as_blocked_only_when_it_becomes_blocked(backoff, clock):
    reported = []
    for _ in range(9):
        reported += backoff.failed("alice", HERE)
        clock.advance(seconds=1)
    assert [(b.key.kind, b.key.value, b.failures) for b in reported] == [
        (KeyKind.ACCOUNT, "alice", 6),
        (KeyKind.ADDRESS, HERE, 6),
    ]
    assert {b.max_seconds for b in reported} == {60, 900}


def test_names_count_without_case_and_hostile_names_are_stored_bounded(backoff, clock, store):
    fail(backoff, clock, 6, username="Alice")
    assert wait_of(backoff, username="alice", address=THERE) == 2
    huge = "x" * 5_000_000
    backoff.failed(huge, None)
    backoff.failed("nul\x00name", None)
    stored = {key.value for key in store.failures if key.kind == KeyKind.ACCOUNT}
    assert all(len(value) <= KEY_COLUMN_LENGTH for value in stored)
    assert BackoffKey.account(huge).value.startswith(HASHED_PREFIX)
    assert BackoffKey.account(huge) == BackoffKey.account("X" * 5_000_000)
    assert BackoffKey.account("nul\x00name").value.startswith(HASHED_PREFIX)
    assert BackoffKey.address("2001:db8::1%eth0").value == "2001:db8::1%eth0"


def test_without_an_address_only_the_account_counts(backoff, clock, store):
    fail(backoff, clock, 3, address=None)
    assert {key.kind for key in store.failures} == {KeyKind.ACCOUNT}


def test_the_message_says_one_second_in_the_singular(backoff, clock):
    fail(backoff, clock, 6)
    clock.advance(seconds=1.5)
    with pytest.raises(LoginThrottled) as raised:
        backoff.check("alice", HERE)
    assert raised.value.message.endswith("try again in 1 second")
