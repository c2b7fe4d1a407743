"""What the audit log records, on SQLite and PostgreSQL: pushes and deletes over /v2/, deletions from the pages,
logins, failed logins and logouts, sign-up by invite, invites; each with its actor, target and client address."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
import webtest

from stevedore.adapters.sql.tables_audit import audit_events
from tests.integration.protocol.helpers import basic, push_blob, push_image
from tests.integration.web.helpers import csrf_token, log_in, setup_code

ALICE = ("alice", "correct horse battery")
ADMIN = ("ada", "the admin password")
ADDRESS = "203.0.113.7"


@pytest.fixture
def testapp(app):
    """Every request from one client address, as waitress would set it."""
    return webtest.TestApp(app, extra_environ={"REMOTE_ADDR": ADDRESS})


@pytest.fixture
def alice(make_user):
    account = make_user(*ALICE)
    return account, basic(*ALICE)


def events(db, **where):
    db.rollback()
    query = sa.select(audit_events).order_by(audit_events.c.id)
    for column, value in where.items():
        query = query.where(audit_events.c[column] == value)
    return db.execute(query).all()


def test_a_push_over_v2_is_recorded_with_the_pusher_the_target_and_the_address(testapp, alice, db):
    account, auth = alice
    pushed = push_image(testapp, auth, "alice/app", "v1")
    (event,) = events(db, action="push")
    assert (event.actor_id, event.actor_name, event.address) == (account.id, "alice", ADDRESS)
    assert (event.namespace, event.target) == ("alice", f"alice/app@{pushed.digest}")
    assert event.detail == "tags v1"
    assert event.at is not None


def test_a_refused_push_records_nothing(testapp, alice, make_user, db):
    _account, auth = alice
    push_image(testapp, auth, "alice/app", "v1")
    make_user("bob", "another good password")
    bob = basic("bob", "another good password")
    testapp.put("/v2/alice/app/manifests/v2", params=b"{}", headers=bob, content_type="application/json", status=403)
    assert [e.actor_name for e in events(db, action="push")] == ["alice"]


def test_deletes_over_v2_are_recorded_by_kind(testapp, alice, db):
    _account, auth = alice
    pushed = push_image(testapp, auth, "alice/app", "v1")
    push_image(testapp, auth, "alice/app", "v2", seed="two")
    testapp.delete("/v2/alice/app/manifests/v2", headers=auth, status=202)
    testapp.delete(f"/v2/alice/app/manifests/{pushed.digest}", headers=auth, status=202)
    blob = push_blob(testapp, auth, "alice/app", b"a lone blob")
    testapp.delete(f"/v2/alice/app/blobs/{blob}", headers=auth, status=202)
    recorded = [(e.action, e.target, e.actor_name, e.address) for e in events(db) if e.action != "push"]
    assert recorded == [
        ("delete_tag", "alice/app:v2", "alice", ADDRESS),
        ("delete_manifest", f"alice/app@{pushed.digest}", "alice", ADDRESS),
        ("delete_blob", f"alice/app@{blob}", "alice", ADDRESS),
    ]


def test_deletions_from_the_pages_are_recorded(testapp, alice, db):
    account, auth = alice
    push_image(testapp, auth, "alice/app", "v1")
    push_image(testapp, auth, "alice/app", "v2", seed="two")
    log_in(testapp, *ALICE)
    page = testapp.get("/r/alice/app", status=200)
    form = next(f for f in page.forms.values() if f.action.endswith("/tags/v1/delete"))
    form.submit(status=303)
    confirm = testapp.get("/r/alice/app/-/delete", status=200)
    testapp.post("/r/alice/app/-/delete", {"csrf_token": csrf_token(confirm), "confirm_name": "alice/app"}, status=303)
    (tag,) = events(db, action="delete_tag")
    assert (tag.actor_id, tag.actor_name, tag.address, tag.namespace, tag.target, tag.detail) == (
        account.id,
        "alice",
        ADDRESS,
        "alice",
        "alice/app:v1",
        "pages",
    )
    (repository,) = events(db, action="delete_repository")
    assert (repository.actor_name, repository.target, repository.namespace) == ("alice", "alice/app", "alice")


def test_a_refused_page_deletion_records_nothing(testapp, alice, db):
    _account, auth = alice
    push_image(testapp, auth, "alice/app", "v1")
    log_in(testapp, *ALICE)
    confirm = testapp.get("/r/alice/app/-/delete", status=200)
    testapp.post("/r/alice/app/-/delete", {"csrf_token": csrf_token(confirm), "confirm_name": "wrong"}, status=400)
    assert events(db, action="delete_repository") == []


def test_login_logout_and_failed_logins_on_the_page(testapp, alice, db):
    account, _auth = alice
    log_in(testapp, "alice", "not her password", status=400)
    log_in(testapp, "<script>nobody\nforged</script>", "whatever", status=400)
    log_in(testapp, *ALICE)
    home = testapp.get("/", status=200)
    testapp.post("/logout", {"csrf_token": csrf_token(home)}, status=303)
    recorded = [(e.action, e.actor_id, e.actor_name, e.address) for e in events(db)]
    assert recorded == [
        ("login_failed", account.id, "alice", ADDRESS),
        ("login_failed", None, "<script>nobody\nforged</script>", ADDRESS),  # stored raw, escaped when shown
        ("login", account.id, "alice", ADDRESS),
        ("logout", account.id, "alice", ADDRESS),
    ]


def test_invites_and_a_sign_up_are_recorded(testapp, make_user, db):
    admin = make_user(*ADMIN, admin=True, email="ada@example.com")
    log_in(testapp, *ADMIN)
    made = testapp.post("/invites", {"email": "", "csrf_token": csrf_token(testapp.get("/invites"))}, status=200)
    link = made.html.find(id="invite-link")["value"]
    code = link.split("invite=")[1]
    second = testapp.post("/invites", {"email": "", "csrf_token": csrf_token(made)}, status=200)
    form = next(f for f in second.forms.values() if f.action.endswith("/revoke"))
    form.submit(status=303)
    created = events(db, action="invite_created")
    assert [(e.actor_id, e.actor_name, e.address) for e in created] == [(admin.id, "ada", ADDRESS)] * 2
    (revoked,) = events(db, action="invite_revoked")
    assert revoked.actor_name == "ada" and revoked.detail.startswith("invite ")

    stranger = webtest.TestApp(testapp.app, extra_environ={"REMOTE_ADDR": "198.51.100.2"})
    page = stranger.get(f"/users/sign_up?invite={code}", status=200)
    stranger.post(
        "/users/sign_up",
        {
            "invite": code,
            "username": "carol",
            "email": "carol@example.com",
            "password": "a good long password",
            "password_again": "a good long password",
            "csrf_token": csrf_token(page),
        },
        status=303,
    )
    (signup,) = events(db, action="signup")
    assert (signup.actor_name, signup.target, signup.address) == ("carol", "carol", "198.51.100.2")
    assert signup.actor_id is not None


def test_the_setup_of_the_first_administrator_is_recorded(testapp, components, db):
    code = setup_code(components)
    page = testapp.get(f"/setup?code={code}", status=200)
    form = {
        "code": code,
        "username": "ada",
        "email": "ada@example.com",
        "password": "the admin password",
        "password_again": "the admin password",
        "csrf_token": csrf_token(page),
    }
    testapp.post("/setup", form, status=303)
    (setup,) = events(db, action="setup")
    assert (setup.actor_name, setup.target, setup.address) == ("ada", "ada", ADDRESS)
    assert setup.actor_id is not None


def test_refused_registry_credentials_are_recorded_as_failed_logins(testapp, alice, db):
    account, _auth = alice
    testapp.get("/v2/", headers=basic("alice", "not her password"), status=401)
    testapp.get("/v2/token?service=localhost", headers=basic("mallory", "guess"), status=401)
    testapp.get("/v2/", headers=basic(*ALICE), status=200)  # a good login on /v2/ is not an event
    recorded = [(e.action, e.actor_id, e.actor_name, e.detail, e.address) for e in events(db)]
    assert recorded == [
        ("login_failed", account.id, "alice", "registry", ADDRESS),
        ("login_failed", None, "mallory", "token endpoint", ADDRESS),
    ]


def test_a_failed_login_with_a_nul_in_the_name_is_recorded_not_a_500(testapp, alice, db):
    # The login page never sees it: no page form may hold a NUL (web/page_input.py), a 400 before any view.
    assert "NUL" in log_in(testapp, "ali\x00ce", "whatever", status=400).text
    testapp.get("/v2/", headers=basic("ali\x00ce", "whatever"), status=401)
    assert [e.action for e in events(db)] == ["login_failed"]
