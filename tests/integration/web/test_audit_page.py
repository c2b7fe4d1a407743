"""/audit: administrators only (others 403, the anonymous to the login page), newest first, paged, filtered by user,
namespace and action, with everything stored shown escaped (no markup, no line a user typed)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import transaction
import webtest

from stevedore.adapters.sql.audit import SqlAuditLog
from stevedore.adapters.sql.engine import join_transaction
from stevedore.domain.audit import AuditAction, AuditEvent
from tests.integration.web.helpers import log_in

ADMIN = ("ada", "the admin password")
ALICE = ("alice", "correct horse battery")


def record(components, *events: AuditEvent) -> None:
    session = components.write_sessions()
    with transaction.manager:
        join_transaction(session)
        log = SqlAuditLog(session)
        for event in events:
            log.record(event)
    session.close()


def event(action=AuditAction.PUSH, **fields) -> AuditEvent:
    return AuditEvent(at=datetime(2026, 3, 4, 5, 6, tzinfo=UTC), action=action, **fields)


@pytest.fixture
def admin(testapp, make_user):
    make_user(*ADMIN, admin=True)
    log_in(testapp, *ADMIN)
    return testapp


def rows(page) -> list[list[str]]:
    body = page.html.find("table", class_="list").find("tbody")
    return [[td.get_text(strip=True) for td in tr.find_all("td")] for tr in body.find_all("tr")]


def test_the_anonymous_are_sent_to_log_in_and_members_are_refused(testapp, make_user):
    to_login = testapp.get("/audit", status=303)
    assert "/login?next=%2Faudit" in to_login.headers["Location"]
    make_user(*ALICE)
    log_in(testapp, *ALICE)
    assert "You may not see this page." in testapp.get("/audit", status=403).text
    testapp.get("/audit?action=push", status=403)


def test_an_administrator_sees_events_newest_first_with_who_where_and_what(admin, components):
    record(
        components,
        event(actor_id=1, actor_name="alice", address="203.0.113.7", namespace="team", target="team/app@sha256:ab"),
        event(AuditAction.DELETE_TAG, actor_name="bob", address="2001:db8::1", namespace="team", target="team/app:v1"),
    )
    page = admin.get("/audit", status=200)
    listed = rows(page)
    assert listed[0] == ["2026-03-04 05:06 UTC", "bob", "2001:db8::1", "delete_tag", "team", "team/app:v1", ""]
    assert listed[1][1:4] == ["alice", "203.0.113.7", "push"]
    assert [listed[2][1], listed[2][3], listed[2][6]] == ["ada", "login", "pages"]  # the oldest: this login
    assert page.html.find("label", attrs={"for": "audit-user"}) is not None
    assert page.html.find("select", id="audit-action") is not None


def test_filters_by_user_namespace_and_action(admin, components):
    record(
        components,
        event(actor_name="alice", namespace="team", target="team/a"),
        event(actor_name="bob", namespace="team", target="team/b"),
        event(AuditAction.DELETE_TAG, actor_name="bob", namespace="team", target="team/b:1"),
        event(actor_name="bob", namespace="bob", target="bob/c"),
    )

    def targets(query: str) -> list[str]:
        page = admin.get(f"/audit?{query}", status=200)
        return [row[5] for row in rows(page)] if page.html.find("table", class_="list") else []

    assert targets("user=bob") == ["bob/c", "team/b:1", "team/b"]
    assert targets("namespace=team&action=push") == ["team/b", "team/a"]
    assert targets("user=bob&namespace=team&action=delete_tag") == ["team/b:1"]
    assert targets("user=nobody") == []
    assert "No events match the filter." in admin.get("/audit?user=nobody").text
    selected = admin.get("/audit?action=delete_tag").html.find("option", selected=True)
    assert selected["value"] == "delete_tag"
    admin.get("/audit?action=drop_tables", status=400)
    admin.get("/audit?before=abc", status=400)


def test_pages_of_fifty_keep_the_filter(admin, components):
    record(components, *(event(actor_name="alice", target=f"alice/app{n}") for n in range(60)))
    first = admin.get("/audit?user=alice", status=200)
    assert len(rows(first)) == 50 and rows(first)[0][5] == "alice/app59"
    older = first.html.find("a", rel="next")["href"]
    assert "user=alice" in older and "before=" in older
    second = admin.get(older, status=200)
    assert [row[5] for row in rows(second)] == [f"alice/app{n}" for n in range(9, -1, -1)]
    assert second.html.find("a", rel="next") is None
    assert "Newest events" in second.text


def test_what_users_typed_is_shown_escaped(admin, components):
    stranger = webtest.TestApp(admin.app)
    log_in(stranger, "<script>alert(1)</script>\nforged 10.0.0.1 login ada", "wrong", status=400)
    record(components, event(actor_name="x", target="team/<b>bold</b>\r\nline", detail="tab\there \x1b[31m"))
    page = admin.get("/audit", status=200)
    assert "<script>alert(1)</script>" not in page.text and "<b>bold</b>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\x0aforged 10.0.0.1 login ada" in page.text
    assert "team/&lt;b&gt;bold&lt;/b&gt;\\x0d\\x0aline" in page.text
    assert "tab\\x09here \\x1b[31m" in page.text
    assert "\x1b" not in page.text
