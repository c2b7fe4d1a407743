"""Tag history over HTTP on SQLite and PostgreSQL: pushes over a tag and deletions leave one row a move with the
right digests, actor and cause; a re-push of the same digest leaves none; a tag push costs one more statement; the
SQL adapter pages by (time, id) and ignores an unknown repository."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import transaction

from stevedore.adapters.sql.engine import join_transaction
from stevedore.adapters.sql.tables import repositories
from stevedore.adapters.sql.tables_tag_history import tag_history
from stevedore.adapters.sql.tag_history import SqlTagHistoryQueries, SqlTagHistoryStore
from stevedore.domain.lifecycle import NoLifecycle, TagChange
from stevedore.domain.model import Digest, RepositoryName
from stevedore.domain.tag_history import HistoryCursor
from stevedore.web.ui import tag_history as web_tag_history
from tests.integration.protocol.helpers import basic, push_image, put_manifest

ALICE = ("alice", "correct horse battery")
ROOT = ("carol", "the administrator's password")


@pytest.fixture
def alice(make_user):
    make_user(*ALICE)
    return basic(*ALICE)


@pytest.fixture
def root(make_user):
    make_user(*ROOT, admin=True)
    return basic(*ROOT)


def history(db, tag="v1"):
    db.rollback()
    rows = db.execute(
        sa.select(tag_history.c.old_digest, tag_history.c.new_digest, tag_history.c.actor, tag_history.c.cause)
        .where(tag_history.c.tag == tag)
        .order_by(tag_history.c.id)
    )
    return [tuple(row) for row in rows]


@contextlib.contextmanager
def statements(components):
    """The SQL statements the app runs inside the block."""
    seen: list[str] = []

    def listen(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    sa.event.listen(components.engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        sa.event.remove(components.engine, "before_cursor_execute", listen)


def test_pushes_over_a_tag_and_its_deletion_are_kept_with_digests_actor_and_cause(testapp, db, alice, root):
    first = push_image(testapp, alice, "alice/app", "v1", seed="one")
    second = push_image(testapp, root, "alice/app", "v1", seed="two")
    testapp.delete("/v2/alice/app/manifests/v1", headers=alice, status=202)
    assert history(db) == [
        (None, first.digest, "alice", "push"),
        (first.digest, second.digest, "carol", "push"),
        (second.digest, None, "alice", "delete"),
    ]
    row = db.execute(sa.select(tag_history).order_by(tag_history.c.id)).first()
    assert row.repository_id == db.execute(sa.select(repositories.c.id)).scalar_one()
    at = row.at.replace(tzinfo=UTC) if row.at.tzinfo is None else row.at
    assert abs(datetime.now(UTC) - at) < timedelta(minutes=5)


def test_deleting_a_manifest_by_digest_keeps_a_deletion_for_each_of_its_tags(testapp, db, alice):
    image = push_image(testapp, alice, "alice/app", "v1")
    put_manifest(testapp, alice, "alice/app", "stable", image.body, image.media_type)
    testapp.delete(f"/v2/alice/app/manifests/{image.digest}", headers=alice, status=202)
    assert history(db, "v1")[-1] == (image.digest, None, "alice", "delete")
    assert history(db, "stable") == [(None, image.digest, "alice", "push"), (image.digest, None, "alice", "delete")]


def test_pushing_the_same_digest_again_records_nothing_and_a_push_costs_one_statement(
    testapp, db, components, alice, monkeypatch
):
    image = push_image(testapp, alice, "alice/app", "v1")
    assert len(history(db)) == 1
    with statements(components) as seen:
        put_manifest(testapp, alice, "alice/app", "v1", image.body, image.media_type)
    assert len(history(db)) == 1
    assert not [s for s in seen if "tag_history" in s]
    other = push_image(testapp, alice, "alice/app", "v2", seed="other")
    with statements(components) as seen:
        put_manifest(testapp, alice, "alice/app", "v1", other.body, other.media_type)
    assert [s.split()[0] for s in seen if "tag_history" in s] == ["INSERT"]
    assert history(db)[-1] == (image.digest, other.digest, "alice", "push")
    # The same move back without the tag history's part of the lifecycle: exactly one statement fewer.
    monkeypatch.setattr(web_tag_history, "lifecycle_part", lambda request: NoLifecycle())
    with statements(components) as without:
        put_manifest(testapp, alice, "alice/app", "v1", image.body, image.media_type)
    assert len(seen) - len(without) == 1


def test_a_refused_push_keeps_no_history(testapp, db, alice, make_user):
    make_user("bob", "another good password")
    push_image(testapp, alice, "alice/app", "v1")
    pushed = push_image(testapp, alice, "alice/app", "v2", seed="two")
    # bob may pull alice's repository, not push into it
    response = testapp.put(
        "/v2/alice/app/manifests/v1",
        pushed.body,
        headers={**basic("bob", "another good password"), "Content-Type": pushed.media_type},
        status=403,
    )
    assert "DENIED" in response.text
    assert len(history(db)) == 1


def write(components, fn):
    session = components.write_sessions()
    with transaction.manager:
        join_transaction(session)
        result = fn(session)
    session.close()
    return result


def test_the_adapter_pages_by_time_then_id_and_ignores_an_unknown_repository(testapp, db, components, alice):
    push_image(testapp, alice, "alice/app", "latest")
    name = RepositoryName("alice/app")
    t0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    digests = [Digest.of(str(i).encode()) for i in range(7)]

    def record(session):
        store = SqlTagHistoryStore(session)
        for i, d in enumerate(digests):  # two moves an instant, the later id the newer
            store.record(
                TagChange(name, "v9", digests[i - 1] if i else None, d, "alice", t0 + timedelta(i // 2), "push")
            )
        store.record(TagChange(RepositoryName("nobody/here"), "v9", None, digests[0], "x", t0, "push"))

    write(components, record)
    db.rollback()
    assert (
        db.execute(sa.select(sa.func.count()).select_from(tag_history).where(tag_history.c.tag == "v9")).scalar() == 7
    )
    repository_id = db.execute(sa.select(repositories.c.id).where(repositories.c.name == "alice/app")).scalar_one()
    queries = SqlTagHistoryQueries(db)
    seen, before = [], None
    while True:
        page = queries.entries(repository_id, "v9", before=before, limit=3)
        seen += [str(e.new) for e in page]
        if len(page) < 3:
            break
        before = HistoryCursor.parse(HistoryCursor.of(page[-1]).text())
    assert seen == [str(d) for d in reversed(digests)]
    assert queries.has_history(repository_id, "v9") and not queries.has_history(repository_id, "v8")
    assert queries.held(repository_id, [str(digests[0])]) == set()
    assert queries.current(repository_id, "v9") is None and queries.current(repository_id, "latest") is not None
