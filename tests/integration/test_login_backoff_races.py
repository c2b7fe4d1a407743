"""The failed-login backoff under concurrency, on SQLite and PostgreSQL: wrong passwords sent all at once (each from a
fresh address, so only the account's key can stop them) get one password check between them once the account is at
its cap, not one each. The attempt is reserved in the database before bcrypt runs, so the requests cannot all read the
count before any of them has written it. Also: a push's POST with wrong credentials on SQLite (whose request
transaction takes the write lock) is refused at once, never stuck behind its own lock."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import webtest

from stevedore.adapters.sql.tables_login_backoff import login_failures
from tests.fakes import FixedClock
from tests.integration.protocol.helpers import basic, error_codes

PASSWORD = "correct horse battery"
THREADS = 24


@pytest.fixture
def clock(components):
    components.clock = FixedClock(datetime.now(UTC))
    return components.clock


@pytest.fixture
def checks(components, monkeypatch):
    """Counts the password checks (bcrypt runs), whatever their outcome."""
    counted = []
    lock = threading.Lock()
    verify = components.hasher.verify

    def counting(password: str, hashed: str) -> bool:
        with lock:
            counted.append(password)
        return verify(password, hashed)

    monkeypatch.setattr(components.hasher, "verify", counting)
    return counted


def at_its_cap(components, clock, username="alice"):
    """The account has failed 11 times (its next failure blocks for the full 60 s); the last block just ended."""
    with components.write_sessions() as session, session.begin():
        session.execute(
            sa.insert(login_failures).values(
                kind="account", key=username, failures=11, last_failure_at=clock.now() - timedelta(seconds=61)
            )
        )


def all_at_once(app, requests):
    """Run `requests` (callables taking a TestApp and an index) from one thread each, started together."""
    barrier = threading.Barrier(len(requests))
    results: list[object] = [None] * len(requests)

    def run(index, request):
        client = webtest.TestApp(app, extra_environ={"REMOTE_ADDR": f"10.{index // 250}.{index % 250}.7"})
        barrier.wait()
        try:
            results[index] = request(client, index)
        except Exception as exc:  # reported by the test: a thread's exception would otherwise vanish
            results[index] = exc

    threads = [threading.Thread(target=run, args=(index, request)) for index, request in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def wrong_password(client, index):
    response = client.get("/v2/", headers=basic("alice", f"guess number {index}"), expect_errors=True)
    return response.status_int, error_codes(response) if response.status_int >= 400 else []


def test_parallel_wrong_passwords_at_the_cap_get_one_password_check_between_them(
    app, components, clock, make_user, checks
):
    make_user("alice", PASSWORD)
    checks.clear()
    at_its_cap(components, clock)
    results = all_at_once(app, [wrong_password] * THREADS)
    statuses = sorted(result[0] for result in results)  # type: ignore[index]
    assert statuses.count(401) == 1, statuses
    assert statuses.count(429) == THREADS - 1, statuses
    assert all(result[1] == ["TOOMANYREQUESTS"] for result in results if result[0] == 429)  # type: ignore[index]
    assert len(checks) == 1


def test_parallel_logins_while_blocked_check_no_password_at_all(app, components, clock, make_user, checks):
    make_user("alice", PASSWORD)
    checks.clear()
    at_its_cap(components, clock)
    clock.advance(seconds=-30)  # the last block has 29 s to run
    results = all_at_once(app, [wrong_password] * THREADS)
    assert sorted(result[0] for result in results) == [429] * THREADS  # type: ignore[index]
    assert checks == []


def test_parallel_right_passwords_from_a_fresh_account_all_get_in(app, components, clock, make_user, db):
    """The reservation counts an attempt before its check: a client's burst of first requests with the right
    password (fewer than the free failures) is never refused, and leaves no failure behind."""
    make_user("alice", PASSWORD)

    def right(client, index):
        return client.get("/v2/", headers=basic("alice", PASSWORD), expect_errors=True).status_int

    assert all_at_once(app, [right] * 4) == [200] * 4
    db.rollback()
    leftover = db.execute(sa.select(login_failures.c.kind, login_failures.c.failures)).all()
    assert [row for row in leftover if row.failures > 0] == []


def test_a_push_with_wrong_credentials_is_refused_at_once_on_every_backend(testapp, make_user, db):
    make_user("alice", PASSWORD)
    started = time.monotonic()
    for _ in range(6):
        testapp.post("/v2/alice/app/blobs/uploads/", headers=basic("alice", "wrong"), status=401)
    refused = testapp.post("/v2/alice/app/blobs/uploads/", headers=basic("alice", PASSWORD), status=429)
    assert error_codes(refused) == ["TOOMANYREQUESTS"]
    assert time.monotonic() - started < 10  # never waiting for a write lock the request itself holds
    db.rollback()
    assert db.execute(sa.select(login_failures.c.failures).where(login_failures.c.kind == "account")).scalar_one() == 6


def test_a_password_check_inside_the_requests_own_write_transaction_is_refused_on_sqlite_never_stuck(app, make_user):
    """No route does this; one that did would hold SQLite's write lock while the reservation waited for it."""
    from pyramid.request import Request
    from pyramid.scripting import prepare

    from stevedore.domain.errors import TooManyRequests
    from stevedore.web.security import account_for_password

    make_user("alice", PASSWORD)
    request = Request.blank("/v2/alice/app/blobs/uploads/", method="POST", environ={"REMOTE_ADDR": "192.0.2.9"})
    env = prepare(request, registry=app.registry)
    try:
        request.tm.begin()
        request.dbsession.execute(sa.text("SELECT 1"))  # the request's transaction has begun (a writer's: POST)
        started = time.monotonic()
        if request.dbsession.get_bind().dialect.name == "sqlite":
            with pytest.raises(TooManyRequests):
                account_for_password(request, "alice", PASSWORD)
        else:  # PostgreSQL has no database-wide lock: the reservation goes ahead
            assert account_for_password(request, "alice", PASSWORD) is not None
        assert time.monotonic() - started < 5
        request.tm.abort()
    finally:
        env["closer"]()
