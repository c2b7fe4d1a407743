"""/namespaces/<ns>/rules: whoever may see a namespace sees its tag rules; its admins (and administrators) add and
remove them with CSRF forms, each change audited; bad input is a 400 page saying what is wrong and stores nothing;
others get 403; a rule added on the page is enforced on /v2/ at once."""

from __future__ import annotations

import sqlalchemy as sa
import transaction
import webtest

from stevedore.adapters.sql.accounts import SqlAccountStore
from stevedore.adapters.sql.engine import join_transaction
from stevedore.adapters.sql.namespaces import SqlNamespaceStore
from stevedore.adapters.sql.tables_audit import audit_events
from stevedore.adapters.sql.tables_rules import tag_rules
from stevedore.domain.namespaces import NamespaceService, Right
from tests.integration.conftest import count_rows
from tests.integration.protocol.helpers import basic, error_codes, push_image, put_manifest
from tests.integration.web.helpers import csrf_token, log_in

PASSWORD = "a fine password"


def make_team(components, **members: Right) -> None:
    session = components.write_sessions()
    with transaction.manager:
        join_transaction(session)
        service = NamespaceService(SqlNamespaceStore(session), SqlAccountStore(session), components.clock)
        service.create("team")
        for username, right in members.items():
            service.add_member("team", username, right)
    session.close()


def logged_in(app, username: str) -> webtest.TestApp:
    browser = webtest.TestApp(app)
    log_in(browser, username, PASSWORD)
    return browser


def add(browser, status=303, **fields):
    token = csrf_token(browser.get("/namespaces/team/rules"))
    form = {"kind": "immutable", "pattern": "v*", "repository": "", **fields, "csrf_token": token}
    return browser.post("/namespaces/team/rules", form, status=status)


def audit(db) -> list[tuple[str, str, str, str]]:
    db.rollback()
    return [
        (row.action, row.actor_name, row.target, row.detail)
        for row in db.execute(
            sa.select(audit_events).where(audit_events.c.action.like("rule_%")).order_by(audit_events.c.id)
        )
    ]


def test_an_admin_adds_and_removes_rules_audited_and_enforced(app, make_user, components, db):
    for name in ("ada", "pete"):
        make_user(name, PASSWORD)
    make_team(components, ada=Right.ADMIN, pete=Right.PUSH)
    ada = logged_in(app, "ada")
    add(ada, pattern="v*")
    add(ada, kind="retention", pattern="*", repository="team/app", keep_newest="3", untagged_days="7")
    page = ada.get("/namespaces/team/rules")
    assert "Rule added: retention * on the repository team/app: keep the 3 newest; remove untagged" in page.text
    assert "<code>v*</code>" in page.text and "keep the 3 newest; remove untagged manifests after 7 days" in page.text
    assert audit(db) == [
        ("rule_added", "ada", "team", "immutable v* on the namespace team"),
        (
            "rule_added",
            "ada",
            "team/app",
            "retention * on the repository team/app: keep the 3 newest; remove untagged manifests after 7 days",
        ),
    ]

    # Enforced on /v2/ at once, for anyone who pushes.
    pete_auth = basic("pete", PASSWORD)
    push_image(app_client := webtest.TestApp(app), pete_auth, "team/app", "v1", seed="one")
    other = push_image(app_client, pete_auth, "team/app", None, seed="two")
    response = put_manifest(app_client, pete_auth, "team/app", "v1", other.body, other.media_type, status=403)
    assert error_codes(response) == ["DENIED"]
    assert "rule v* on the namespace team" in response.json["errors"][0]["message"]

    first_id = db.execute(sa.select(tag_rules.c.id).order_by(tag_rules.c.id)).scalars().first()
    token = csrf_token(ada.get("/namespaces/team/rules"))
    ada.post(f"/namespaces/team/rules/{first_id}/remove", {"csrf_token": token}, status=303)
    assert "Rule removed: immutable v* on the namespace team." in ada.get("/namespaces/team/rules").text
    assert audit(db)[-1] == ("rule_removed", "ada", "team", "immutable v* on the namespace team")
    put_manifest(app_client, pete_auth, "team/app", "v1", other.body, other.media_type, status=201)
    # A rule that is gone (or of another namespace): a message, nothing changes.
    token = csrf_token(ada.get("/namespaces/team/rules"))
    ada.post(f"/namespaces/team/rules/{first_id}/remove", {"csrf_token": token}, status=303)
    assert f"Team has no rule {first_id}." in ada.get("/namespaces/team/rules").text
    assert count_rows(db, tag_rules) == 1


