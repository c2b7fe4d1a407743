"""Login, logout and page sessions: one mechanism (Pyramid's session and CSRF), state in the database."""

import dataclasses
from datetime import UTC, datetime

import pytest
import transaction
import webtest

from stevedore.adapters.sql.accounts import SqlAccountStore
from stevedore.adapters.sql.engine import join_transaction
from stevedore.adapters.sql.tables import web_sessions
from stevedore.domain.accounts import AccountService
from stevedore.domain.errors import TooManyRequests
from stevedore.web.app import build_components, make_app
from stevedore.web.ui.session import COOKIE_NAME
from tests.fakes import FixedClock
from tests.integration.conftest import count_rows
from tests.integration.web.helpers import csrf_token, log_in, page_csrf_token, session_cookie


def logged_in_as(app):
    page = app.get("/", status=200)
    return page.text.split("Welcome, ")[1].split("<")[0] if "Welcome, " in page.text else None


@pytest.fixture
def clock(components):
    components.clock = FixedClock(datetime(2026, 3, 1, tzinfo=UTC))
    return components.clock


def test_login_with_the_docker_credentials_opens_a_session_and_logout_ends_it(testapp, user, db):
    assert "Log in" in testapp.get("/login").text
    log_in(testapp, *user)
    assert logged_in_as(testapp) == "alice"
    assert count_rows(db, web_sessions) == 1
    testapp.post("/logout", {"csrf_token": page_csrf_token(testapp)}, status=303)
    assert logged_in_as(testapp) is None
    assert count_rows(db, web_sessions) == 0  # the login form's session ended at the login, alice's at the logout


def test_a_wrong_password_an_unknown_user_and_a_disabled_account_are_refused(testapp, user, make_user, components):
    assert "is wrong" in log_in(testapp, "alice", "not the password", status=400).text
    assert "is wrong" in log_in(testapp, "nobody", "correct horse battery", status=400).text
    make_user("bob", "another good password")
    session = components.write_sessions()
    with transaction.manager:
        join_transaction(session)
        AccountService(SqlAccountStore(session), components.hasher, components.clock).set_active("bob", False)
    session.close()
    assert "is wrong" in log_in(testapp, "bob", "another good password", status=400).text
    assert logged_in_as(testapp) is None


def test_a_busy_password_check_is_a_clear_page_message(testapp, user, components, monkeypatch):
    def busy(password, hashed):
        raise TooManyRequests()

    monkeypatch.setattr(components.hasher, "verify", busy)
    page = log_in(testapp, *user, status=429)
    assert "Too many logins" in page.text and page.headers["Retry-After"]


def test_disabling_the_account_ends_its_sessions(testapp, user, components):
    log_in(testapp, *user)
    session = components.write_sessions()
    with transaction.manager:
        join_transaction(session)
        AccountService(SqlAccountStore(session), components.hasher, components.clock).set_active("alice", False)
    session.close()
    assert logged_in_as(testapp) is None


def test_login_gives_a_new_session_id_and_the_old_one_opens_nothing(testapp, user):
    testapp.get("/login")
    before = session_cookie(testapp)
    assert before
    log_in(testapp, *user)
    after = session_cookie(testapp)
    assert after and after != before
    planted = webtest.TestApp(testapp.app)
    planted.set_cookie(COOKIE_NAME, before)
    assert logged_in_as(planted) is None


def test_logout_ends_the_session_on_the_server(testapp, user):
    log_in(testapp, *user)
    stolen = session_cookie(testapp)
    testapp.post("/logout", {"csrf_token": page_csrf_token(testapp)}, status=303)
    replay = webtest.TestApp(testapp.app)
    replay.set_cookie(COOKIE_NAME, stolen)
    assert logged_in_as(replay) is None


