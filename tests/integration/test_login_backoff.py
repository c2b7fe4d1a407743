"""The failed-login backoff over HTTP, on SQLite and PostgreSQL: /v2/ with Basic credentials, the token endpoint and
the login page count failures per account name and per client address in the database; a blocked key is refused with
429 (TOOMANYREQUESTS and Retry-After on /v2/, a message on the page) before any password check, except for a
password already in the credential cache and for personal access tokens. The SQL store itself: atomic counts."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import webtest

from stevedore.adapters.sql.login_backoff import SqlLoginFailureStore
from stevedore.adapters.sql.tables_audit import audit_events
from stevedore.adapters.sql.tables_login_backoff import login_failures
from stevedore.domain.login_backoff import HASHED_PREFIX, BackoffKey, Failures, KeyKind
from stevedore.web.app import build_components, make_app
from tests.fakes import FixedClock
from tests.integration.protocol.helpers import basic, error_codes
from tests.integration.test_access_tokens import make_token
from tests.integration.web.helpers import csrf_token

PASSWORD = "correct horse battery"
HERE = "198.51.100.4"
THERE = "203.0.113.9"


@pytest.fixture
def clock(components):
    components.clock = FixedClock(datetime.now(UTC))
    return components.clock


@pytest.fixture
def testapp(app, clock):
    return client(app, HERE)


def client(app, address):
    return webtest.TestApp(app, extra_environ={"REMOTE_ADDR": address})


@pytest.fixture
def alice(make_user):
    return make_user("alice", PASSWORD)


def fail(app, times, username="alice"):
    for _ in range(times):
        app.get("/v2/", headers=basic(username, "wrong password"), status=401)


def rows(db):
    """The failures counted per key (the known addresses apart: see `known_rows`)."""
    db.rollback()
    found = db.execute(sa.select(login_failures).where(login_failures.c.kind != "known")).all()
    return {(row.kind, row.key): row.failures for row in found}


def known_rows(db):
    db.rollback()
    found = db.execute(sa.select(login_failures).where(login_failures.c.kind == "known")).all()
    return {row.key: row.last_failure_at for row in found}


def throttled_events(db):
    db.rollback()
    query = sa.select(audit_events).where(audit_events.c.action == "login_throttled").order_by(audit_events.c.id)
    return db.execute(query).all()


def test_after_the_free_failures_v2_answers_429_with_retry_after_even_for_the_right_password(testapp, alice, db):
    fail(testapp, 6)  # five free, the sixth blocks for 2 s
    refused = testapp.get("/v2/", headers=basic("alice", PASSWORD), status=429)
    assert error_codes(refused) == ["TOOMANYREQUESTS"]
    assert refused.headers["Retry-After"] == "2"
    assert "too many failed logins" in refused.json["errors"][0]["message"]
    assert rows(db) == {("account", "alice"): 6, ("address", HERE): 6}


def test_refusals_while_blocked_check_no_password_and_are_not_counted(testapp, alice, db):
    fail(testapp, 6)
    for _ in range(5):
        testapp.get("/v2/", headers=basic("alice", "wrong password"), status=429)
    assert rows(db) == {("account", "alice"): 6, ("address", HERE): 6}


def test_the_block_ends_and_the_right_password_clears_the_account_but_not_the_address(testapp, alice, clock, db):
    fail(testapp, 6)
    assert rows(db) == {("account", "alice"): 6, ("address", HERE): 6}
    clock.advance(seconds=1)
    assert testapp.get("/v2/", headers=basic("alice", PASSWORD), status=429).headers["Retry-After"] == "1"
    clock.advance(seconds=1)
    testapp.get("/v2/", headers=basic("alice", PASSWORD), status=200)
    assert rows(db) == {("address", HERE): 6}
    # The address still remembers: its next failure waits 4 s, whatever the name.
    testapp.get("/v2/", headers=basic("bob", "a guess"), status=401)
    assert testapp.get("/v2/", headers=basic("carol", "a guess"), status=429).headers["Retry-After"] == "4"


def test_failures_older_than_an_hour_are_forgotten(testapp, alice, clock, db):
    fail(testapp, 6)
    clock.advance(hours=1, seconds=1)
    fail(testapp, 5)
    testapp.get("/v2/", headers=basic("alice", PASSWORD), status=200)
    assert rows(db) == {("address", HERE): 5}


def test_a_cached_right_password_keeps_working_during_an_attack(testapp, alice, app, db):
    testapp.get("/v2/", headers=basic("alice", PASSWORD), status=200)  # docker login earlier: now in the cache
    attacker = client(app, THERE)
    fail(attacker, 6)
    attacker.get("/v2/", headers=basic("alice", "another guess"), status=429)
    testapp.get("/v2/", headers=basic("alice", PASSWORD), status=200)
    testapp.get("/v2/", headers=basic("alice", PASSWORD), status=200)


def test_the_right_password_not_yet_cached_is_refused_while_the_account_is_blocked(testapp, alice, app):
    attacker = client(app, THERE)
    fail(attacker, 6)
    refused = testapp.get("/v2/", headers=basic("alice", PASSWORD), status=429)  # the owner, from elsewhere
    assert refused.headers["Retry-After"] == "2"


def test_an_access_token_is_never_throttled(testapp, alice, components, db):
    _token_id, secret = make_token(components, "alice", scope="pull")
    fail(testapp, 6)
    testapp.get("/v2/", headers=basic("alice", PASSWORD), status=429)
    for _ in range(3):
        testapp.get("/v2/", headers=basic("alice", secret), status=200)
    assert rows(db)[("account", "alice")] == 6  # the token's uses counted nothing


def test_a_wrong_token_counts_as_a_failed_password(testapp, alice, components, db):
    make_token(components, "alice", scope="pull")
    for _ in range(6):
        testapp.get("/v2/", headers=basic("alice", "stv_not_a_real_token"), status=401)
    testapp.get("/v2/", headers=basic("alice", "stv_not_a_real_token"), status=429)


def test_the_token_endpoint_counts_and_refuses_alike(testapp, alice):
    for _ in range(3):
        testapp.get("/v2/token", headers=basic("alice", "wrong"), status=401)
    for _ in range(3):
        testapp.post("/v2/token", {"grant_type": "password", "username": "alice", "password": "wrong"}, status=401)
    refused = testapp.get("/v2/token", headers=basic("alice", PASSWORD), status=429)
    assert error_codes(refused) == ["TOOMANYREQUESTS"]
    assert refused.headers["Retry-After"] == "2"
    posted = testapp.post(
        "/v2/token", {"grant_type": "password", "username": "alice", "password": PASSWORD}, status=429
    )
    assert error_codes(posted) == ["TOOMANYREQUESTS"]


def test_unknown_names_count_too_and_hostile_names_are_stored_bounded(testapp, db):
    fail(testapp, 6, username="nobody")
    testapp.get("/v2/", headers=basic("nobody", "x"), status=429)
    other = client(testapp.app, THERE)
    huge = "n" * 100_000
    other.get("/v2/", headers=basic(huge, "x"), status=401)
    keys = {key for _kind, key in rows(db)}
    assert "nobody" in keys
    assert BackoffKey.account(huge).value in keys
    assert all(len(key) <= 71 for key in keys)
    assert BackoffKey.account(huge).value.startswith(HASHED_PREFIX)


def test_a_key_becoming_blocked_is_audited_once(testapp, alice, clock, db):
    fail(testapp, 6)
    for _ in range(3):
        testapp.get("/v2/", headers=basic("alice", "wrong password"), status=429)
    clock.advance(seconds=2)
    fail(testapp, 1)  # the seventh failure makes the block longer: no new event
    events = throttled_events(db)
    assert [(e.target, e.actor_name, e.address) for e in events] == [
        ("account alice", "alice", HERE),
        (f"address {HERE}", None, HERE),
    ]
    assert "6 failed logins" in events[0].detail


def test_the_login_page_counts_the_same_failures_and_says_how_long_to_wait(testapp, alice, db):
    fail(testapp, 3)
    for _ in range(3):
        page = testapp.get("/login")
        testapp.post("/login", {"username": "alice", "password": "wrong", "csrf_token": csrf_token(page)}, status=400)
    page = testapp.get("/login")
    refused = testapp.post(
        "/login", {"username": "alice", "password": PASSWORD, "csrf_token": csrf_token(page)}, status=429
    )
    assert refused.headers["Retry-After"] == "2"
    assert "Too many failed logins for this account or from your address: try again in 2 seconds." in refused.text
    assert 'role="alert"' in refused.text
    testapp.get("/tokens", status=303)  # not logged in: sent to the login page
    assert rows(db) == {("account", "alice"): 6, ("address", HERE): 6}
    # The page's refusal blocks /v2/ too (one count for both).
    testapp.get("/v2/", headers=basic("alice", PASSWORD), status=429)


def test_a_page_login_after_the_block_clears_the_account(testapp, alice, clock, db):
    fail(testapp, 6)
    clock.advance(seconds=2)
    page = testapp.get("/login")
    testapp.post("/login", {"username": "alice", "password": PASSWORD, "csrf_token": csrf_token(page)}, status=303)
    assert rows(db) == {("address", HERE): 6}


def test_a_second_app_on_the_same_database_sees_the_block(testapp, alice, settings):
    fail(testapp, 6)
    other_components = build_components(settings)
    try:
        other = client(make_app(other_components), HERE)
        refused = other.get("/v2/", headers=basic("alice", PASSWORD), status=429)
        assert error_codes(refused) == ["TOOMANYREQUESTS"]
        other_elsewhere = client(make_app(other_components), THERE)
        assert other_elsewhere.get("/v2/", headers=basic("alice", PASSWORD), status=429)
    finally:
        other_components.engine.dispose()


# --- the SQL store ---------------------------------------------------------------------------------------------------
def test_the_store_counts_starts_over_resets_and_forgets(components):
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    key = BackoffKey.account("alice")
    with components.write_sessions() as session, session.begin():
        store = SqlLoginFailureStore(session)
        assert store.read([key]) == {}
        assert store.record_failure(key, now, forget_before=now - timedelta(hours=1)).count == 1
        found = store.record_failure(key, now + timedelta(seconds=5), forget_before=now - timedelta(hours=1))
        assert (found.count, found.last_at) == (2, now + timedelta(seconds=5))
        later = now + timedelta(hours=2)
        assert store.record_failure(key, later, forget_before=later - timedelta(hours=1)).count == 1
        address = BackoffKey.address(HERE)
        store.record_failure(address, now, forget_before=now)
        assert set(store.read([key, address, BackoffKey.address(THERE)])) == {key, address}
        store.forget(KeyKind.ADDRESS, before=now + timedelta(seconds=1))
        store.forget(KeyKind.ACCOUNT, before=now + timedelta(seconds=1))  # alice's last failure is later: kept
        assert set(store.read([key, address])) == {key}
        store.reset(key)
        store.reset(key)
        assert store.read([key]) == {}


def test_forgetting_stale_keys_never_waits_for_a_key_another_reservation_holds(components):
    """On PostgreSQL two reservations each holding their own keys' rows and deleting the other's stale rows could
    deadlock: a stale row another transaction holds is skipped, left for a later cleanup. SQLite's writers hold the
    whole database, so there every stale row goes."""
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    held, free = BackoffKey.address(HERE), BackoffKey.address(THERE)
    with components.write_sessions() as session, session.begin():
        store = SqlLoginFailureStore(session)
        store.record_failure(held, now, forget_before=now)
        store.record_failure(free, now, forget_before=now)
    later = now + timedelta(days=1)
    if components.engine.dialect.name != "postgresql":
        with components.write_sessions() as session, session.begin():
            SqlLoginFailureStore(session).forget(KeyKind.ADDRESS, before=later)
            assert SqlLoginFailureStore(session).read([held, free]) == {}
        return
    with components.write_sessions() as holder, holder.begin():
        SqlLoginFailureStore(holder).record_failure(held, now, forget_before=now - timedelta(hours=1))  # row locked
        with components.write_sessions() as session, session.begin():
            session.execute(sa.text("SET LOCAL lock_timeout = '5s'"))  # waiting would fail the test, not hang it
            SqlLoginFailureStore(session).forget(KeyKind.ADDRESS, before=later)
            assert set(SqlLoginFailureStore(session).read([held, free])) == {held}


def test_concurrent_failures_from_several_connections_all_count(components):
    now = datetime.now(UTC)
    key = BackoffKey.address(HERE)
    errors = []

    def hammer():
        try:
            for _ in range(10):
                with components.write_sessions() as session, session.begin():
                    SqlLoginFailureStore(session).record_failure(key, now, forget_before=now - timedelta(hours=1))
        except Exception as exc:  # reported below: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with components.read_sessions() as session:
        assert SqlLoginFailureStore(session).read([key])[key].count == 40


# --- known addresses and IPv6 prefixes -------------------------------------------------------------------------------
OWNER_HOME = "2001:db8:a:1::10"


def login_page(app, password=PASSWORD, status=303):
    page = app.get("/login")
    return app.post(
        "/login", {"username": "alice", "password": password, "csrf_token": csrf_token(page)}, status=status
    )


def test_an_attacker_renewing_the_block_never_slows_the_owner_from_an_address_that_logged_in_before(
    app, alice, components, clock, db
):
    components.credential_cache.ttl = 0  # every login below checks the password: the cache does not help
    owner = client(app, OWNER_HOME)
    owner.get("/v2/", headers=basic("alice", PASSWORD), status=200)  # a docker login last week
    assert len(known_rows(db)) == 1
    clock.advance(days=7)
    fresh = iter(f"2001:db8:bad:{n:x}::1" for n in range(10_000))
    for minute in range(30):
        # The attacker guesses from a fresh /64 each time until the account is blocked for everyone else...
        while True:
            guess = client(app, next(fresh)).get("/v2/", headers=basic("alice", "guess"), expect_errors=True)
            if guess.status_int == 429:
                break
            assert guess.status_int == 401
        # ...so a brand-new address of the owner's waits (at most the account cap)...
        waited = client(app, f"192.0.2.{minute + 1}").get("/v2/", headers=basic("alice", PASSWORD), status=429)
        assert 1 <= int(waited.headers["Retry-After"]) <= 60
        # ...but the owner's own network gets in at once, with docker and on the pages (any address of its /64).
        owner.get("/v2/", headers=basic("alice", PASSWORD), status=200)
        login_page(client(app, f"2001:db8:a:1::{minute + 100:x}"))
        clock.advance(seconds=60)


def test_a_new_address_of_the_owner_waits_at_most_the_account_cap(app, alice, components, clock):
    components.credential_cache.ttl = 0
    with components.write_sessions() as session, session.begin():  # at the cap, renewed just now
        session.execute(
            sa.insert(login_failures).values(kind="account", key="alice", failures=30, last_failure_at=clock.now())
        )
    refused = client(app, OWNER_HOME).get("/v2/", headers=basic("alice", PASSWORD), status=429)
    assert refused.headers["Retry-After"] == "60"
    clock.advance(seconds=60)
    client(app, OWNER_HOME).get("/v2/", headers=basic("alice", PASSWORD), status=200)


def test_a_known_address_expires_30_days_after_its_last_login(app, alice, components, clock):
    components.credential_cache.ttl = 0
    owner = client(app, OWNER_HOME)
    login_page(owner)
    clock.advance(days=30, seconds=1)
    fail(client(app, THERE), 6)
    refused = owner.get("/v2/", headers=basic("alice", PASSWORD), status=429)
    assert refused.headers["Retry-After"] == "2"


def test_a_wrong_password_does_not_make_an_address_known(app, alice, db):
    fail(client(app, OWNER_HOME), 3)
    assert known_rows(db) == {}


def test_an_ipv6_client_is_counted_by_its_64_prefix(app, db):
    for n in range(6):
        client(app, f"2001:db8:bad:1::{n + 1:x}").get("/v2/", headers=basic(f"user{n}", "x"), status=401)
    refused = client(app, "2001:db8:bad:1:ffff::9").get("/v2/", headers=basic("someone", "x"), status=429)
    assert error_codes(refused) == ["TOOMANYREQUESTS"]
    client(app, "2001:db8:bad:2::1").get("/v2/", headers=basic("someone", "x"), status=401)
    assert rows(db)[("address", "2001:db8:bad:1::/64")] == 6


def test_the_store_releases_pending_attempts_and_keeps_known_logins(components):
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    key = BackoffKey.address(HERE).pending
    known = BackoffKey.known("alice", HERE)
    forget = now - timedelta(hours=1)
    with components.write_sessions() as session, session.begin():
        store = SqlLoginFailureStore(session)
        store.hold([BackoffKey.address(HERE), BackoffKey.account("alice")])
        store.hold([BackoffKey.address(HERE)])  # again in the same transaction: fine
        store.record_failure(key, now, forget_before=forget)
        store.record_failure(key, now + timedelta(seconds=3), forget_before=forget)
        store.release(key)
        assert store.read([key]) == {key: Failures(1, now + timedelta(seconds=3))}
        store.release(key)  # none left: dropped
        assert store.read([key]) == {}
        store.release(key)  # idempotent when there is none
        assert store.read([key]) == {}
        store.record_known(known, now)
        store.record_known(known, now + timedelta(days=1))
        assert store.read([known])[known].last_at == now + timedelta(days=1)
        store.forget(KeyKind.KNOWN, before=now + timedelta(days=2))
        assert store.read([known]) == {}


def test_a_login_refused_because_the_password_checks_are_busy_counts_nothing(
    testapp, alice, components, db, monkeypatch
):
    from stevedore.domain.errors import TooManyRequests

    fail(testapp, 2)

    def busy(password, hashed):
        raise TooManyRequests("too many logins are being checked")

    monkeypatch.setattr(components.hasher, "verify", busy)
    for _ in range(8):
        refused = testapp.get("/v2/", headers=basic("alice", "a guess"), status=429)
        assert "being checked" in refused.json["errors"][0]["message"]
        page = testapp.get("/login")
        testapp.post("/login", {"username": "alice", "password": "x", "csrf_token": csrf_token(page)}, status=429)
    assert rows(db) == {("account", "alice"): 2, ("address", HERE): 2}  # as before: no password was checked


def test_the_account_pages_right_current_password_leaves_no_failure_behind(testapp, alice, db):
    from tests.integration.web.helpers import log_in

    log_in(testapp, "alice", PASSWORD)
    fail(testapp, 2)
    page = testapp.get("/account")
    form = {"current_password": PASSWORD, "new_password": "x", "new_password_again": "y"}
    testapp.post("/account", {**form, "csrf_token": csrf_token(page)}, status=400)  # the new ones differ
    assert rows(db) == {("address", HERE): 2}  # its attempt taken back, and the account's count cleared
    form = {"current_password": "wrong", "new_password": "x", "new_password_again": "x"}
    testapp.post("/account", {**form, "csrf_token": csrf_token(page)}, status=400)
    assert rows(db) == {("account", "alice"): 1, ("address", HERE): 3}