def test_the_namespace_page_links_to_the_rules(app, make_user, components):
    make_user("ada", PASSWORD)
    make_user("bob", PASSWORD)
    make_team(components, ada=Right.ADMIN, bob=Right.PULL)
    assert "/namespaces/team/rules" in logged_in(app, "ada").get("/namespaces/team").text
    member = logged_in(app, "bob").get("/namespaces/team").text
    assert "/namespaces/team/rules" in member  # members see the rules: the link too
    assert "/namespaces/team/webhooks" not in member  # webhooks are the admins'


def test_members_see_the_rules_but_only_admins_change_them(app, make_user, components, db):
    for name in ("ada", "pete", "sam"):
        make_user(name, PASSWORD)
    make_team(components, ada=Right.ADMIN, pete=Right.PUSH)
    ada = logged_in(app, "ada")
    add(ada, pattern="stable")
    rule_id = db.execute(sa.select(tag_rules.c.id)).scalar_one()
    for name in ("pete", "sam"):  # a push member; an account with no right (the default model: everyone pulls)
        browser = logged_in(app, name)
        page = browser.get("/namespaces/team/rules")
        assert "<code>stable</code>" in page.text
        assert "Add a rule" not in page.text and "/remove" not in page.text
        token = csrf_token(browser.get("/"))
        form = {"kind": "immutable", "pattern": "x*", "csrf_token": token}
        response = browser.post("/namespaces/team/rules", form, status=403)
        assert "Only the admins of team may change its rules." in response.text
        browser.post(f"/namespaces/team/rules/{rule_id}/remove", {"csrf_token": token}, status=403)
    assert count_rows(db, tag_rules) == 1
    # Without the CSRF token: refused before anything.
    ada.post("/namespaces/team/rules", {"kind": "immutable", "pattern": "y*"}, status=400)
    assert count_rows(db, tag_rules) == 1
    # An unknown namespace: the namespaces' 404.
    ada.get("/namespaces/nosuch/rules", status=404)


def test_bad_input_is_a_400_page_saying_what_is_wrong(app, make_user, components, db):
    make_user("ada", PASSWORD)
    make_team(components, ada=Right.ADMIN)
    ada = logged_in(app, "ada")
    for fields, said in (
        ({"pattern": "v[1"}, "opens a [ it does not close"),
        ({"pattern": "v/1"}, "holds &#39;/&#39;"),
        ({"pattern": ""}, "The tag pattern is empty"),
        ({"repository": "other/app"}, "The repository other/app is not in the namespace team."),
        ({"kind": "retention", "keep_newest": "-2"}, "cannot be negative"),
        ({"kind": "retention", "keep_days": "ten"}, "is a whole number"),
        ({"kind": "retention"}, "A retention rule needs at least one of"),
        ({"kind": "immutable", "untagged_days": "3"}, "An immutable rule takes no retention numbers"),
        ({"kind": "forever"}, "Unknown kind of rule"),
    ):
        response = add(ada, status=400, **fields)
        assert said in response.text, (fields, response.text[:2000])
        assert 'role="alert"' in response.text
    assert count_rows(db, tag_rules) == 0
    assert audit(db) == []
    ada.post(
        "/namespaces/team/rules/notanumber/remove",
        {"csrf_token": csrf_token(ada.get("/namespaces/team/rules"))},
        status=404,
    )
