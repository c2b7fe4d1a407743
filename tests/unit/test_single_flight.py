"""Identical credentials checked at once share one check; followers are bounded and never let in on a failure."""

from __future__ import annotations

import threading
import time

import pytest

from stevedore.domain.errors import TooManyRequests
from stevedore.domain.login_backoff import LoginBusy, LoginThrottled
from stevedore.web.security import SingleFlight

KEY = b"k" * 32


def run_parallel(flights, count, check, username="alice", password="pw"):
    results, errors = [], []
    start = threading.Barrier(count)

    def call():
        start.wait()
        try:
            results.append(flights.run(username, password, check))
        except Exception as exc:  # collected, asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return results, errors


def slow_check(calls, result=(1, "hash"), seconds=0.3):
    def check():
        calls.append(1)
        time.sleep(seconds)
        return result

    return check


def test_parallel_identical_checks_run_once_and_share_the_answer():
    calls = []
    results, errors = run_parallel(SingleFlight(KEY), 6, slow_check(calls))
    assert errors == [] and results == [(1, "hash")] * 6
    assert len(calls) == 1


def test_a_wrong_password_is_shared_too_and_different_credentials_do_not_wait():
    calls = []
    results, _ = run_parallel(SingleFlight(KEY), 4, slow_check(calls, result=None))
    assert results == [None] * 4 and len(calls) == 1
    flights, other_calls = SingleFlight(KEY), []
    threading.Thread(target=flights.run, args=("alice", "pw", slow_check([], seconds=1.0))).start()
    time.sleep(0.1)
    began = time.monotonic()
    assert flights.run("alice", "other", slow_check(other_calls, seconds=0)) == (1, "hash")
    assert time.monotonic() - began < 0.5 and len(other_calls) == 1


def test_followers_past_the_cap_check_on_their_own():
    calls = []
    results, errors = run_parallel(SingleFlight(KEY, max_followers=2), 6, slow_check(calls))
    assert errors == [] and results == [(1, "hash")] * 6
    assert 2 <= len(calls) <= 4  # one leader and two followers share; the others checked alone


def test_followers_are_refused_when_the_check_fails():
    def failing():
        time.sleep(0.3)
        raise TooManyRequests()

    results, errors = run_parallel(SingleFlight(KEY), 3, failing)
    assert results == [] and len(errors) == 3
    assert all(isinstance(error, TooManyRequests) for error in errors)


def test_a_follower_gives_up_after_its_wait():
    flights = SingleFlight(KEY, wait_seconds=0.2)
    threading.Thread(target=flights.run, args=("alice", "pw", slow_check([], seconds=1.0))).start()
    time.sleep(0.05)
    with pytest.raises(TooManyRequests):
        flights.run("alice", "pw", slow_check([]))


def test_followers_share_the_leaders_throttling_with_its_retry_after_each_a_fresh_error():
    calls = []

    def throttled():
        calls.append(1)
        time.sleep(0.3)
        raise LoginThrottled(37)

    results, errors = run_parallel(SingleFlight(KEY), 5, throttled)
    assert results == [] and len(calls) == 1
    assert [type(error) for error in errors] == [LoginThrottled] * 5
    assert {error.retry_after_seconds for error in errors} == {37}
    assert len({id(error) for error in errors}) == 5  # never one object raised in several threads


def test_followers_share_a_busy_refusal_and_a_database_failure_becomes_a_retry():
    def busy():
        time.sleep(0.3)
        raise LoginBusy()

    _, errors = run_parallel(SingleFlight(KEY), 3, busy)
    assert sorted(error.retry_after_seconds for error in errors) == [1, 1, 1]
    assert all("being checked" in str(error) for error in errors)

    def broken():
        time.sleep(0.3)
        raise RuntimeError("the database went away")

    _, errors = run_parallel(SingleFlight(KEY), 3, broken)
    assert sorted(type(error).__name__ for error in errors) == ["RuntimeError", "TooManyRequests", "TooManyRequests"]


def test_the_same_credentials_from_another_address_are_a_flight_of_their_own():
    """The leader's reservation is judged by its own address (blocked or not): a follower from another address must
    not inherit its 429, so it leads its own check."""
    flights = SingleFlight(KEY)
    calls: list[int] = []
    start = threading.Barrier(2)
    results: list[object] = []

    def call(client):
        start.wait()
        results.append(flights.run("alice", "pw", slow_check(calls), client=client))

    threads = [threading.Thread(target=call, args=(client,)) for client in ("192.0.2.1", "198.51.100.7")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(calls) == 2 and results == [(1, "hash"), (1, "hash")]
