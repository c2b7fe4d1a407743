"""/account: who you are, and a password change that ends your other sessions and the old password's tokens, while
the session that made it goes on under a fresh id."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
import webtest

from stevedore.adapters.sql.tables import accounts, web_sessions
from stevedore.adapters.sql.tables_audit import audit_events
from tests.fakes import FixedClock
from tests.integration.conftest import count_rows
from tests.integration.protocol.helpers import basic, bearer
from tests.integration.web.helpers import csrf_token, log_in, session_cookie

PASSWORD = "correct horse battery"
NEW = "a brand new password"


def change(app, current=PASSWORD, new=NEW, again=None, status=303, **extra):
    token = csrf_token(app.get("/account"))
    form = {"current_password": current, "new_password": new, "new_password_again": new if again is None else again}
    return app.post("/account", {**form, "csrf_token": token, **extra}, status=status)


def registry_token(app, username, password) -> str:
    return app.get("/v2/token", params={"service": "localhost"}, headers=basic(username, password)).json["token"]


def test_the_page_shows_the_account(testapp, make_user):
    make_user("alice", PASSWORD, email="alice@example.com")
    log_in(testapp, "alice", PASSWORD)
    page = testapp.get("/account")
    assert "<dd>alice</dd>" in page.text and "alice@example.com" in page.text and "<dd>no</dd>" in page.text
    assert 'autocomplete="current-password"' in page.text and '<label for="new_password_again">' in page.text


def test_the_anonymous_are_sent_to_log_in(testapp):
    assert testapp.get("/account", status=303).location.endswith("/login?next=%2Faccount")


def test_a_password_change_keeps_this_session_under_a_new_id_and_ends_the_others(app, make_user, db):
    make_user("alice", PASSWORD)
    here, elsewhere = webtest.TestApp(app), webtest.TestApp(app)
    log_in(here, "alice", PASSWORD)
    log_in(elsewhere, "alice", PASSWORD)
    old_registry_token = registry_token(here, "alice", PASSWORD)
    before = session_cookie(here)
    page = change(here).follow()
    assert "Your password is changed" in page.text
    assert session_cookie(here) != before and "<dd>alice</dd>" in here.get("/account").text
    assert elsewhere.get("/account", status=303).location.endswith("/login?next=%2Faccount")
    assert count_rows(db, web_sessions) == 1  # only the session that made the change, under its new id
    stale = webtest.TestApp(app)
    stale.set_cookie("stevedore_session", before)
    stale.get("/account", status=303)  # the old id of the changing session opens nothing
    here.get("/v2/", headers=bearer(old_registry_token), status=401)
    here.get("/v2/", headers=basic("alice", PASSWORD), status=401)
    here.get("/v2/", headers=basic("alice", NEW), status=200)
    (event,) = db.execute(sa.select(audit_events).where(audit_events.c.action == "password_changed")).all()
    assert event.actor_name == "alice" and event.target == "alice"


def test_a_wrong_current_password_changes_nothing_and_says_so(testapp, make_user, db):
    make_user("alice", PASSWORD)
    log_in(testapp, "alice", PASSWORD)
    before = db.execute(sa.select(accounts.c.password_hash, accounts.c.token_generation)).one()
    page = change(testapp, current="not my password", status=400)
    assert "current password is wrong, so nothing was changed" in page.text
    db.rollback()
    assert db.execute(sa.select(accounts.c.password_hash, accounts.c.token_generation)).one() == before
    assert testapp.get("/account").status_code == 200  # still logged in
    db.rollback()
    failed = db.execute(sa.select(audit_events.c.detail).where(audit_events.c.action == "login_failed")).scalars()
    assert list(failed) == ["password change: wrong password"]


def test_differing_weak_and_unchanged_new_passwords_are_refused(testapp, make_user, db):
    make_user("alice", PASSWORD)
    log_in(testapp, "alice", PASSWORD)
    before = db.execute(sa.select(accounts.c.password_hash)).scalar_one()
    assert "two new passwords differ" in change(testapp, again="something else", status=400).text
    assert "at least 8 characters" in change(testapp, new="short", status=400).text
    assert "must not repeat" in change(testapp, new="abababababab", status=400).text
    assert "is your current one" in change(testapp, new=PASSWORD, status=400).text
    db.rollback()
    assert db.execute(sa.select(accounts.c.password_hash)).scalar_one() == before
    assert count_rows(db, audit_events.select().where(audit_events.c.action == "password_changed").subquery()) == 0


def test_a_change_without_or_with_a_stale_csrf_token_changes_nothing(testapp, make_user, db):
    make_user("alice", PASSWORD)
    log_in(testapp, "alice", PASSWORD)
    before = db.execute(sa.select(accounts.c.password_hash)).scalar_one()
    form = {"current_password": PASSWORD, "new_password": NEW, "new_password_again": NEW}
    assert "nothing was changed" in testapp.post("/account", form, status=400).text
    assert "nothing was changed" in testapp.post("/account", {**form, "csrf_token": "stale"}, status=400).text
    db.rollback()
    assert db.execute(sa.select(accounts.c.password_hash)).scalar_one() == before


def test_guessing_the_current_password_is_slowed_like_any_login(testapp, make_user, components):
    components.clock = FixedClock(datetime.now(UTC))  # the block lasts until the clock moves
    make_user("ada", PASSWORD)
    log_in(testapp, "ada", PASSWORD)
    free = testapp.app.registry.stevedore.settings.login_free_failures
    for _ in range(free + 1):
        change(testapp, current="a wrong guess", status=400)
    page = change(testapp, current=PASSWORD, status=429)
    assert "Too many wrong passwords" in page.text and page.headers["Retry-After"]
    testapp.get("/v2/", headers=basic("ada", PASSWORD), status=429)  # one count for the pages and /v2/
