"""/tokens: a logged-in person makes a token (the secret shown once), lists and revokes their own, never another's;
every post needs the CSRF token."""

from __future__ import annotations

import re

import sqlalchemy as sa

from stevedore.adapters.sql.tables_access_tokens import access_tokens
from tests.integration.conftest import count_rows
from tests.integration.protocol.helpers import basic
from tests.integration.web.helpers import csrf_token, log_in

PASSWORD = "a fine password"
SECRET = re.compile(r'id="token-secret" class="copy" value="([^"]+)"')


def create(app, status=200, **fields):
    token = csrf_token(app.get("/tokens"))
    form = {"name": "ci", "scope": "push", "namespaces": "", "expires_in_days": "", **fields, "csrf_token": token}
    return app.post("/tokens", form, status=status)


def shown_secret(page) -> str:
    found = SECRET.search(page.text)
    assert found, "the page shows no new token"
    return found.group(1)


def test_anonymous_visitors_are_sent_to_log_in(testapp):
    response = testapp.get("/tokens", status=303)
    assert "/login" in response.headers["Location"]


def test_a_token_is_made_shown_once_and_works_as_the_password(testapp, make_user, db):
    make_user("ada", PASSWORD)
    log_in(testapp, "ada", PASSWORD)
    page = create(testapp, name="CI <b>web</b>", scope="pull", namespaces="ada, team", expires_in_days="30")
    secret = shown_secret(page)
    assert secret.startswith("stv_")
    assert "docker login -u ada --password-stdin localhost:80" in page.text
    assert "CI &lt;b&gt;web&lt;/b&gt;" in page.text and "<b>web</b>" not in page.text
    row = db.execute(sa.select(access_tokens)).one()
    assert row.scope == "pull" and row.namespaces == "ada team" and row.expires_at is not None
    assert secret not in row.secret_hash
    listed = testapp.get("/tokens")
    assert secret not in listed.text and "ada, team" in listed.text and ">active<" in listed.text
    testapp.get("/v2/", headers=basic("ada", secret), status=200)


def test_a_bad_form_is_shown_again_and_makes_nothing(testapp, make_user, db):
    make_user("ada", PASSWORD)
    log_in(testapp, "ada", PASSWORD)
    for fields in ({"name": ""}, {"scope": "admin"}, {"expires_in_days": "soon"}, {"namespaces": "Not/A Name"}):
        page = create(testapp, status=400, **fields)
        assert 'role="alert"' in page.text and not SECRET.search(page.text)
    assert count_rows(db, access_tokens) == 0


def test_a_post_without_the_csrf_token_changes_nothing(testapp, make_user, db):
    make_user("ada", PASSWORD)
    log_in(testapp, "ada", PASSWORD)
    testapp.post("/tokens", {"name": "ci", "scope": "push"}, status=400)
    assert count_rows(db, access_tokens) == 0
    create(testapp)
    db.rollback()
    token_id = db.execute(sa.select(access_tokens.c.id)).scalar_one()
    testapp.post(f"/tokens/{token_id}/revoke", {}, status=400)
    testapp.post(f"/tokens/{token_id}/revoke", {"csrf_token": "stale"}, status=400)
    db.rollback()
    assert db.execute(sa.select(access_tokens.c.revoked_at)).scalar_one() is None


def test_a_revoked_token_stops_working(testapp, make_user, db):
    make_user("ada", PASSWORD)
    log_in(testapp, "ada", PASSWORD)
    secret = shown_secret(create(testapp))
    token_id = db.execute(sa.select(access_tokens.c.id)).scalar_one()
    page = testapp.post(f"/tokens/{token_id}/revoke", {"csrf_token": csrf_token(testapp.get("/tokens"))}, status=303)
    listed = page.follow()
    assert "is revoked" in listed.text and ">revoked<" in listed.text
    testapp.get("/v2/", headers=basic("ada", secret), status=401)


def test_nobody_revokes_another_users_token(testapp, make_user, db):
    make_user("ada", PASSWORD)
    make_user("bob", PASSWORD)
    log_in(testapp, "ada", PASSWORD)
    secret = shown_secret(create(testapp))
    token_id = db.execute(sa.select(access_tokens.c.id)).scalar_one()
    testapp.post("/logout", {"csrf_token": csrf_token(testapp.get("/"))}, status=303)
    log_in(testapp, "bob", PASSWORD)
    assert "ci" not in testapp.get("/tokens").text.split("Your tokens</h2>")[1]
    page = testapp.post(f"/tokens/{token_id}/revoke", {"csrf_token": csrf_token(testapp.get("/tokens"))}, status=303)
    assert f"You have no token {token_id}" in page.follow().text
    testapp.post("/tokens/99999999999999/revoke", {"csrf_token": csrf_token(testapp.get("/tokens"))}, status=303)
    db.rollback()
    assert db.execute(sa.select(access_tokens.c.revoked_at)).scalar_one() is None
    testapp.get("/v2/", headers=basic("ada", secret), status=200)


def test_making_and_revoking_a_token_is_in_the_audit_log(testapp, make_user, db):
    from stevedore.adapters.sql.tables_audit import audit_events

    make_user("ada", PASSWORD)
    log_in(testapp, "ada", PASSWORD)
    create(testapp, name="deploy", scope="pull")
    token_id = db.execute(sa.select(access_tokens.c.id)).scalar_one()
    testapp.post(f"/tokens/{token_id}/revoke", {"csrf_token": csrf_token(testapp.get("/tokens"))}, status=303)
    db.rollback()
    query = sa.select(audit_events.c.action, audit_events.c.actor_name, audit_events.c.target, audit_events.c.detail)
    rows = db.execute(query.where(audit_events.c.action.like("token_%")).order_by(audit_events.c.id)).all()
    assert [tuple(row) for row in rows] == [
        ("token_created", "ada", "deploy", "pull"),
        ("token_revoked", "ada", "deploy", None),
    ]
