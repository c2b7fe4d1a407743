"""Deleting a whole repository from the pages (POST /r/<name>/-/delete), on SQLite and PostgreSQL, with a namespace
webhook pointing at a loopback receiver: the deletion queues, in its own transaction, one `delete` event per manifest
the repository held and one per tag, as the /v2/ deletions it amounts to would; a refused deletion queues nothing;
and the store reads what it removed from its deleting statements, however many manifests there are."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
import transaction

import tests.integration.test_webhooks as webhook_tests
from stevedore.adapters.sql.engine import join_transaction
from stevedore.adapters.sql.repository_deletion import SqlRepositoryDeletionStore
from stevedore.adapters.sql.tables import repositories
from stevedore.domain.model import RepositoryName
from stevedore.domain.repository_deletion import RemovedRepository
from stevedore.domain.webhooks import SIGNATURE_HEADER, verify
from stevedore.web.ui.webhooks import build_deliverer
from tests.integration.protocol.helpers import push_image
from tests.integration.test_tag_rules import add_rule
from tests.integration.test_webhooks import AUTH, HOOK_SECRET, PASSWORD, add_webhook, rows
from tests.integration.web.helpers import csrf_token, log_in

# The webhook tests' settings (loopback targets allowed, a public URL) and their receiver.
settings = webhook_tests.settings
receiver = webhook_tests.receiver

pytestmark = pytest.mark.usefixtures("user")


def delete_from_the_page(testapp, repository: str, confirm: str, status: int):
    token = csrf_token(testapp.get(f"/r/{repository}/-/delete"))
    return testapp.post(f"/r/{repository}/-/delete", {"csrf_token": token, "confirm_name": confirm}, status=status)


def queued_deletes(components) -> list[dict]:
    return [json.loads(row.payload)["events"][0] for row in rows(components) if row.action == "delete"]


def test_a_repository_deleted_from_the_pages_sends_a_delete_per_manifest_and_per_tag(testapp, components, receiver):
    add_webhook(components, receiver.url)
    one = push_image(testapp, AUTH, "alice/app", "v1", seed="one")
    two = push_image(testapp, AUTH, "alice/app", "v2", seed="two")
    push_image(testapp, AUTH, "alice/keep", "v1", seed="keep")
    assert [row.action for row in rows(components)] == ["push"] * 3

    log_in(testapp, "alice", PASSWORD)
    delete_from_the_page(testapp, "alice/app", "alice/app", 303)

    events = queued_deletes(components)
    assert sorted((e["target"]["digest"], e["target"].get("tag", "")) for e in events) == sorted(
        [(one.digest, ""), (one.digest, "v1"), (two.digest, ""), (two.digest, "v2")]
    )
    sizes = {one.digest: len(one.body), two.digest: len(two.body)}
    for event in events:
        assert event["action"] == "delete" and event["actor"] == {"name": "alice"}
        target = event["target"]
        assert target["repository"] == "alice/app"
        assert target["mediaType"] == one.media_type and target["size"] == sizes[target["digest"]]
        assert event["request"]["method"] == "POST"
    assert len({e["id"] for e in events}) == 4  # four events, not one repeated

    # And the receiver gets them, signed, as any other delivery.
    assert build_deliverer(components).run_once().sent == 7
    delivered = [e for e in receiver.events() if e["action"] == "delete"]
    assert sorted(e["id"] for e in delivered) == sorted(e["id"] for e in events)
    for request in receiver.requests:
        assert verify(HOOK_SECRET, request["body"], request["headers"][SIGNATURE_HEADER])


def test_a_wrong_confirmation_queues_nothing(testapp, components, db, receiver):
    add_webhook(components, receiver.url)
    push_image(testapp, AUTH, "alice/app", "v1", seed="one")
    log_in(testapp, "alice", PASSWORD)
    response = delete_from_the_page(testapp, "alice/app", "alice/wrong", 400)
    assert "Type the repository" in response.text
    assert queued_deletes(components) == []
    db.rollback()
    assert list(db.execute(sa.select(repositories.c.name)).scalars()) == ["alice/app"]


def test_a_deletion_an_immutable_tag_refuses_queues_nothing(testapp, components, db, receiver):
    add_webhook(components, receiver.url)
    add_rule(components, "v*")
    push_image(testapp, AUTH, "alice/app", "v1", seed="one")
    push_image(testapp, AUTH, "alice/app", "latest", seed="two")
    log_in(testapp, "alice", PASSWORD)
    response = delete_from_the_page(testapp, "alice/app", "alice/app", 403)
    assert "holds 1 immutable tag (v1" in response.text
    assert queued_deletes(components) == []
    db.rollback()
    assert list(db.execute(sa.select(repositories.c.name)).scalars()) == ["alice/app"]


def test_the_store_reports_what_it_removed_in_as_many_statements_however_many_manifests(testapp, components):
    """Two RETURNING deletions say what went: no read per manifest or tag, nor a list of ids as parameters."""
    small = [push_image(testapp, AUTH, "alice/small", "v1", seed="s")]
    large = [push_image(testapp, AUTH, "alice/large", f"v{i}", seed=f"l{i}", layer_count=1) for i in range(6)]
    large.append(push_image(testapp, AUTH, "alice/large", None, seed="untagged", layer_count=1))

    def delete(name: str) -> tuple[RemovedRepository | None, int]:
        statements: list[str] = []

        def count(conn, cursor, statement, parameters, context, executemany) -> None:
            statements.append(statement)

        session = components.write_sessions()
        sa.event.listen(components.engine, "before_cursor_execute", count)
        try:
            with transaction.manager:
                join_transaction(session)
                removed = SqlRepositoryDeletionStore(session).delete_repository(RepositoryName.parse(name))
        finally:
            sa.event.remove(components.engine, "before_cursor_execute", count)
            session.close()
        return removed, len(statements)

    small_removed, small_count = delete("alice/small")
    large_removed, large_count = delete("alice/large")
    assert small_removed is not None and large_removed is not None
    assert small_count == large_count
    assert {str(m.digest) for m in large_removed.manifests} == {p.digest for p in large}
    assert sorted((t.name, str(t.digest)) for t in large_removed.tags) == sorted(
        (f"v{i}", large[i].digest) for i in range(6)
    )
    assert [(str(m.digest), m.media_type, m.size) for m in small_removed.manifests] == [
        (small[0].digest, small[0].media_type, len(small[0].body))
    ]
    assert [t.name for t in small_removed.tags] == ["v1"]
    assert delete("alice/small")[0] is None  # gone: None, as for a repository that never was
