"""The claim of a namespace by a first push is in the audit log, in the push's own transaction: once per claim,
with the pusher, the namespace and the repository; a refused push, a push that fails after claiming, and a push
into a namespace already held record no claim. On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
import webtest

from stevedore.adapters.sql.tables import namespaces
from stevedore.adapters.sql.tables_audit import audit_events
from tests.integration.conftest import count_rows
from tests.integration.protocol.helpers import basic, digest, push_image

PASSWORD = "a long enough password"
ADDRESS = "203.0.113.9"


@pytest.fixture
def testapp(app):
    return webtest.TestApp(app, extra_environ={"REMOTE_ADDR": ADDRESS})


@pytest.fixture
def people(make_user):
    return {name: (make_user(name, PASSWORD), basic(name, PASSWORD)) for name in ("ada", "sam")}


def claims(db):
    db.rollback()
    query = sa.select(audit_events).where(audit_events.c.action == "namespace_claimed").order_by(audit_events.c.id)
    return [(e.actor_id, e.actor_name, e.namespace, e.target, e.address) for e in db.execute(query)]


def test_a_first_push_records_its_claim_exactly_once(testapp, people, db):
    ada, auth = people["ada"]
    push_image(testapp, auth, "fresh/app", "v1")  # several blobs and a manifest: one claim
    push_image(testapp, auth, "fresh/web", "v1", seed="again")  # her namespace now: no claim
    assert claims(db) == [(ada.id, "ada", "fresh", "fresh/app", ADDRESS)]
    push_image(testapp, auth, "ada/own", "v1", seed="own")  # her own namespace is never claimed
    push_image(testapp, auth, "tool", "v1", seed="bare")  # a bare name claims itself
    assert [c[2:4] for c in claims(db)] == [("fresh", "fresh/app"), ("tool", "tool")]


def test_a_refused_push_records_no_claim(testapp, people, db):
    _ada, auth = people["ada"]
    push_image(testapp, auth, "fresh/app", "v1")
    _sam, sam_auth = people["sam"]
    testapp.post("/v2/fresh/app/blobs/uploads/", headers=sam_auth, status=403)
    testapp.post("/v2/library/alpine/blobs/uploads/", headers=sam_auth, status=403)  # reserved: never claimed
    assert [c[1] for c in claims(db)] == ["ada"]


def test_a_push_that_fails_after_claiming_leaves_neither_claim_nor_event(testapp, people, db):
    _sam, auth = people["sam"]
    wrong = digest(b"something else")
    testapp.post(
        f"/v2/other/app/blobs/uploads/?digest={wrong}",
        params=b"the layer",
        headers=auth,
        content_type="application/octet-stream",
        status=400,
    )
    assert claims(db) == [] and count_rows(db, namespaces) == 0
