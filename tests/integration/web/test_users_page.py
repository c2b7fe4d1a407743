"""/users and /users/NAME: administrators list people (robots left out), disable and enable them (a disabled user's
old session cookie opens nothing), make and unmake administrators (never the last active one), and make password
reset links (mailed, or shown once); every action a POST with the CSRF token, audited; others get a 403 page."""

from __future__ import annotations

import dataclasses
import email
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
import webtest

from stevedore.adapters.sql.tables import accounts, web_sessions
from stevedore.adapters.sql.tables_audit import audit_events
from stevedore.adapters.sql.tables_password_resets import password_resets
from stevedore.web.ui.session import COOKIE_NAME
from tests.fakes import InMemoryMailer
from tests.integration.conftest import count_rows
from tests.integration.protocol.helpers import basic, bearer
from tests.integration.web.helpers import PUBLIC_URL, csrf_token, log_in, mailing_settings, page_csrf_token

ADMIN = ("ada", "the admin password")
BOB = ("bob", "bob's good password")
LINK = re.compile(r'id="reset-link" class="copy" value="([^"]+)"')


@pytest.fixture
def mail_folder(tmp_path):
    return tmp_path / "mail"


@pytest.fixture
def settings(database_url, tmp_path, mail_folder):
    """Like the shared fixture, with a public URL and the embedded default's .eml folder."""
    return mailing_settings(database_url, tmp_path, mail_folder)


@pytest.fixture
def admin(testapp, make_user):
    make_user(*ADMIN, admin=True, email="ada@example.com")
    make_user(*BOB, email="bob@example.com")
    log_in(testapp, *ADMIN)
    return testapp


def act(app, username, action, status=303):
    token = csrf_token(app.get(f"/users/{username}"))
    return app.post(f"/users/{username}/{action}", {"csrf_token": token}, status=status)


def mails(folder: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes()) for p in sorted(folder.glob("*.eml"))]  # type: ignore[misc]


def account_row(db, name):
    db.rollback()
    return db.execute(sa.select(accounts).where(accounts.c.username == name)).one()


def audited(db, action):
    db.rollback()
    return db.execute(
        sa.select(audit_events.c.actor_name, audit_events.c.target).where(audit_events.c.action == action)
    ).all()


def test_the_list_shows_people_by_name_without_robots_and_filters(admin, make_user, components):
    with components.write_sessions() as session, session.begin():
        session.execute(
            sa.insert(accounts).values(
                username="team+ci", password_hash="x", is_admin=False, is_active=True, created_at=sa.func.now()
            )
        )
    page = admin.get("/users")
    assert page.text.index(">ada<") < page.text.index(">bob<") and "bob@example.com" in page.text
    assert "team+ci" not in page.text and ">admin<" in page.text and ">active<" in page.text
    filtered = admin.get("/users?q=BO")
    assert ">bob<" in filtered.text and ">ada<" not in filtered.text
    assert "No user name holds" in admin.get("/users?q=%25").text  # a LIKE wildcard is a plain character
    admin.get("/users?q=" + "x" * 65, status=400)


def test_the_list_is_paged_by_name(admin, make_user):
    for number in range(55):
        make_user(f"user{number:02d}", "a fine password")
    first = admin.get("/users")
    assert ">ada<" in first.text and ">user46<" in first.text and ">user48<" not in first.text
    more = first.click("More users")
    assert ">user48<" in more.text and ">user54<" in more.text and ">ada<" not in more.text
    assert "First users" in more.text and "More users" not in more.text


def test_disabling_ends_the_user_s_sessions_and_tokens_at_once_and_enabling_lets_them_log_in(app, admin, db):
    bobs = webtest.TestApp(app)
    log_in(bobs, *BOB)
    old_cookie = bobs.cookies[COOKIE_NAME]
    token = bobs.get("/v2/token", params={"service": "registry.example"}, headers=basic(*BOB)).json["token"]
    page = act(admin, "bob", "disable").follow()
    assert "bob is disabled" in page.text and "<dd>disabled</dd>" in page.text
    assert not account_row(db, "bob").is_active
    stale = webtest.TestApp(app)
    stale.set_cookie(COOKIE_NAME, old_cookie)
    assert stale.get("/tokens", status=303).location.endswith("/login?next=%2Ftokens")  # the old cookie opens nothing
    bobs.get("/v2/", headers=bearer(token), status=401)
    bobs.get("/v2/", headers=basic(*BOB), status=401)
    bob_id = account_row(db, "bob").id
    assert count_rows(db, web_sessions.select().where(web_sessions.c.account_id == bob_id).subquery()) == 0
    log_in(bobs, *BOB, status=400)
    assert "bob is enabled again" in act(admin, "bob", "enable").follow().text
    log_in(bobs, *BOB)
    bobs.get("/v2/", headers=bearer(token), status=401)  # enabling brings no old token back
    assert audited(db, "user_disabled") == [("ada", "bob")] and audited(db, "user_enabled") == [("ada", "bob")]


def test_making_and_unmaking_an_administrator(app, admin, db):
    assert "bob is an administrator now" in act(admin, "bob", "make-admin").follow().text
    assert account_row(db, "bob").is_admin
    bobs = webtest.TestApp(app)
    log_in(bobs, *BOB)
    bobs.get("/users", status=200)
    assert "bob is no longer an administrator" in act(admin, "bob", "unmake-admin").follow().text
    assert not account_row(db, "bob").is_admin
    assert "You may not see this page" in bobs.get("/users", status=403).text
    assert audited(db, "admin_granted") == [("ada", "bob")] and audited(db, "admin_revoked") == [("ada", "bob")]