def test_a_forged_cookie_is_ignored(testapp, user):
    log_in(testapp, *user)
    value = session_cookie(testapp)
    forged = webtest.TestApp(testapp.app)
    forged.set_cookie(COOKIE_NAME, value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    assert logged_in_as(forged) is None


def test_sessions_end_when_idle_too_long(testapp, user, clock, components):
    log_in(testapp, *user)
    idle = components.settings.session_idle_seconds
    clock.advance(seconds=idle - 120)
    assert logged_in_as(testapp) == "alice"  # and this request counts as use
    clock.advance(seconds=idle - 120)
    assert logged_in_as(testapp) == "alice"
    clock.advance(seconds=idle + 1)
    assert logged_in_as(testapp) is None


def test_sessions_end_after_the_absolute_lifetime_whatever_the_use(testapp, user, clock, components):
    log_in(testapp, *user)
    step = components.settings.session_idle_seconds - 60
    elapsed = 0
    while elapsed + step < components.settings.session_max_seconds:
        clock.advance(seconds=step)
        elapsed += step
        assert logged_in_as(testapp) == "alice"
    clock.advance(seconds=components.settings.session_max_seconds - elapsed + 1)
    assert logged_in_as(testapp) is None


def test_posts_without_or_with_a_stale_csrf_token_are_refused_and_change_nothing(testapp, user):
    page = testapp.post("/login", {"username": "alice", "password": "correct horse battery"}, status=400)
    assert "nothing was changed" in page.text and "Content-Security-Policy" in page.headers
    assert logged_in_as(testapp) is None
    stale = csrf_token(testapp.get("/login"))
    log_in(testapp, *user)  # a new session: the token of the old one is stale
    testapp.post("/logout", {"csrf_token": stale}, status=400)
    testapp.post("/logout", {}, status=400)
    assert logged_in_as(testapp) == "alice"


def test_a_session_cookie_never_authenticates_the_registry_api(testapp, user):
    log_in(testapp, *user)
    assert testapp.get("/v2/", status=401).headers["WWW-Authenticate"].startswith("Bearer ")
    assert testapp.post("/v2/alice/app/blobs/uploads/", status=401).json["errors"][0]["code"] == "UNAUTHORIZED"
    assert testapp.get("/v2/_catalog", status=401)


def test_pages_send_the_security_headers_and_the_registry_api_does_not_need_them(testapp):
    for path in ("/", "/login", "/nothing-here"):
        headers = testapp.get(path, expect_errors=True).headers
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
    assert "Content-Security-Policy" not in testapp.get("/v2/", status=401).headers
    assert "<script" not in testapp.get("/login").text


@pytest.mark.parametrize(
    "target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "/\t/evil.example", "javascript:alert(1)"]
)
def test_next_never_leads_to_another_site(testapp, user, target):
    assert log_in(testapp, *user, next_path=target).headers["Location"] == "http://localhost/"


def test_next_leads_back_to_a_local_page(testapp, user):
    login_page = testapp.get("/login?next=/repositories%3Fpage%3D2")
    assert 'value="/repositories?page=2"' in login_page.text
    assert log_in(testapp, *user, next_path="/repositories?page=2").headers["Location"].endswith("/repositories?page=2")


def test_the_cookie_is_httponly_samesite_lax_and_secure_behind_https(components, user):
    app = webtest.TestApp(make_app(components))
    token = csrf_token(app.get("/login"))
    cookie = app.post("/login", {"username": "alice", "password": "correct horse battery", "csrf_token": token})
    header = cookie.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Lax" in header and "secure" not in header.lower()
    components.settings = dataclasses.replace(components.settings, public_url="https://registry.example.com")
    secure = webtest.TestApp(make_app(components)).get("/login").headers["Set-Cookie"]
    assert "secure" in secure.lower() and "HttpOnly" in secure


def test_two_app_processes_on_one_database_share_sessions(testapp, user, settings):
    log_in(testapp, *user)
    other_components = build_components(settings)
    try:
        other = webtest.TestApp(make_app(other_components))
        other.set_cookie(COOKIE_NAME, session_cookie(testapp))
        assert logged_in_as(other) == "alice"
        other.post("/logout", {"csrf_token": page_csrf_token(other)}, status=303)
    finally:
        other_components.engine.dispose()
    assert logged_in_as(testapp) is None


def test_the_home_page_for_visitors_members_and_a_new_installation(testapp, make_user):
    assert "no accounts yet" in testapp.get("/").text.replace("There are no accounts yet", "no accounts yet")
    make_user("alice", "correct horse battery", admin=True)
    anonymous = testapp.get("/").text
    assert "setup?code" not in anonymous and "Log in" in anonymous
    log_in(testapp, "alice", "correct horse battery")
    home = testapp.get("/").text
    assert "Welcome, alice" in home and "Log out" in home and "/invites" in home and "alice/my-image" in home
