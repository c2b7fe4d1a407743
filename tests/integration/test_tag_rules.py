"""Immutable tags over /v2/ and the pages, on SQLite and PostgreSQL: a push over a protected tag, its deletion, the
deletion of its manifest by digest and of its repository are refused (403 DENIED naming the tag and the rule; the
tag stays where it was), while new matching tags, the same manifest again, unmatched tags and other repositories'
tags move freely."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
import transaction

from stevedore.adapters.sql.engine import join_transaction
from stevedore.adapters.sql.rules import SqlTagRuleStore
from stevedore.adapters.sql.tables import manifests, repositories, tags
from stevedore.domain.rules import RuleKind, TagRule
from tests.integration.protocol.helpers import basic, error_codes, push_image, put_manifest
from tests.integration.web.helpers import csrf_token, log_in

pytestmark = pytest.mark.usefixtures("user")

AUTH = basic("alice", "correct horse battery")


def add_rule(components, pattern: str, repository: str | None = None, namespace: str = "alice") -> None:
    session = components.write_sessions()
    with transaction.manager:
        join_transaction(session)
        SqlTagRuleStore(session).add(
            TagRule(namespace, repository, RuleKind.IMMUTABLE, pattern, created_at=datetime.now(UTC))
        )
    session.close()


def tag_digest(db, repo: str, tag: str) -> str | None:
    db.rollback()
    return db.execute(
        sa.select(manifests.c.digest)
        .select_from(tags.join(manifests, manifests.c.id == tags.c.manifest_id))
        .join(repositories, repositories.c.id == tags.c.repository_id)
        .where(repositories.c.name == repo)
        .where(tags.c.name == tag)
    ).scalar_one_or_none()


def denied(response, message: str) -> None:
    assert response.status_int == 403
    assert error_codes(response) == ["DENIED"]
    assert response.json["errors"][0]["message"] == message


def test_a_push_over_an_immutable_tag_is_denied_and_the_tag_stays(testapp, components, db):
    add_rule(components, "v*")
    v1 = push_image(testapp, AUTH, "alice/app", "v1", seed="one")
    other = push_image(testapp, AUTH, "alice/app", None, seed="two")
    response = put_manifest(testapp, AUTH, "alice/app", "v1", other.body, other.media_type, status=403)
    denied(
        response,
        "tag v1 of alice/app is immutable (rule v* on the namespace alice): it cannot be pushed over with another "
        "manifest",
    )
    assert tag_digest(db, "alice/app", "v1") == v1.digest
    # Allowed: the same manifest again, a new matching tag, an unmatched tag moving.
    put_manifest(testapp, AUTH, "alice/app", "v1", v1.body, v1.media_type, status=201)
    put_manifest(testapp, AUTH, "alice/app", "v2", other.body, other.media_type, status=201)
    put_manifest(testapp, AUTH, "alice/app", "latest", v1.body, v1.media_type, status=201)
    put_manifest(testapp, AUTH, "alice/app", "latest", other.body, other.media_type, status=201)
    assert tag_digest(db, "alice/app", "v2") == other.digest
    assert tag_digest(db, "alice/app", "latest") == other.digest
    testapp.delete("/v2/alice/app/manifests/latest", headers=AUTH, status=202)


def test_deleting_an_immutable_tag_or_its_manifest_is_denied(testapp, components, db):
    add_rule(components, "release-[0-9]*", "alice/app")
    pushed = push_image(testapp, AUTH, "alice/app", "release-1", seed="one")
    response = testapp.delete("/v2/alice/app/manifests/release-1", headers=AUTH, status=403)
    denied(
        response,
        "tag release-1 of alice/app is immutable (rule release-[0-9]* on the repository alice/app): it cannot be "
        "deleted (nor its manifest)",
    )
    response = testapp.delete(f"/v2/alice/app/manifests/{pushed.digest}", headers=AUTH, status=403)
    assert "tag release-1 of alice/app is immutable" in response.json["errors"][0]["message"]
    assert tag_digest(db, "alice/app", "release-1") == pushed.digest
    testapp.get(f"/v2/alice/app/manifests/{pushed.digest}", headers=AUTH, status=200)


def test_a_rule_on_another_repository_does_not_apply(testapp, components, db):
    add_rule(components, "*", "alice/other")
    add_rule(components, "*", namespace="bob")
    push_image(testapp, AUTH, "alice/app", "v1", seed="one")
    other = push_image(testapp, AUTH, "alice/app", "v1", seed="two")
    assert tag_digest(db, "alice/app", "v1") == other.digest
    testapp.delete(f"/v2/alice/app/manifests/{other.digest}", headers=AUTH, status=202)
    assert tag_digest(db, "alice/app", "v1") is None


def test_the_pages_refuse_to_delete_an_immutable_tag_or_its_repository(testapp, components, db):
    add_rule(components, "v*")
    pushed = push_image(testapp, AUTH, "alice/app", "v1", seed="one")
    log_in(testapp, "alice", "correct horse battery")
    page = testapp.get("/r/alice/app")
    token = csrf_token(page)
    response = testapp.post("/r/alice/app/-/tags/v1/delete", {"csrf_token": token}, status=403)
    assert "tag v1 of alice/app is immutable (rule v* on the namespace alice)" in response.text
    response = testapp.post("/r/alice/app/-/delete", {"csrf_token": token, "confirm_name": "alice/app"}, status=403)
    assert (
        "the repository alice/app holds 1 immutable tag (v1; rule v* on the namespace alice): remove the rule"
        in response.text
    )
    assert tag_digest(db, "alice/app", "v1") == pushed.digest
