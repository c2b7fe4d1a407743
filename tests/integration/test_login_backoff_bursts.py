"""The failed-login backoff under a burst of RIGHT passwords, on SQLite and PostgreSQL, with the credential cache
empty: a CI fleet sharing one account, docker's parallel first requests, workers fetching tokens at once. Every
client of the burst gets in (no 429) whether the requests reach one process (they share one password check: one
reservation), two processes on one database, or as many nodes as requests (no shared check at all: their
reservations are pending, never failures, and wait their turn past the free failures). Identical credentials in
one flight share the leader's refusal (the same Retry-After) or its wrong-password answer (counted once). An
attacker's parallel guesses are limited as before."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import webtest

from stevedore.adapters import passwords
from stevedore.adapters.passwords import PasswordCheckGate
from stevedore.adapters.sql.tables_login_backoff import login_failures
from stevedore.web.app import build_components, make_app
from tests.fakes import FixedClock
from tests.integration.protocol.helpers import basic, error_codes

PASSWORD = "correct horse battery"
BURST = 12
LOOPBACK = "127.0.0.1"  # every client of the burst from one address (one CI runner, or a NAT)


@pytest.fixture
def checks(components, monkeypatch):
    """Counts the password checks (bcrypt runs) of `components`, each made to take 0.2 s so that a burst's
    requests overlap."""
    return slowed_checks(components, monkeypatch)


def slowed_checks(components, monkeypatch, counted=None):
    """The passwords bcrypt actually checked: a call that the process's bcrypt gate refuses (429, too many at once:
    adapters/passwords.py) checks nothing, and the backoff takes its attempt back, so it is not counted."""
    counted = [] if counted is None else counted
    lock = threading.Lock()
    verify = components.hasher.verify
    checkpw = passwords._checkpw

    def slow(password: str, hashed: str) -> bool:
        time.sleep(0.2)
        return verify(password, hashed)

    def checked(password: str, hashed: str) -> bool:
        with lock:
            counted.append(password)
        return checkpw(password, hashed)

    monkeypatch.setattr(components.hasher, "verify", slow)
    if not getattr(checkpw, "counts", False):  # one module function for every process of the test: count once
        checked.counts = True  # type: ignore[attr-defined]
        monkeypatch.setattr(passwords, "_checkpw", checked)
    return counted


def all_at_once(apps, request, count=BURST, address=lambda index: LOOPBACK):
    """`request(client, index)` from `count` threads started together, spread over `apps` in turn."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(index):
        client = webtest.TestApp(apps[index % len(apps)], extra_environ={"REMOTE_ADDR": address(index)})
        barrier.wait()
        try:
            results[index] = request(client, index)
        except Exception as exc:  # reported by the test: a thread's exception would otherwise vanish
            results[index] = exc

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def token(client, index):
    response = client.get(
        "/v2/token?scope=repository:alice/app:pull", headers=basic("alice", PASSWORD), expect_errors=True
    )
    return response.status_int


def v2(client, index):
    return client.get("/v2/", headers=basic("alice", PASSWORD), expect_errors=True).status_int


def counted(db):
    """Failures and attempts in flight left per key (known addresses apart)."""
    db.rollback()
    found = db.execute(sa.select(login_failures).where(login_failures.c.kind != "known")).all()
    return {(row.kind, row.key): row.failures for row in found}


@pytest.mark.parametrize("request_kind", [token, v2], ids=["token", "v2"])
def test_a_burst_of_right_passwords_in_one_process_shares_one_check_and_all_get_in(
    app, components, make_user, checks, db, request_kind
):
    make_user("alice", PASSWORD)
    checks.clear()
    assert all_at_once([app], request_kind) == [200] * BURST
    assert len(checks) == 1  # one flight: one reservation, one bcrypt run
    assert counted(db) == {}


