"""The audit log's rules: its vocabulary, what an event keeps, paging and filters (with the fake), and escaping."""

from __future__ import annotations

import pytest

from stevedore.domain.audit import MAX_TARGET, AuditAction, AuditFilter, Auditor, shown
from stevedore.domain.errors import InvalidInput
from stevedore.domain.model import Account, RepositoryName
from tests.fakes import FixedClock
from tests.fakes_audit import InMemoryAuditLog

ADA = Account(id=7, username="ada", email=None, password_hash="x", is_admin=True)


@pytest.fixture
def auditor():
    return Auditor(InMemoryAuditLog(), FixedClock())


def test_the_vocabulary_holds_what_the_issue_names_and_refuses_anything_else():
    for name in (
        "push",
        "delete_manifest",
        "delete_tag",
        "delete_repository",
        "login",
        "login_failed",
        "logout",
        "setup",
        "invite_created",
        "invite_revoked",
        "signup",
        "namespace_claimed",
    ):
        assert AuditAction.parse(name).value == name
    with pytest.raises(InvalidInput):
        AuditAction.parse("drop_tables")
    with pytest.raises(InvalidInput):
        AuditAction.parse("PUSH")


def test_an_event_keeps_the_actor_by_id_and_name_and_the_namespace_of_its_repository(auditor):
    event = auditor.record(
        AuditAction.PUSH, actor=ADA, address="203.0.113.9", repository=RepositoryName.parse("team/app")
    )
    assert (event.actor_id, event.actor_name, event.address) == (7, "ada", "203.0.113.9")
    assert (event.namespace, event.target) == ("team", "team/app")
    assert event.at == FixedClock().now()
    bare = auditor.record(AuditAction.DELETE_REPOSITORY, actor=ADA, repository=RepositoryName.parse("app"))
    assert bare.namespace == "app"


def test_a_failed_login_keeps_the_name_as_typed_raw_but_cut_and_without_nul(auditor):
    typed = "mallory\nlogin ada from 10.0.0.1\x00" + "x" * 1000
    event = auditor.record(AuditAction.LOGIN_FAILED, actor_name=typed)
    assert event.actor_id is None
    assert event.actor_name is not None and event.actor_name.startswith("mallory\nlogin ada")
    assert "\x00" not in event.actor_name and len(event.actor_name) == 255
    long_target = auditor.record(AuditAction.PUSH, target="t" * 5000)
    assert long_target.target is not None and len(long_target.target) == MAX_TARGET
    assert auditor.record(AuditAction.LOGOUT, detail="").detail is None


def test_pages_go_newest_first_and_end(auditor):
    for number in range(5):
        auditor.record(AuditAction.PUSH, actor=ADA, target=f"app{number}")
    first = auditor.page(AuditFilter(), limit=2)
    assert [e.target for e in first.events] == ["app4", "app3"]
    second = auditor.page(AuditFilter(), before_id=first.next_before_id, limit=2)
    assert [e.target for e in second.events] == ["app2", "app1"]
    last = auditor.page(AuditFilter(), before_id=second.next_before_id, limit=2)
    assert [e.target for e in last.events] == ["app0"] and last.next_before_id is None
    exact = auditor.page(AuditFilter(), before_id=first.next_before_id, limit=3)
    assert len(exact.events) == 3 and exact.next_before_id is None


def test_filters_by_user_namespace_and_action_combine(auditor):
    bob = Account(id=8, username="bob", email=None, password_hash="x")
    auditor.record(AuditAction.PUSH, actor=ADA, repository=RepositoryName.parse("team/a"))
    auditor.record(AuditAction.PUSH, actor=bob, repository=RepositoryName.parse("team/b"))
    auditor.record(AuditAction.DELETE_TAG, actor=bob, repository=RepositoryName.parse("team/b"))
    auditor.record(AuditAction.PUSH, actor=bob, repository=RepositoryName.parse("bob/c"))
    auditor.record(AuditAction.LOGIN, actor=bob)

    def targets(**selection):
        return [e.target for e in auditor.page(AuditFilter(**selection)).events]

    assert targets(actor_name="bob") == [None, "bob/c", "team/b", "team/b"]
    assert targets(namespace="team") == ["team/b", "team/b", "team/a"]
    assert targets(actor_name="bob", namespace="team", action=AuditAction.PUSH) == ["team/b"]
    assert targets(actor_name="nobody") == []


def test_a_page_needs_a_size(auditor):
    with pytest.raises(InvalidInput):
        auditor.page(AuditFilter(), limit=0)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("team/app:1.0", "team/app:1.0"),
        ("a\nb", "a\\x0ab"),
        ("a\r\nforged line", "a\\x0d\\x0aforged line"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("tab\there", "tab\\x09here"),
        ("del\x7f", "del\\x7f"),
        ("c1\x85", "c1\\x85"),
        ("line\u2028sep", "line\\u2028sep"),
        ("bidi\u202etxt", "bidi\\u202etxt"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("typed \\x0a", "typed \\x5cx0a"),
        ("<script>alert(1)</script>", "<script>alert(1)</script>"),  # HTML is the template's to escape
        ("café ü 日本", "café ü 日本"),
        (None, ""),
    ],
)
def test_shown_escapes_what_could_forge_or_hide_a_line(raw, expected):
    assert shown(raw) == expected
    assert "\n" not in shown(raw) and "\r" not in shown(raw)
