"""/namespaces/<ns>/robots: namespace admins make robot accounts (`ns+name`, the secret shown once) that log in to
/v2/ and the token endpoint with their secret, push into their namespace only, and stop when disabled, deleted, or
when the user whose namespace they belong to is disabled — while a team's robots outlive the person who made them."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import jwt
import sqlalchemy as sa
import transaction

from stevedore.adapters.sql.accounts import SqlAccountStore
from stevedore.adapters.sql.engine import join_transaction
from stevedore.adapters.sql.namespaces import SqlNamespaceStore
from stevedore.adapters.sql.tables import accounts
from stevedore.domain.accounts import AccountService
from stevedore.domain.namespaces import NamespaceService, Right
from tests.fakes import PlainPasswordHasher
from tests.integration.conftest import count_rows
from tests.integration.protocol.helpers import basic, bearer, error_codes, parse_challenge, push_image
from tests.integration.web.helpers import csrf_token, log_in

PASSWORD = "a fine password"
SECRET = re.compile(r'id="robot-secret" class="copy" value="([^"]+)"')


def create(app, namespace, status=200, **fields):
    token = csrf_token(app.get(f"/namespaces/{namespace}/robots"))
    form = {"name": "ci", "scope": "push", "expires_in_days": "", **fields, "csrf_token": token}
    return app.post(f"/namespaces/{namespace}/robots", form, status=status)


def secret_of(page) -> str:
    found = SECRET.search(page.text)
    assert found, "the page shows no new robot"
    return found.group(1)


def act(app, namespace, robot, action, status=303):
    token = csrf_token(app.get(f"/namespaces/{namespace}/robots"))
    return app.post(f"/namespaces/{namespace}/robots/{robot}/{action}", {"csrf_token": token}, status=status)


def in_transaction(components, work):
    session = components.write_sessions()
    with transaction.manager:
        join_transaction(session)
        work(session)
    session.close()


def set_active(components, username, active):
    in_transaction(
        components,
        lambda s: AccountService(SqlAccountStore(s), PlainPasswordHasher(), components.clock).set_active(
            username, active
        ),
    )


def make_team(components, admin):
    def work(session):
        service = NamespaceService(SqlNamespaceStore(session), SqlAccountStore(session), components.clock)
        service.create("team")
        service.add_member("team", admin, Right.ADMIN)

    in_transaction(components, work)


def token_for(app, credentials, scope):
    service = parse_challenge(app.get("/v2/", status=401).headers["WWW-Authenticate"])[1]["service"]
    body = app.get(f"/v2/token?{urlencode({'service': service, 'scope': scope})}", headers=credentials).json
    return body["token"]


def test_anonymous_visitors_are_sent_to_log_in(testapp):
    assert "/login" in testapp.get("/namespaces/ada/robots", status=303).headers["Location"]


def test_a_robot_is_made_shown_once_and_pushes_into_its_namespace_only(testapp, make_user, db):
    make_user("ada", PASSWORD)
    log_in(testapp, "ada", PASSWORD)
    page = create(testapp, "ada", name="ci", scope="push", expires_in_days="30")
    secret = secret_of(page)
    assert "docker login -u ada+ci --password-stdin localhost:80" in page.text
    listed = testapp.get("/namespaces/ada/robots")
    assert secret not in listed.text and "ada+ci" in listed.text and ">active<" in listed.text
    row = db.execute(sa.select(accounts).where(accounts.c.username == "ada+ci")).one()
    assert not row.is_admin and row.email is None and secret not in row.password_hash

    robot = basic("ada+ci", secret)
    push_image(testapp, robot, "ada/app", "v1", seed="robot")
    testapp.get("/v2/ada/app/manifests/v1", headers=robot, status=200)
    refused = testapp.post("/v2/other/app/blobs/uploads/", headers=robot, status=403)
    assert error_codes(refused) == ["DENIED"]
    # The token endpoint grants it push in its namespace, pull elsewhere, and never a claim of a free namespace.
    token = token_for(testapp, robot, "repository:free/app:pull,push")
    assert "push" not in str(jwt.decode(token, options={"verify_signature": False})["access"])
    testapp.post("/v2/free/app/blobs/uploads/", headers=bearer(token), status=403)
    testapp.post("/v2/ada/app/blobs/uploads/", headers=bearer(token_for(testapp, robot, "repository:ada/app:push")),
                 status=202)  # fmt: skip


def test_a_pull_robot_cannot_push_even_in_its_namespace(testapp, make_user):
    make_user("ada", PASSWORD)
    log_in(testapp, "ada", PASSWORD)
    robot = basic("ada+reader", secret_of(create(testapp, "ada", name="reader", scope="pull")))
    testapp.get("/v2/", headers=robot, status=200)
    testapp.post("/v2/ada/app/blobs/uploads/", headers=robot, status=403)


def test_a_robot_has_no_password_login(testapp, make_user):
    make_user("ada", PASSWORD)
    log_in(testapp, "ada", PASSWORD)
    secret = secret_of(create(testapp, "ada"))
    other = type(testapp)(testapp.app)
    form = {"username": "ada+ci", "password": secret, "csrf_token": csrf_token(other.get("/login"))}
    page = other.post("/login", form, status=(400, 401, 403))
    assert 'role="alert"' in page.text
    other.get("/tokens", status=303)  # not logged in
    testapp.get("/v2/", headers=basic("ada+ci", "any password at all"), status=401)
    testapp.get("/v2/", headers=basic("ada+cx", secret), status=401)  # another login with its secret


def test_only_namespace_admins_see_and_make_robots(testapp, make_user, components, db):
    make_user("ada", PASSWORD)
    make_user("paula", PASSWORD)
    make_team(components, "ada")
    in_transaction(
        components,
        lambda s: NamespaceService(SqlNamespaceStore(s), SqlAccountStore(s), components.clock).add_member(
            "team", "paula", Right.PUSH
        ),
    )
    log_in(testapp, "paula", PASSWORD)
    testapp.get("/namespaces/team/robots", status=403)
    testapp.get("/namespaces/ada/robots", status=403)
    token = csrf_token(testapp.get("/"))
    testapp.post("/namespaces/team/robots", {"name": "ci", "scope": "push", "csrf_token": token}, status=403)
    testapp.get("/namespaces/nowhere/robots", status=403)
    testapp.get("/namespaces/Not%20A%20Name/robots", status=400)
    assert count_rows(db, accounts) == 2


def test_bad_forms_and_posts_without_csrf_make_nothing(testapp, make_user, db):
    make_user("ada", PASSWORD)
    log_in(testapp, "ada", PASSWORD)
    for fields in ({"name": ""}, {"name": "<script>"}, {"scope": "admin"}, {"expires_in_days": "soon"},
                   {"expires_in_days": "0"}):  # fmt: skip
        page = create(testapp, "ada", status=400, **fields)
        assert 'role="alert"' in page.text and not SECRET.search(page.text) and "<script>" not in page.text
    testapp.post("/namespaces/ada/robots", {"name": "ci", "scope": "push"}, status=400)
    testapp.post("/namespaces/ada/robots", {"name": "ci", "scope": "push", "csrf_token": "stale"}, status=400)
    assert count_rows(db, accounts) == 1
    secret_of(create(testapp, "ada"))
    page = create(testapp, "ada", status=400)  # the same login again
    assert "exists already" in page.text
    testapp.post("/namespaces/ada/robots/ci/delete", {"csrf_token": "stale"}, status=400)
    assert count_rows(db, accounts) == 2


def test_disable_enable_and_delete_from_the_page(testapp, make_user, db):
    make_user("ada", PASSWORD)
    log_in(testapp, "ada", PASSWORD)
    robot = basic("ada+ci", secret_of(create(testapp, "ada")))
    bearer_token = bearer(token_for(testapp, robot, "repository:ada/app:pull"))
    testapp.get("/v2/", headers=robot, status=200)
    act(testapp, "ada", "ci", "disable")
    assert "is disabled" in testapp.get("/namespaces/ada/robots").text
    testapp.get("/v2/", headers=robot, status=401)
    testapp.get("/v2/", headers=bearer_token, status=401)  # tokens issued before end too
    act(testapp, "ada", "ci", "enable")
    testapp.get("/v2/", headers=robot, status=200)
    act(testapp, "ada", "ci", "delete")
    testapp.get("/v2/", headers=robot, status=401)
    after = testapp.get("/namespaces/ada/robots").text
    assert "is deleted" in after and "No robots yet." in after
    act(testapp, "ada", "ci", "delete")
    assert "no robot ada+ci" in testapp.get("/namespaces/ada/robots").text.lower()
    act(testapp, "ada", "ci", "explode", status=404)


def test_a_disabled_users_robots_stop_and_a_teams_robots_outlive_their_maker(testapp, make_user, components):
    make_user("ada", PASSWORD)
    make_team(components, "ada")
    log_in(testapp, "ada", PASSWORD)
    own = basic("ada+ci", secret_of(create(testapp, "ada")))
    teams = basic("team+ci", secret_of(create(testapp, "team")))
    own_token = bearer(token_for(testapp, own, "repository:ada/app:pull"))
    set_active(components, "ada", False)
    testapp.get("/v2/", headers=own, status=401)
    testapp.get("/v2/", headers=own_token, status=401)
    testapp.get("/v2/", headers=teams, status=200)
    push_image(testapp, teams, "team/app", "v1", seed="team robot")
    set_active(components, "ada", True)
    testapp.get("/v2/", headers=own, status=200)


def test_creation_and_changes_are_in_the_audit_log(testapp, make_user):
    make_user("boss", PASSWORD, admin=True)
    log_in(testapp, "boss", PASSWORD)
    create(testapp, "boss")
    act(testapp, "boss", "ci", "disable")
    act(testapp, "boss", "ci", "delete")
    audit = testapp.get("/audit").text
    for action in ("robot_created", "robot_disabled", "robot_revoked"):
        assert action in audit


def test_a_robots_docker_login_refresh_ends_with_its_users_account(testapp, make_user, components):
    make_user("ada", PASSWORD)
    log_in(testapp, "ada", PASSWORD)
    secret = secret_of(create(testapp, "ada"))
    service = parse_challenge(testapp.get("/v2/", status=401).headers["WWW-Authenticate"])[1]["service"]
    login = {"grant_type": "password", "username": "ada+ci", "password": secret, "service": service,
             "access_type": "offline", "client_id": "docker"}  # fmt: skip
    refresh = testapp.post("/v2/token", login).json["refresh_token"]
    again = {"grant_type": "refresh_token", "refresh_token": refresh, "service": service, "client_id": "docker"}
    testapp.post("/v2/token", again, status=200)
    set_active(components, "ada", False)
    testapp.post("/v2/token", again, status=401)


def test_deleting_a_user_deletes_the_robots_of_its_namespace_and_a_later_ada_inherits_nothing(
    testapp, make_user, components, db
):
    make_user("ada", PASSWORD)
    make_team(components, "ada")
    log_in(testapp, "ada", PASSWORD)
    own = basic("ada+ci", secret_of(create(testapp, "ada")))
    teams = basic("team+ci", secret_of(create(testapp, "team")))

    def delete(session):
        AccountService(
            SqlAccountStore(session), PlainPasswordHasher(), components.clock, namespaces=SqlNamespaceStore(session)
        ).delete_account("ada")

    in_transaction(components, delete)
    testapp.get("/v2/", headers=own, status=401)
    push_image(testapp, teams, "team/app", "v1", seed="outlives its maker")
    names = set(db.execute(sa.select(accounts.c.username)).scalars())
    assert names == {"team+ci"}