def test_the_last_active_administrator_can_be_neither_disabled_nor_unmade(admin, db):
    for action in ("disable", "unmake-admin"):
        page = act(admin, "ada", action).follow()
        assert "The last active administrator, ada, cannot be" in page.text
    row = account_row(db, "ada")
    assert row.is_admin and row.is_active and row.token_generation == 0
    assert audited(db, "user_disabled") == [] and audited(db, "admin_revoked") == []
    admin.get("/users")  # still logged in


def test_an_administrator_may_step_down_while_another_remains(admin, db):
    act(admin, "bob", "make-admin")
    page = act(admin, "ada", "unmake-admin")
    assert page.location.endswith("/")  # these pages are no longer theirs
    admin.get("/users", status=403)
    assert not account_row(db, "ada").is_admin


def test_an_administrator_who_disables_themselves_is_logged_out(admin, db):
    act(admin, "bob", "make-admin")
    act(admin, "ada", "disable")
    assert admin.get("/users", status=303).location.endswith("/login?next=%2Fusers")


def test_a_reset_link_is_mailed_from_the_public_url_even_with_a_forged_host(admin, mail_folder, db):
    token = csrf_token(admin.get("/users/bob"))
    page = admin.post(
        "/users/bob/password-reset",
        {"csrf_token": token},
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example",
                 "Cookie": f"{COOKIE_NAME}={admin.cookies[COOKIE_NAME]}"},
        status=200,
    )  # fmt: skip
    assert "mailed to <strong>bob@example.com</strong>" in page.text and not LINK.search(page.text)
    (mail,) = mails(mail_folder)
    text = mail.get_payload(decode=True).decode()
    assert mail["To"] == "bob@example.com" and "evil.example" not in text
    assert f"{PUBLIC_URL}/password/reset?code=" in text and "ada, an administrator" in text
    assert audited(db, "password_reset_requested") == [("ada", "bob")]
    assert db.execute(sa.select(password_resets.c.created_by)).scalar_one() == account_row(db, "ada").id


def test_without_mail_the_reset_link_is_shown_to_the_administrator_once(admin, components, testapp, mail_folder):
    components.mailer = None
    assert "Mail is off" in admin.get("/users/bob").text
    page = act(admin, "bob", "password-reset", status=200)
    link = LINK.search(page.text).group(1)
    assert link.startswith(f"{PUBLIC_URL}/password/reset?code=") and "mail is off" in page.text
    assert link not in admin.get("/users/bob").text and mails(mail_folder) == []
    admin.get(link.replace(PUBLIC_URL, ""), status=200)


def test_without_a_public_url_the_admin_page_says_mails_need_one(admin, components):
    components.settings = dataclasses.replace(components.settings, public_url=None)
    assert "Mails need the registry's public URL" in admin.get("/users/bob").text
    page = act(admin, "bob", "password-reset", status=200)
    assert LINK.search(page.text).group(1).startswith("http://localhost/password/reset?code=")


def test_a_reset_mail_that_cannot_be_sent_keeps_no_link(admin, components, db):
    mailer = InMemoryMailer()
    mailer.fail_with = "the mail server said no"
    components.mailer = mailer
    page = act(admin, "bob", "password-reset", status=502)
    assert "could not be sent, so no link was made" in page.text
    assert count_rows(db, password_resets) == 0


def test_a_disabled_user_gets_no_reset_link(admin, db):
    act(admin, "bob", "disable")
    assert "enable it first" in admin.get("/users/bob").text
    assert "enable the account first" in act(admin, "bob", "password-reset", status=400).text
    assert count_rows(db, password_resets) == 0


def test_unknown_users_and_robots_have_no_page(admin, components):
    with components.write_sessions() as session, session.begin():
        session.execute(
            sa.insert(accounts).values(
                username="team+ci", password_hash="x", is_admin=False, is_active=True, created_at=sa.func.now()
            )
        )
    admin.get("/users/nobody", status=404)
    admin.get("/users/team+ci", status=404)
    admin.get("/users/" + "x" * 300, status=404)
    token = page_csrf_token(admin)
    admin.post("/users/nobody/disable", {"csrf_token": token}, status=404)
    admin.post("/users/team+ci/make-admin", {"csrf_token": token}, status=404)
    assert admin.get("/users/sign_up", status=404).text  # the sign-up page's path, not a user


def test_actions_without_or_with_a_stale_csrf_token_change_nothing(admin, db):
    for action in ("disable", "make-admin", "password-reset"):
        assert "nothing was changed" in admin.post(f"/users/bob/{action}", {}, status=400).text
        admin.post(f"/users/bob/{action}", {"csrf_token": "stale"}, status=400)
    row = account_row(db, "bob")
    assert row.is_active and not row.is_admin and count_rows(db, password_resets) == 0


def test_members_get_a_403_page_and_the_anonymous_the_login_page(testapp, make_user, db):
    make_user(*ADMIN, admin=True)
    make_user(*BOB)
    assert testapp.get("/users", status=303).location.endswith("/login?next=%2Fusers")
    assert testapp.get("/users/ada", status=303).location.endswith("/login?next=%2Fusers%2Fada")
    log_in(testapp, *BOB)
    assert "You may not see this page" in testapp.get("/users", status=403).text
    testapp.get("/users/ada", status=403)
    token = page_csrf_token(testapp)
    for action in ("disable", "unmake-admin", "make-admin", "password-reset"):
        testapp.post(f"/users/ada/{action}", {"csrf_token": token}, status=403)
    testapp.post("/users/bob/make-admin", {"csrf_token": token}, status=403)
    row = account_row(db, "ada")
    assert row.is_active and row.is_admin and not account_row(db, "bob").is_admin
    assert count_rows(db, password_resets) == 0
    assert "Users</a>" not in testapp.get("/").text