def test_a_burst_of_right_passwords_on_two_processes_all_get_in(
    app, components, settings, make_user, checks, db, monkeypatch
):
    make_user("alice", PASSWORD)
    checks.clear()
    other = build_components(settings)
    try:
        slowed_checks(other, monkeypatch, checks)
        assert all_at_once([app, make_app(other)], token) == [200] * BURST
    finally:
        other.engine.dispose()
    assert len(checks) == 2  # one flight in each process
    assert counted(db) == {}


def test_a_burst_of_right_passwords_on_as_many_nodes_as_requests_all_get_in(app, components, make_user, checks, db):
    """No shared flight at all (as on twelve nodes): twelve reservations, more than the free failures and one, all
    from one address. The first six are checked at once, the others wait for them (pending is not failed) and go
    on as they succeed."""
    make_user("alice", PASSWORD)
    checks.clear()
    components.credential_flights.max_followers = 0  # every request checks alone
    # As many nodes as requests would have as many bcrypt gates: this one process's gate (1 check at a time, 2
    # waiting, then 429 by design: adapters/passwords.py) must not stand in for twelve. Without it, whether the
    # reservations' short write transactions happen to spread the checks out decided the outcome.
    components.hasher.gate = PasswordCheckGate(1, waiting=BURST)
    assert all_at_once([app], token) == [200] * BURST
    assert len(checks) == BURST
    assert counted(db) == {}


def test_followers_share_the_leaders_refusal_with_its_retry_after(app, components, make_user, checks, db):
    make_user("alice", PASSWORD)
    checks.clear()
    with components.write_sessions() as session, session.begin():  # blocked: a failure 10 s ago at the cap
        session.execute(
            sa.insert(login_failures).values(
                kind="account", key="alice", failures=11, last_failure_at=datetime.now(UTC) - timedelta(seconds=10)
            )
        )

    def refused(client, index):
        response = client.get("/v2/", headers=basic("alice", PASSWORD), expect_errors=True)
        return response.status_int, tuple(error_codes(response)), response.headers.get("Retry-After")

    results = all_at_once([app], refused)
    assert {result[:2] for result in results} == {(429, ("TOOMANYREQUESTS",))}  # type: ignore[index]
    waits = {int(result[2]) for result in results}  # type: ignore[index]
    assert waits <= {49, 50, 51} and len(waits) <= 2  # the leader's wait (or a second's rounding), not a generic 1 s
    assert checks == []
    assert counted(db) == {("account", "alice"): 11}


def test_identical_wrong_passwords_at_once_are_one_failure(app, components, make_user, checks, db):
    make_user("alice", PASSWORD)
    checks.clear()

    def wrong(client, index):
        return client.get("/v2/", headers=basic("alice", "the same wrong guess"), expect_errors=True).status_int

    assert all_at_once([app], wrong) == [401] * BURST
    assert len(checks) == 1
    assert counted(db) == {("account", "alice"): 1, ("address", LOOPBACK): 1}


def test_parallel_different_guesses_get_the_free_failures_and_one_more_check(app, components, make_user, checks, db):
    """Twenty different guesses at once, each from a fresh address: six password checks (the five free failures
    and the one that starts the wait), the fourteen others refused once those failed, as before. (The clock stands
    still: on a loaded machine a waiting guess might otherwise see the 2 s wait end, and be the one more it allows.)"""
    components.clock = FixedClock(datetime.now(UTC))
    make_user("alice", PASSWORD)
    checks.clear()

    def guess(client, index):
        response = client.get("/v2/", headers=basic("alice", f"guess number {index}"), expect_errors=True)
        return response.status_int

    statuses = sorted(all_at_once([app], guess, count=20, address=lambda index: f"10.9.0.{index + 1}"))
    assert statuses == [401] * 6 + [429] * 14
    assert len(checks) == 6
    assert counted(db)[("account", "alice")] == 6
    assert not any(kind.startswith("pending") for kind, _key in counted(db))
