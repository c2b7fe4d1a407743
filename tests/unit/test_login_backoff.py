"""The backoff of failed password logins (domain/login_backoff.py), with an in-memory store and a fixed clock."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest

from stevedore.domain.login_backoff import (
    HASHED_PREFIX,
    KEY_COLUMN_LENGTH,
    PENDING_FOR,
    BackoffKey,
    BackoffRule,
    Failures,
    KeyKind,
    LoginBackoff,
    LoginBusy,
    LoginThrottled,
    address_group,
)
from tests.fakes import FixedClock
from tests.fakes_login_backoff import InMemoryLoginFailureStore

HERE = "198.51.100.4"
THERE = "203.0.113.9"
HOME = "2001:db8:1:2::10"


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


def attempt(backoff, username="alice", address=HERE, *, right=False):
    """One password check as the web layer makes it: reserved first (raises LoginThrottled when blocked), then
    reported. Returns the keys a failure made blocked."""
    reservation = backoff.reserve(username, address)
    if right:
        backoff.succeeded(reservation)
        return []
    return backoff.failed(reservation)


def fail(backoff, clock, times, username="alice", address=HERE):
    """`times` refused passwords, each made once the keys are free again (as a patient guesser)."""
    for _ in range(times):
        while True:
            try:
                attempt(backoff, username, address)
                break
            except LoginThrottled as exc:
                clock.advance(seconds=exc.retry_after_seconds)


def wait_of(backoff, username="alice", address=HERE) -> int:
    """The seconds a password check would wait now (0: it would go ahead), changing nothing."""
    saved = dict(backoff.store.failures)
    try:
        backoff.reserve(username, address)
    except LoginThrottled as exc:
        return exc.retry_after_seconds
    finally:
        backoff.store.failures = saved
    return 0


def test_the_free_failures_cost_nothing(backoff, clock):
    fail(backoff, clock, 5)
    assert wait_of(backoff) == 0


def test_each_failure_after_the_free_ones_doubles_the_wait(backoff, clock):
    fail(backoff, clock, 5)
    waits = []
    for _ in range(5):
        attempt(backoff)
        waits.append(wait_of(backoff))
        clock.advance(seconds=waits[-1])
        assert wait_of(backoff) == 0  # the wait is over exactly when it said
    assert waits == [2, 4, 8, 16, 32]


def test_the_throttled_error_is_a_429_with_the_seconds_left(backoff, clock):
    fail(backoff, clock, 6)
    clock.advance(seconds=0.5)
    with pytest.raises(LoginThrottled) as raised:
        backoff.reserve("alice", HERE)
    assert raised.value.retry_after_seconds == 2  # 1.5 s left, rounded up: never "retry in 0 seconds"
    assert "try again in 2 seconds" in raised.value.message


def test_the_account_wait_is_capped_at_a_minute_so_the_owner_is_only_delayed(backoff, clock):
    fail(backoff, clock, 31, address=None)
    assert wait_of(backoff, address=None) == 60


def test_the_address_wait_has_its_own_larger_cap(backoff, clock):
    names = iter(f"user{n}" for n in range(100))
    for _ in range(30):  # a different name each time: only the address key grows
        fail(backoff, clock, 1, username=next(names))
    assert wait_of(backoff, username="someone-else") == 900
    assert wait_of(backoff, username="someone-else", address=THERE) == 0


def test_a_blocked_address_blocks_every_name_and_a_blocked_name_every_address(backoff, clock):
    for n in range(6):
        attempt(backoff, f"user{n}", HERE)
    assert wait_of(backoff, username="bob", address=HERE) == 2
    assert wait_of(backoff, username="bob", address=THERE) == 0
    for n in range(6):
        attempt(backoff, "carol", f"192.0.2.{n}")
    assert wait_of(backoff, username="carol", address=THERE) == 2


def test_the_attempt_is_pending_before_its_check_so_attempts_at_once_see_each_other(backoff, clock, store):
    fail(backoff, clock, 11, address=None)  # at the cap: the next failure blocks for a minute
    clock.advance(seconds=60)
    first = backoff.reserve("alice", "192.0.2.1")  # its password is being checked...
    with pytest.raises(LoginBusy):  # ...when the next one arrives, from elsewhere: it must wait for that one
        backoff.reserve("alice", "192.0.2.2")
    assert store.failures[BackoffKey.account("alice")].count == 11  # pending, not yet a failure
    assert store.failures[BackoffKey.account("alice").pending].count == 1
    assert backoff.failed(first) == []  # wrong: now it is one (not the onset of a block: audited before)
    assert store.failures[BackoffKey.account("alice")].count == 12
    assert BackoffKey.account("alice").pending not in store.failures
    with pytest.raises(LoginThrottled) as raised:  # the one that waited is refused as a failure refuses
        backoff.reserve("alice", "192.0.2.2")
    assert raised.value.retry_after_seconds == 60


def test_a_refused_attempt_counts_nothing_and_each_reservation_holds_its_keys(backoff, clock, store):
    fail(backoff, clock, 6)
    before = dict(store.failures)
    store.held.clear()
    with pytest.raises(LoginThrottled):
        backoff.reserve("alice", HERE)
    assert store.failures == before
    assert store.held == [[BackoffKey.account("alice"), BackoffKey.address(HERE)]]


def test_a_success_clears_the_account_but_never_the_address(backoff, clock, store):
    fail(backoff, clock, 9, username="victim")  # the attacker guesses from here, and...
    clock.advance(seconds=16)
    attempt(backoff, "mallory", HERE, right=True)  # ...logs in to their own account between guesses
    assert store.failures[BackoffKey.address(HERE)].count == 9
    attempt(backoff, "victim2", HERE)
    assert wait_of(backoff, username="victim3", address=HERE) == 32  # the tenth failure: the count went on
    fail(backoff, clock, 8, username="alice", address=THERE)
    clock.advance(seconds=8)
    attempt(backoff, "alice", THERE, right=True)
    assert BackoffKey.account("alice") not in store.failures
    assert wait_of(backoff, username="alice", address="192.0.2.1") == 0


def test_a_success_gives_the_address_its_attempt_back_without_starting_a_new_block(backoff, clock, store):
    fail(backoff, clock, 6, username="bob")  # the address is blocked for 2 s
    clock.advance(seconds=2)
    before = store.failures[BackoffKey.address(HERE)]
    attempt(backoff, "alice", HERE, right=True)
    assert store.failures[BackoffKey.address(HERE)] == before  # as it was: its last failure is not moved on
    assert wait_of(backoff, username="carol") == 0
    attempt(backoff, "alice", THERE, right=True)
    assert BackoffKey.address(THERE) not in store.failures  # it had none: none left


def test_a_success_takes_back_only_its_own_attempt_when_others_were_counted_meanwhile(backoff, clock, store):
    right = backoff.reserve("alice", HERE)
    clock.advance(seconds=1)
    attempt(backoff, "bob", HERE)  # a failure from the same address while alice's password was being checked
    backoff.succeeded(right)
    assert store.failures[BackoffKey.address(HERE)] == Failures(1, clock.now())


def test_failures_older_than_the_window_are_forgotten(backoff, clock, store):
    fail(backoff, clock, 9)
    assert wait_of(backoff) > 0
    clock.advance(hours=1, seconds=1)
    assert wait_of(backoff) == 0
    fail(backoff, clock, 5)
    assert wait_of(backoff) == 0  # the count started over: five are free again


def test_forgotten_keys_are_dropped_from_the_store(backoff, clock, store):
    attempt(backoff, "alice", HERE)
    clock.advance(hours=2)
    attempt(backoff, "bob", THERE)
    assert {key.value for key in store.failures} == {"bob", THERE}


def test_the_window_outlasts_the_longest_block():
    rule = BackoffRule(free_failures=5, max_seconds=7200)
    assert rule.window == timedelta(seconds=14400)
    assert BackoffRule(5, 60).window == timedelta(hours=1)


def test_a_failure_reports_a_key_as_blocked_only_when_it_becomes_blocked(backoff, clock):
    reported = []
    for _ in range(9):
        try:
            reported += attempt(backoff)
        except LoginThrottled as exc:
            clock.advance(seconds=exc.retry_after_seconds)
            reported += attempt(backoff)
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
    attempt(backoff, huge, None)
    attempt(backoff, "nul\x00name", None)
    stored = {key.value for key in store.failures if key.kind == KeyKind.ACCOUNT}
    assert all(len(value) <= KEY_COLUMN_LENGTH for value in stored)
    assert BackoffKey.account(huge).value.startswith(HASHED_PREFIX)
    assert BackoffKey.account(huge) == BackoffKey.account("X" * 5_000_000)
    assert BackoffKey.account("nul\x00name").value.startswith(HASHED_PREFIX)
    assert len(BackoffKey.known(huge, "x" * 100_000).value) == KEY_COLUMN_LENGTH


def test_without_an_address_only_the_account_counts(backoff, clock, store):
    fail(backoff, clock, 3, address=None)
    assert {key.kind for key in store.failures} == {KeyKind.ACCOUNT}
    attempt(backoff, "alice", None, right=True)
    assert store.failures == {}  # and no known address


def test_the_message_says_one_second_in_the_singular(backoff, clock):
    fail(backoff, clock, 6)
    clock.advance(seconds=1.5)
    with pytest.raises(LoginThrottled) as raised:
        backoff.reserve("alice", HERE)
    assert raised.value.message.endswith("try again in 1 second")


# --- addresses: IPv6 by its /64 ---------------------------------------------------------------------------------------
def test_ipv6_addresses_count_by_their_64_prefix_and_ipv4_by_the_whole_address():
    assert address_group("2001:db8:1:2::10") == "2001:db8:1:2::/64"
    assert address_group("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert address_group("2001:db8:1:3::10") == "2001:db8:1:3::/64"
    assert address_group("2001:db8::1%eth0") == "2001:db8::/64"
    assert address_group("::ffff:198.51.100.4") == HERE
    assert address_group(HERE) == HERE
    assert address_group("198.51.100.5") == "198.51.100.5"
    assert address_group("not an address") == "not an address"
    assert BackoffKey.address("2001:db8:1:2::10") == BackoffKey.address("2001:db8:1:2:abcd::1")
    assert BackoffKey.known("Alice", "2001:db8:1:2::10") == BackoffKey.known("alice", "2001:db8:1:2::99")
    assert BackoffKey.known("alice", "2001:db8:1:2::10") != BackoffKey.known("alice", "2001:db8:1:3::10")
    assert BackoffKey.known("alice", HERE) != BackoffKey.known("bob", HERE)


def test_guesses_from_every_address_of_one_64_count_as_one_address(backoff, clock):
    for n in range(6):
        attempt(backoff, f"user{n}", f"2001:db8:1:2::{n + 1:x}")
    assert wait_of(backoff, username="someone", address="2001:db8:1:2:dead:beef::1") == 2
    assert wait_of(backoff, username="someone", address="2001:db8:1:3::1") == 0


# --- known addresses: exempt from the account's block -----------------------------------------------------------------
def renew_the_block(backoff, clock, times, address_of=lambda n: f"2001:db8:bad:{n:x}::1"):
    """An attacker keeps the account blocked: one guess each time its block ends, each from a fresh /64."""
    for n in range(times):
        while True:
            try:
                attempt(backoff, "alice", address_of(n))
                break
            except LoginThrottled as exc:
                clock.advance(seconds=exc.retry_after_seconds)


def test_an_address_that_logged_in_is_exempt_from_the_account_block(backoff, clock):
    attempt(backoff, "alice", HOME, right=True)
    clock.advance(days=3)
    renew_the_block(backoff, clock, 12)
    assert wait_of(backoff, address="192.0.2.77") == 60  # the account is at its cap...
    assert wait_of(backoff, address="2001:db8:1:2::abc") == 0  # ...but not for the owner's known /64
    attempt(backoff, "alice", HOME, right=True)
    assert wait_of(backoff, address="192.0.2.77") == 0  # the owner's login cleared the account


def test_a_known_address_is_still_subject_to_its_own_address_block(backoff, clock):
    attempt(backoff, "alice", HOME, right=True)
    for n in range(6):
        attempt(backoff, f"user{n}", HOME)  # the owner's network guesses other accounts
    assert wait_of(backoff, address=HOME) == 2


def test_failures_from_a_known_address_still_count_against_the_account(backoff, clock, store):
    attempt(backoff, "alice", HOME, right=True)
    fail(backoff, clock, 6, address=HOME)
    assert store.failures[BackoffKey.account("alice")].count == 6
    assert wait_of(backoff, address=THERE) > 0


def test_an_address_is_known_to_that_account_only(backoff, clock):
    attempt(backoff, "mallory", HERE, right=True)  # the attacker's own account, from the attacker's address
    renew_the_block(backoff, clock, 6, address_of=lambda n: HERE if n == 5 else f"192.0.2.{n}")
    assert wait_of(backoff, username="alice", address=HERE) == 2


def test_a_known_address_is_forgotten_30_days_after_its_last_login(backoff, clock, store):
    attempt(backoff, "alice", HOME, right=True)
    clock.advance(days=30, seconds=1)
    renew_the_block(backoff, clock, 6)
    assert wait_of(backoff, address=HOME) == 2
    attempt(backoff, "bob", THERE, right=True)  # a login renewing a known pair drops the expired ones
    assert BackoffKey.known("alice", HOME) not in store.failures


def test_a_known_address_is_renewed_at_most_once_a_day(backoff, clock, store):
    key = BackoffKey.known("alice", HOME)
    attempt(backoff, "alice", HOME, right=True)
    first = store.failures[key].last_at
    clock.advance(hours=23)
    attempt(backoff, "alice", HOME, right=True)
    assert store.failures[key].last_at == first  # no write for this login
    clock.advance(hours=2)
    attempt(backoff, "alice", HOME, right=True)
    assert store.failures[key].last_at == clock.now()
    clock.advance(days=29)  # 29 days after the renewal: still known
    renew_the_block(backoff, clock, 6)
    assert wait_of(backoff, address=HOME) == 0


def test_a_failed_password_does_not_make_an_address_known(backoff, clock, store):
    fail(backoff, clock, 3, address=HOME)
    assert not any(key.kind == KeyKind.KNOWN for key in store.failures)


def test_an_attempt_whose_password_was_never_checked_is_taken_back_from_every_key(backoff, clock, store):
    fail(backoff, clock, 3)
    before = dict(store.failures)
    clock.advance(seconds=5)
    backoff.unchecked(backoff.reserve("alice", HERE))  # the password checks were too busy
    assert store.failures == before
    backoff.unchecked(backoff.reserve("bob", THERE))
    assert store.failures == before


# --- attempts in flight: a burst of right passwords, parallel guesses -------------------------------------------------
def reserve_all(backoff, count, username="alice", address=HERE):
    """Reserve up to `count` attempts at once (none resolved yet); returns those let through and the refusals."""
    let_through, refused = [], []
    for _ in range(count):
        try:
            let_through.append(backoff.reserve(username, address))
        except (LoginBusy, LoginThrottled) as exc:
            refused.append(exc)
    return let_through, refused


def test_a_burst_of_right_passwords_bigger_than_the_free_failures_all_get_in_without_a_failure(backoff, store):
    """Twelve clients of one account on as many nodes (no shared flight), from one address (a CI fleet behind one
    NAT): the first six are checked at once, the rest wait their turn (`LoginBusy`, never `LoginThrottled`) and go
    on as the ones before succeed. Nothing is left counted."""
    waiting = 12
    rounds = 0
    while waiting:
        rounds += 1
        let_through, refused = reserve_all(backoff, waiting)
        assert all(isinstance(exc, LoginBusy) for exc in refused)  # waits, never a refusal for failed logins
        assert let_through  # every round makes progress
        for reservation in let_through:
            backoff.succeeded(reservation)
        waiting -= len(let_through)
    assert rounds == 2  # six (the free five and one more) at once, then the six others
    assert {key.kind for key in store.failures} == {KeyKind.KNOWN}  # no failure, nothing pending
    assert wait_of(backoff) == 0  # a guess now waits for nothing: the free failures are all there


def test_a_right_password_in_flight_never_makes_a_guess_slower_or_faster(backoff, clock, store):
    right = backoff.reserve("alice", HERE)
    fail(backoff, clock, 5, address=THERE)  # five free failures, with alice's own check in flight
    with pytest.raises(LoginBusy):  # the sixth would be past the free ones if alice's failed: it waits
        backoff.reserve("alice", "192.0.2.7")
    backoff.succeeded(right)
    assert BackoffKey.account("alice") not in store.failures  # the right password cleared the account
    assert wait_of(backoff, address="192.0.2.7") == 0


def test_parallel_guesses_get_exactly_the_checks_of_one_guess_at_a_time(store, clock):
    """An attacker who sends as many guesses at once as the backoff lets through, every second for ten minutes,
    gets exactly as many password checks as one who sends them one after another."""

    def checks(parallel: bool) -> int:
        backoff = LoginBackoff(
            InMemoryLoginFailureStore(), FixedClock(), account=BackoffRule(5, 60), address=BackoffRule(5, 900)
        )
        total = 0
        for second in range(600):
            while True:
                addresses = [f"10.0.{second % 250}.{n}" for n in range(1, 20)]  # fresh addresses each time
                if parallel:
                    let_through = []
                    for address in addresses:
                        with contextlib.suppress(LoginBusy, LoginThrottled):
                            let_through.append(backoff.reserve("victim", address))
                else:
                    let_through = []
                    for address in addresses:
                        try:
                            let_through = [backoff.reserve("victim", address)]
                            break
                        except (LoginBusy, LoginThrottled):
                            pass
                for reservation in let_through:
                    backoff.failed(reservation)
                total += len(let_through)
                if not let_through:
                    break
            backoff.clock.advance(seconds=1)
        return total

    at_once = checks(parallel=True)
    assert at_once == checks(parallel=False)
    # Six at once (the free five and one more), then one after 2, 4, 8, 16, 32 s and one a minute after that.
    assert at_once == 6 + 5 + (600 - 2 - 4 - 8 - 16 - 32) // 60


def test_the_first_guesses_at_once_are_the_free_ones_and_one_more(backoff, store):
    let_through, refused = reserve_all(backoff, 20)
    assert len(let_through) == 6
    assert all(isinstance(exc, LoginBusy) for exc in refused)
    for reservation in let_through:
        backoff.failed(reservation)
    with pytest.raises(LoginThrottled) as raised:
        backoff.reserve("alice", HERE)
    assert raised.value.retry_after_seconds == 2
    assert store.failures[BackoffKey.account("alice")].count == 6
    assert store.failures[BackoffKey.address(HERE)].count == 6


def test_an_address_that_logged_in_does_not_wait_for_the_accounts_checks_in_flight(backoff, clock, store):
    attempt(backoff, "alice", HOME, right=True)
    guesses, _ = reserve_all(backoff, 6, address="192.0.2.66")  # six guesses from elsewhere, in flight
    assert len(guesses) == 6
    backoff.succeeded(backoff.reserve("alice", HOME))  # the owner's network goes ahead
    with pytest.raises(LoginBusy):  # a new address of the owner's waits for them
        backoff.reserve("alice", "192.0.2.67")


def test_a_pending_attempt_left_by_a_dead_process_is_forgotten(backoff, clock, store):
    reserve_all(backoff, 6)  # the process died while checking them
    with pytest.raises(LoginBusy):
        backoff.reserve("alice", HERE)
    clock.advance(seconds=PENDING_FOR.total_seconds() + 1)
    backoff.succeeded(backoff.reserve("alice", HERE))
    assert not any(key.kind in (KeyKind.PENDING_ACCOUNT, KeyKind.PENDING_ADDRESS) for key in store.failures)


def test_an_unchecked_attempt_in_flight_goes_and_lets_the_next_one_in(backoff, store):
    let_through, _ = reserve_all(backoff, 6)
    with pytest.raises(LoginBusy):
        backoff.reserve("alice", HERE)
    backoff.unchecked(let_through[0])
    backoff.failed(backoff.reserve("alice", HERE))
    assert store.failures[BackoffKey.account("alice")].count == 1
    assert store.failures[BackoffKey.account("alice").pending].count == 5
