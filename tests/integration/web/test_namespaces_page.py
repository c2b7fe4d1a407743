"""/namespaces and /namespaces/{namespace}: who sees which namespaces under the default and private models, the
counts and the filter, one query a page; administrators create and reassign namespaces; a namespace's admins add
members, change their rights and remove them; every refusal (not an admin, unknown user or namespace, bad right,
the owner, the last admin, a missing or stale CSRF token) shows a clear message and changes nothing; everything
changed is in the audit log; names are shown escaped."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa
import transaction

from stevedore.adapters.sql.accounts import SqlAccountStore
from stevedore.adapters.sql.engine import join_transaction
from stevedore.adapters.sql.namespaces import SqlNamespaceStore
from stevedore.adapters.sql.tables import accounts, namespace_members, namespaces
from stevedore.adapters.sql.tables_audit import audit_events
from stevedore.domain.namespaces import NamespaceService, Right
from tests.integration.conftest import count_rows
from tests.integration.protocol.helpers import basic, push_image
from tests.integration.web.helpers import csrf_token, log_in

PASSWORD = "a long enough password"


def administer(components, action, *args):
    session = components.write_sessions()
    with transaction.manager:
        join_transaction(session)
        service = NamespaceService(SqlNamespaceStore(session), SqlAccountStore(session), components.clock)
        getattr(service, action)(*args)
    session.close()


def rules(components, model):
    components.settings = dataclasses.replace(components.settings, access_model=model)


@pytest.fixture
def people(make_user, components):
    """ada administers `team`, pete pushes there, paula pulls; sam is a member of nothing; boss is an administrator."""
    for name in ("ada", "pete", "paula", "sam"):
        make_user(name, PASSWORD)
    make_user("boss", PASSWORD, admin=True)
    administer(components, "create", "team", "ada")
    administer(components, "add_member", "team", "pete", Right.PUSH)
    administer(components, "add_member", "team", "paula", Right.PULL)


def as_user(testapp, name):
    testapp.reset()  # a fresh session: the login page sends the logged-in away
    log_in(testapp, name, PASSWORD)
    return testapp


def table(page) -> list[list[str]]:
    found = page.html.find("table", class_="list")
    if found is None:
        return []
    return [[td.get_text(" ", strip=True) for td in tr.find_all("td")] for tr in found.find("tbody").find_all("tr")]


def listed(page) -> list[str]:
    return [row[0] for row in table(page)]


def members(db, namespace="team") -> dict[str, str]:
    db.rollback()
    rows = db.execute(
        sa.select(accounts.c.username, namespace_members.c.right)
        .join(namespaces, namespaces.c.id == namespace_members.c.namespace_id)
        .join(accounts, accounts.c.id == namespace_members.c.account_id)
        .where(namespaces.c.name == namespace)
    )
    return dict(rows.all())


def events(db, action=None):
    db.rollback()
    query = sa.select(audit_events).order_by(audit_events.c.id).where(audit_events.c.action != "login")
    if action is not None:
        query = query.where(audit_events.c.action == action)
    return [(e.action, e.actor_name, e.namespace, e.target, e.detail) for e in db.execute(query)]


def post_member(app, namespace="team", status=303, **fields):
    token = csrf_token(app.get(f"/namespaces/{namespace}"))
    return app.post(f"/namespaces/{namespace}/members", {**fields, "csrf_token": token}, status=status)


# --- the list --------------------------------------------------------------------------------------------------------


def test_the_anonymous_are_sent_to_log_in(testapp):
    for path in ("/namespaces", "/namespaces/team"):
        assert "/login" in testapp.get(path, status=303).headers["Location"]


def test_under_the_default_model_everyone_sees_every_namespace_with_its_counts(testapp, people):
    push_image(testapp, basic("ada", PASSWORD), "team/app", "v1")
    push_image(testapp, basic("ada", PASSWORD), "team/web", "v1", seed="web")
    push_image(testapp, basic("sam", PASSWORD), "sam/tool", "v1", seed="sam")
    page = as_user(testapp, "sam").get("/namespaces", status=200)
    rows = {row[0]: row[1:] for row in table(page)}
    assert rows["team"] == ["a team", "3", "2"]
    assert rows["sam"] == ["sam", "1", "1"]
    assert rows["ada"] == ["ada", "1", "0"]
    assert set(rows) == {"ada", "boss", "paula", "pete", "sam", "team"}
    assert "New namespace" not in page.text  # only administrators create
    assert listed(testapp.get("/namespaces?q=ea")) == ["team"]
    assert "No namespace you may see has" in testapp.get("/namespaces?q=nothing").text


def test_under_private_a_user_sees_only_their_own_and_those_they_are_a_member_of(testapp, components, people):
    rules(components, "private")
    assert listed(as_user(testapp, "sam").get("/namespaces")) == ["sam"]
    testapp.get("/namespaces/team", status=404)
    unknown = testapp.get("/namespaces/nowhere", status=404)
    hidden = testapp.get("/namespaces/team", status=404)
    assert "There is no namespace" in hidden.text and hidden.text.replace("team", "nowhere") == unknown.text
    testapp.post("/namespaces/team/members", {"username": "sam", "right": "admin", "csrf_token": csrf_token(
        testapp.get("/namespaces"))}, status=404)  # fmt: skip
    assert listed(as_user(testapp, "paula").get("/namespaces")) == ["paula", "team"]
    assert listed(as_user(testapp, "boss").get("/namespaces")) == ["ada", "boss", "paula", "pete", "sam", "team"]


def test_the_list_is_paged_in_one_query_a_page(testapp, components, people):
    for n in range(60):
        administer(components, "create", f"ns{n:02d}")
    statements = []
    sa.event.listen(components.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    as_user(testapp, "sam")
    statements.clear()
    first = testapp.get("/namespaces", status=200)
    about_namespaces = [s for s in statements if "namespace" in s.lower()]
    assert len(listed(first)) == 50 and listed(first)[0] == "ada"
    second = testapp.get(first.html.find("a", rel="next")["href"], status=200)
    assert listed(second) == [f"ns{n:02d}" for n in range(48, 60)] + ["paula", "pete", "sam", "team"]
    assert len(about_namespaces) == 1, about_namespaces


# --- creating --------------------------------------------------------------------------------------------------------


def test_an_administrator_creates_a_namespace_with_an_admin_and_it_is_audited(testapp, people, db):
    as_user(testapp, "boss")
    page = testapp.get("/namespaces")
    made = testapp.post("/namespaces", {"name": "web", "owner": "sam", "csrf_token": csrf_token(page)}, status=303)
    assert made.headers["Location"].endswith("/namespaces/web")
    shown = made.follow()
    assert "The namespace web is created, with sam as its admin." in shown.text
    assert members(db, "web") == {"sam": "admin"}
    assert events(db) == [
        ("namespace_created", "boss", "web", "web", "admin sam"),
        ("member_added", "boss", "web", "sam", "admin"),
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "team"}, "The namespace team exists already."),
        ({"name": "sam"}, "Sam is the namespace of the user sam: it exists already."),
        ({"name": "Bad <b>Name</b>"}, "Invalid namespace"),
        ({"name": "web", "owner": "nobody"}, "No user nobody."),
    ],
)
def test_a_bad_new_namespace_is_refused_with_a_message_and_nothing_made(testapp, people, db, fields, message):
    as_user(testapp, "boss")
    token = csrf_token(testapp.get("/namespaces"))
    page = testapp.post("/namespaces", {"owner": "", **fields, "csrf_token": token}, status=400)
    assert message in page.html.find("p", class_="alert").get_text()
    assert "<b>Name</b>" not in page.text
    assert count_rows(db, namespaces) == 1 and events(db) == []


def test_only_administrators_create_namespaces(testapp, people, db):
    as_user(testapp, "ada")
    refused = testapp.post("/namespaces", {"name": "web", "csrf_token": csrf_token(testapp.get("/namespaces"))},
                           status=403)  # fmt: skip
    assert "You may not see this page." in refused.text
    assert count_rows(db, namespaces) == 1


# --- members ---------------------------------------------------------------------------------------------------------


def test_the_namespace_page_shows_members_rights_and_repositories(testapp, people):
    push_image(testapp, basic("ada", PASSWORD), "team/app", "v1")
    page = as_user(testapp, "paula").get("/namespaces/team", status=200)
    assert table(page)[:3] == [["ada", "admin"], ["paula", "pull"], ["pete", "push"]]
    assert page.html.find("a", href="/r/team/app") is not None
    assert "Add a member" not in page.text and "Reassign" not in page.text
    assert page.html.find("a", href="/namespaces/team/robots") is None
    own = testapp.get("/namespaces/paula")
    assert "The namespace of the user" in own.text and table(own)[0][:2] == ["paula", "admin (owner)"]
    assert own.html.find("a", href="/namespaces/paula/robots") is not None


def test_a_namespace_admin_adds_changes_and_removes_members_audited(testapp, people, db):
    as_user(testapp, "ada")
    page = testapp.get("/namespaces/team")
    assert page.html.find("a", href="/namespaces/team/robots") is not None
    assert page.html.find("label", attrs={"for": "member-username"}) is not None
    added = post_member(testapp, username="sam", right="push").follow()
    assert "sam now has push on team." in added.text
    changed = post_member(testapp, username="sam", right="admin").follow()
    assert "sam now has admin on team (was push)." in changed.text
    assert "sam already has admin" in post_member(testapp, username="sam", right="admin").follow().text
    assert members(db)["sam"] == "admin"
    token = csrf_token(testapp.get("/namespaces/team"))
    removed = testapp.post("/namespaces/team/members/sam/remove", {"csrf_token": token}, status=303).follow()
    assert "sam is no longer a member of team." in removed.text
    assert "sam" not in members(db)
    assert events(db) == [
        ("member_added", "ada", "team", "sam", "push"),
        ("member_added", "ada", "team", "sam", "admin (was push)"),
        ("member_removed", "ada", "team", "sam", "admin"),
    ]


def test_an_owner_manages_the_members_of_their_personal_namespace(testapp, people, db):
    as_user(testapp, "sam")
    post_member(testapp, "sam", username="pete", right="push")
    assert members(db, "sam") == {"pete": "push"}
    push_image(testapp, basic("pete", PASSWORD), "sam/app", "v1")


@pytest.mark.parametrize("who", ["paula", "pete", "sam"])
def test_members_who_are_not_its_admins_are_refused_with_403(testapp, people, db, who):
    as_user(testapp, who)
    before = members(db)
    refused = post_member(testapp, username=who, right="admin", status=403)
    assert "Only the admins of team and administrators may change its members" in refused.text
    token = csrf_token(testapp.get("/namespaces/team"))
    testapp.post("/namespaces/team/members/ada/remove", {"csrf_token": token}, status=403)
    testapp.post("/namespaces/team/reassign", {"username": who, "csrf_token": token}, status=403)
    assert members(db) == before and events(db) == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"username": "nobody", "right": "pull"}, "No user nobody."),
        ({"username": "sam", "right": "owner"}, "Unknown right 'owner': pull, push or admin."),
        ({"username": "sam", "right": ""}, "Unknown right ''"),
        ({"username": "<script>x</script>", "right": "pull"}, "No user <script>x</script>."),
        ({"username": "x" * 500, "right": "pull"}, "No user"),
        ({"username": "ada", "right": "push"}, "ada is the last admin of team: make someone else its admin before"),
    ],
)
def test_a_bad_member_form_is_refused_with_a_message_and_changes_nothing(testapp, people, db, fields, message):
    as_user(testapp, "ada")
    before = members(db)
    page = post_member(testapp, status=400, **fields)
    alert = page.html.find("section", attrs={"aria-labelledby": "add-heading"}).find("p", class_="alert")
    assert message[1:] in alert.get_text()
    assert "<script>x" not in page.text
    assert members(db) == before and events(db) == []


def test_unknown_namespaces_and_bad_names_get_a_clear_page(testapp, people, db):
    as_user(testapp, "ada")
    assert "There is no namespace nowhere." in testapp.get("/namespaces/nowhere", status=404).text
    token = csrf_token(testapp.get("/namespaces"))
    testapp.post("/namespaces/nowhere/members", {"username": "sam", "right": "pull", "csrf_token": token}, status=404)
    testapp.post("/namespaces/nowhere/members/sam/remove", {"csrf_token": token}, status=404)
    assert "There is no namespace Not A Name." in testapp.get("/namespaces/Not%20A%20Name", status=404).text
    assert count_rows(db, namespaces) == 1


def test_the_owner_and_the_last_admin_are_not_removed(testapp, people, db):
    as_user(testapp, "sam")
    token = csrf_token(testapp.get("/namespaces/sam"))
    page = testapp.post("/namespaces/sam/members/sam/remove", {"csrf_token": token}, status=303).follow()
    assert "Sam owns the namespace sam: that cannot be taken away." in page.html.find("p", class_="alert").text
    as_user(testapp, "boss")
    token = csrf_token(testapp.get("/namespaces/team"))
    page = testapp.post("/namespaces/team/members/ada/remove", {"csrf_token": token}, status=303).follow()
    assert "Ada is the last admin of team" in page.html.find("p", class_="alert").text
    page = testapp.post("/namespaces/team/members/sam/remove", {"csrf_token": token}, status=303).follow()
    assert "Sam is no member of team." in page.html.find("p", class_="alert").text
    assert members(db)["ada"] == "admin" and events(db) == []


def test_a_post_without_or_with_a_stale_csrf_token_changes_nothing(testapp, people, db):
    as_user(testapp, "ada")
    before = members(db)
    for token in ({}, {"csrf_token": "stale"}):
        page = testapp.post("/namespaces/team/members", {"username": "sam", "right": "push", **token}, status=400)
        assert "This form has expired" in page.text
        testapp.post("/namespaces/team/members/pete/remove", token, status=400)
    as_user(testapp, "boss")
    for token in ({}, {"csrf_token": "stale"}):
        testapp.post("/namespaces", {"name": "web", **token}, status=400)
        testapp.post("/namespaces/team/reassign", {"username": "sam", **token}, status=400)
    assert members(db) == before and count_rows(db, namespaces) == 1 and events(db) == []


# --- reassigning -----------------------------------------------------------------------------------------------------


def test_an_administrator_reassigns_a_namespace(testapp, people, db):
    as_user(testapp, "boss")
    page = testapp.get("/namespaces/team")
    assert page.html.find("label", attrs={"for": "reassign-username"}) is not None
    done = testapp.post("/namespaces/team/reassign", {"username": "sam", "csrf_token": csrf_token(page)}, status=303)
    assert "sam is now the admin of team." in done.follow().text
    assert members(db) == {"sam": "admin", "pete": "push", "paula": "pull"}
    assert events(db) == [
        ("member_added", "boss", "team", "sam", "admin, reassigned"),
        ("member_removed", "boss", "team", "ada", "admin, reassigned"),
    ]
    refused = testapp.post("/namespaces/team/reassign", {"username": "nobody", "csrf_token": csrf_token(page)},
                           status=400)  # fmt: skip
    assert "No user nobody." in refused.html.find("p", class_="alert").text
    own = testapp.get("/namespaces/sam")
    assert "Reassign" not in own.text
    refused = testapp.post("/namespaces/sam/reassign", {"username": "ada", "csrf_token": csrf_token(page)}, status=400)
    assert "cannot be reassigned" in refused.text
    assert members(db) == {"sam": "admin", "pete": "push", "paula": "pull"}
