"""A namespace's storage page: only administrators set its quota (a namespace's own admin gets 403), with a CSRF form
whose bad values come back as a 400 page saying why; the change is audited with old and new values; members see the
usage, others do not; the numbers on this page, the namespace page and the repository page match what was pushed,
a layer shared by two repositories counted once."""

from __future__ import annotations

import html

import pytest
import sqlalchemy as sa
import webtest

from stevedore.adapters.sql.tables_audit import audit_events
from stevedore.adapters.sql.tables_quotas import namespace_quotas
from stevedore.domain.browse import human_size
from stevedore.domain.quotas import human_bytes
from tests.integration.protocol.helpers import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    basic,
    descriptor,
    image_manifest,
    push_blob,
    put_manifest,
)
from tests.integration.web.helpers import csrf_token, log_in

ROOT = ("boss", "the administrator's password")
ALICE = ("alice", "correct horse battery")
EVE = ("eve", "an outsider's password")


@pytest.fixture
def people(make_user):
    make_user(*ROOT, admin=True)
    make_user(*ALICE)
    make_user(*EVE)


def browser(app, who) -> webtest.TestApp:
    client = webtest.TestApp(app)
    log_in(client, *who)
    return client


def quota_row(db):
    db.rollback()
    return db.execute(sa.select(namespace_quotas).where(namespace_quotas.c.namespace == "alice")).first()


def quota_events(db):
    db.rollback()
    return db.execute(
        sa.select(audit_events.c.actor_name, audit_events.c.namespace, audit_events.c.target, audit_events.c.detail)
        .where(audit_events.c.action == "quota_set")
        .order_by(audit_events.c.id)
    ).all()


def post_quota(client, max_bytes, max_repositories="", status=303):
    token = csrf_token(client.get("/namespaces/alice/quota"))
    form = {"max_bytes": max_bytes, "max_repositories": max_repositories, "csrf_token": token}
    return client.post("/namespaces/alice/quota", form, status=status)


def test_an_administrator_sets_the_quota_and_it_is_audited(app, people, db):
    root = browser(app, ROOT)
    post_quota(root, "10 GiB", "3")
    row = quota_row(db)
    assert (row.max_bytes, row.max_repositories, row.updated_by) == (10 * 2**30, 3, "boss")
    page = root.get("/namespaces/alice/quota")
    assert "of 10 GiB" in page.text
    assert 'value="10 GiB"' in page.text  # the form shows the quota as it was typed, exactly
    post_quota(root, "500 MB", "")
    assert quota_row(db).max_bytes == 500_000_000
    post_quota(root, "", "")
    assert quota_row(db) is None
    assert quota_events(db) == [
        ("boss", "alice", "alice", "storage 10 GiB, repositories 3 (was no quota)"),
        ("boss", "alice", "alice", "storage 476.8 MiB, repositories no limit (was storage 10 GiB, repositories 3)"),
        ("boss", "alice", "alice", "no quota (was storage 476.8 MiB, repositories no limit)"),
    ]


def test_the_namespace_admin_sees_its_quota_but_may_not_set_it(app, people, db):
    post_quota(browser(app, ROOT), "1 GiB")
    alice = browser(app, ALICE)  # the owner, and so the admin, of the namespace alice
    page = alice.get("/namespaces/alice/quota", status=200)
    assert "of 1 GiB" in page.text
    assert 'name="max_bytes"' not in page.text
    token = csrf_token(alice.get("/"))
    alice.post(
        "/namespaces/alice/quota", {"max_bytes": "100 GiB", "max_repositories": "", "csrf_token": token}, status=403
    )
    assert quota_row(db).max_bytes == 2**30
    assert len(quota_events(db)) == 1


def test_someone_who_is_no_member_does_not_see_the_usage(app, people):
    eve = browser(app, EVE)
    eve.get("/namespaces/alice/quota", status=403)
    assert "Storage used and quota" in eve.get("/namespaces/alice").text
    assert "usage-line" not in eve.get("/namespaces/alice").text
    eve.get("/namespaces/nobody/quota", status=404)
    webtest.TestApp(app).get("/namespaces/alice/quota", status=303)  # anonymous: to the login page


@pytest.mark.parametrize(
    ("max_bytes", "max_repositories", "message"),
    [
        ("ten gigs", "", "is not a size"),
        ("10 GB", "many", "is not a number of repositories"),
        ("-5", "", "is not a size"),
        ("9000 PiB", "", "larger than any quota"),
    ],
)
def test_bad_values_are_a_400_page_saying_why_and_store_nothing(app, people, db, max_bytes, max_repositories, message):
    response = post_quota(browser(app, ROOT), max_bytes, max_repositories, status=400)
    assert message in html.unescape(response.text)
    assert 'role="alert"' in response.text
    assert quota_row(db) is None
    assert quota_events(db) == []


def test_the_form_needs_its_csrf_token(app, people, db):
    root = browser(app, ROOT)
    root.post("/namespaces/alice/quota", {"max_bytes": "1 GiB", "max_repositories": ""}, status=400)
    assert quota_row(db) is None


def push(testapp, auth, repo, tag, config: bytes, layers):
    for blob in (config, *layers):
        push_blob(testapp, auth, repo, blob)
    body = image_manifest(descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, layer) for layer in layers])
    put_manifest(testapp, auth, repo, tag, body, OCI_MANIFEST)
    return len(body)


def test_usage_on_the_pages_counts_a_shared_layer_once(app, people, testapp):
    auth = basic(*ALICE)
    shared = b"shared base layer " * 4000  # 72,000 bytes
    app_config, web_config = b'{"os":"linux","n":1}', b'{"os":"linux","n":2}'
    app_own, web_own = b"app layer" * 1000, b"web layer" * 3000
    app_manifest = push(testapp, auth, "alice/app", "v1", app_config, [shared, app_own])
    web_manifest = push(testapp, auth, "alice/web", "v1", web_config, [shared, web_own])
    app_size = len(app_config) + len(shared) + len(app_own) + app_manifest
    web_size = len(web_config) + len(shared) + len(web_own) + web_manifest
    namespace_size = app_size + web_size - len(shared)

    alice = browser(app, ALICE)
    quota_page = alice.get("/namespaces/alice/quota").text
    assert f'<dd class="usage-bytes">{human_bytes(namespace_size)} <span class="muted">(no quota)' in quota_page
    assert f'<td data-label="Size" class="repository-size">{human_bytes(app_size)}</td>' in quota_page
    assert f'<td data-label="Size" class="repository-size">{human_bytes(web_size)}</td>' in quota_page
    assert '<dd class="usage-repositories">2 <span' in quota_page
    assert human_bytes(namespace_size) != human_bytes(app_size + web_size)  # the shared layer counted once

    line = alice.get("/namespaces/alice").text
    assert f'<span class="usage-line">{human_bytes(namespace_size)} stored in 2 repositories</span>' in line
    repository = alice.get("/r/alice/web").text
    assert f"{human_size(web_size)} stored" in repository

    post_quota(browser(app, ROOT), "1 MiB", "2")
    line = alice.get("/namespaces/alice").text
    assert f"{human_bytes(namespace_size)} of 1 MiB stored in 2 of 2 repositories" in line
