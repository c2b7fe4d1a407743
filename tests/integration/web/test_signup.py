"""/users/sign_up?invite=CODE: an open invite's holder creates an account and is logged in; every other code gets the
same page, and bad input gets the form again with nothing created."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from stevedore.adapters.sql.tables import accounts, invites
from stevedore.web.ui.signup import INVITE_GONE
from tests.fakes import FixedClock, InMemoryMailer
from tests.integration.conftest import count_rows
from tests.integration.web.helpers import csrf_token, log_in, page_csrf_token, session_cookie

ADMIN = ("ada", "the admin password")
FORM = {"username": "bob", "email": "bob@example.com", "password": "bob's long password"}
GONE = "This invite link does not work"


@pytest.fixture
def admin(make_user):
    make_user(*ADMIN, admin=True, email="ada@example.com")


def make_invite(app, email="") -> str:
    """An invite made by the administrator on the invites page; the code from the link the page shows once."""
    log_in(app, *ADMIN)
    token = csrf_token(app.get("/invites"))
    page = app.post("/invites", {"email": email, "csrf_token": token}, status=200)
    link = re.search(r'id="invite-link" class="copy" value="([^"]+)"', page.text).group(1).replace("&amp;", "&")
    app.reset()  # the administrator leaves; the invited person comes with no session
    return parse_qs(urlsplit(link).query)["invite"][0]


def sign_up(app, code, status, **changes):
    token = page_csrf_token(app)
    form = {**FORM, "password_again": FORM["password"], "invite": code, "csrf_token": token}
    form.update(changes)
    return app.post("/users/sign_up", form, status=status)


def account_names(db) -> set[str]:
    db.rollback()
    return set(db.execute(sa.select(accounts.c.username)).scalars())


def test_the_whole_flow_from_a_mailed_invite_to_a_logged_in_account(testapp, admin, components, db):
    mailer = InMemoryMailer()
    components.mailer = mailer
    components.settings = dataclasses.replace(components.settings, public_url="http://registry.example")
    make_invite(testapp, "bob@example.com")
    ((to, _subject, body),) = mailer.sent
    link = next(word for word in body.split() if "/users/sign_up?invite=" in word)
    assert to == "bob@example.com" and link.startswith("http://registry.example/users/sign_up?invite=")
    path = link.removeprefix("http://registry.example")

    form = testapp.get(path, status=200)
    assert 'value="bob@example.com"' in form.text and 'for="password_again"' in form.text
    code = parse_qs(urlsplit(link).query)["invite"][0]
    before = session_cookie(testapp)
    done = testapp.post(
        "/users/sign_up",
        {**FORM, "password_again": FORM["password"], "invite": code, "csrf_token": csrf_token(form)},
        status=303,
    )
    assert done.location.endswith("/")
    assert session_cookie(testapp) != before  # a fresh session on sign-up, as on login
    assert "Welcome, bob" in testapp.get("/").text
    row = db.execute(sa.select(accounts).where(accounts.c.username == "bob")).one()
    assert (row.email, row.is_admin, row.is_active) == ("bob@example.com", False, True)
    used = db.execute(sa.select(invites)).one()
    assert used.used_by == row.id and used.used_at is not None

    testapp.reset()
    assert GONE in testapp.get(path, status=404).text  # single use
    sign_up(testapp, code, 404, username="carol", email="carol@example.com")
    assert account_names(db) == {"ada", "bob"}
    log_in(testapp, *ADMIN)
    assert "used</span> by <strong>bob</strong>" in testapp.get("/invites").text


@pytest.mark.parametrize(
    "code",
    ["", "forged", "A" * 32, "x" * 5000, "<script>alert(1)</script>"],
    ids=["empty", "forged", "shape", "long", "script"],
)
def test_forged_codes_get_the_same_page_and_change_nothing(testapp, admin, db, code):
    page = testapp.get("/users/sign_up", {"invite": code}, status=404)
    assert INVITE_GONE in page.text.replace("&#39;", "'") and "<script>alert" not in page.text
    sign_up(testapp, code, 404)
    assert account_names(db) == {"ada"}


def test_used_expired_and_revoked_codes_get_the_one_same_page(testapp, admin, components, db):
    clock = FixedClock(datetime.now(UTC))
    components.clock = clock
    used, revoked, expiring = make_invite(testapp), make_invite(testapp), make_invite(testapp)
    sign_up(testapp, used, 303)
    testapp.reset()
    invite_ids = dict(db.execute(sa.select(invites.c.id, invites.c.used_at)).all())
    revoked_id = sorted(i for i, at in invite_ids.items() if at is None)[0]
    log_in(testapp, *ADMIN)
    testapp.post(f"/invites/{revoked_id}/revoke", {"csrf_token": page_csrf_token(testapp)}, status=303)
    testapp.reset()
    clock.advance(days=5, seconds=1)
    pages = [testapp.get("/users/sign_up", {"invite": code}, status=404).text for code in (used, revoked, expiring)]
    pages.append(testapp.get("/users/sign_up", {"invite": "forged"}, status=404).text)
    bodies = {p.split('<main id="content">')[1] for p in pages}
    assert len(bodies) == 1 and GONE in bodies.pop()
    for code in (used, revoked, expiring):
        sign_up(testapp, code, 404, username="carol", email="carol@example.com")
    assert account_names(db) == {"ada", "bob"}


def test_an_invite_still_works_just_before_it_expires(testapp, admin, components, db):
    clock = FixedClock(datetime.now(UTC))
    components.clock = clock
    code = make_invite(testapp)
    clock.advance(days=4, hours=23)
    sign_up(testapp, code, 303)
    assert "bob" in account_names(db)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"password_again": "another long password"}, "The two passwords differ"),
        ({"password": "short", "password_again": "short"}, "at least 8 characters"),
        ({"password": "aaaaaaaaaaaa", "password_again": "aaaaaaaaaaaa"}, "must not repeat"),
        ({"password": "b" * 40 + "é" * 20, "password_again": "b" * 40 + "é" * 20}, "at most 72 bytes"),
        ({"username": "Bob"}, "User names are lowercase"),
        ({"username": "not valid!"}, "User names are 1 to 64 characters"),
        ({"username": "b" * 65}, "The user name is too long"),
        ({"username": "b" * 100_000}, "The user name is too long"),
        ({"username": "library"}, "is reserved"),
        ({"username": "admin"}, "is reserved"),
        ({"username": "ada"}, "already exists"),
        ({"email": "ADA@Example.com"}, "already exists"),
        ({"email": "not an address"}, "Invalid e-mail address"),
        ({"email": ""}, "Give an e-mail address"),
        ({"email": "b" * 400 + "@example.com"}, "The e-mail address is too long"),
    ],
)
def test_bad_input_shows_the_form_again_and_creates_nothing(testapp, admin, db, changes, message):
    code = make_invite(testapp)
    page = sign_up(testapp, code, 400, **changes)
    assert message in page.text.replace("&#39;", "'")
    assert 'name="invite" value="' + code + '"' in page.text  # the form keeps the code
    assert len(page.text) < 20_000  # an over-long field is not echoed back whole
    assert account_names(db) == {"ada"}
    db.rollback()
    assert db.execute(sa.select(invites.c.used_at)).scalar_one() is None
    sign_up(testapp, code, 303)  # the invite still works
    assert account_names(db) == {"ada", "bob"}


def test_a_name_taken_in_another_case_is_refused(testapp, admin, make_user, db):
    make_user("carol", "carol's long password", email="Carol@Example.com")
    code = make_invite(testapp)
    assert "already exists" in sign_up(testapp, code, 400, username="carol", email="new@example.com").text
    assert "already exists" in sign_up(testapp, code, 400, email="carol@EXAMPLE.com").text
    assert account_names(db) == {"ada", "carol"}


def test_a_user_name_with_script_is_shown_escaped(testapp, admin, db):
    code = make_invite(testapp)
    page = sign_up(testapp, code, 400, username="<script>alert(1)</script>", email='"><script>x</script>@a.example')
    assert "<script>" not in page.text.split('<main id="content">')[1]
    assert 'value="&lt;script&gt;alert(1)&lt;/script&gt;"' in page.text
    assert account_names(db) == {"ada"}


def test_signing_up_without_the_csrf_token_creates_nothing(testapp, admin, db):
    code = make_invite(testapp)
    form = {**FORM, "password_again": FORM["password"], "invite": code}
    assert "nothing was changed" in testapp.post("/users/sign_up", form, status=400).text
    testapp.post("/users/sign_up", {**form, "csrf_token": "stale"}, status=400)
    assert account_names(db) == {"ada"}
    db.rollback()
    assert db.execute(sa.select(invites.c.used_at)).scalar_one() is None


def test_the_invite_without_an_address_leaves_the_email_field_empty(testapp, admin, db):
    code = make_invite(testapp)
    page = testapp.get("/users/sign_up", {"invite": code}, status=200)
    assert 'id="email" name="email" type="email" value=""' in page.text
    assert count_rows(db, accounts) == 1
