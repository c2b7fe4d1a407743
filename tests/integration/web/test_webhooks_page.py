"""/namespaces/<ns>/webhooks: only a namespace's admins (and administrators) see and change its webhooks; every form
needs the CSRF token; a URL that is not http(s) or whose host is private is refused with a 400 page saying why; the
secret is shown once and never audited; the delivery log shows what was sent and sends a failed delivery again."""

from __future__ import annotations

import logging
import re

import pytest
import sqlalchemy as sa

from stevedore.adapters.sql.tables_audit import audit_events
from stevedore.adapters.sql.tables_webhooks import webhook_deliveries, webhooks
from stevedore.domain.namespaces import Right
from tests.integration.conftest import count_rows
from tests.integration.protocol.helpers import basic, push_image
from tests.integration.test_webhooks import Receiver, hook_settings
from tests.integration.web.helpers import csrf_token, log_in
from tests.integration.web.test_robots_page import in_transaction, make_team

PASSWORD = "a fine password"
SECRET = re.compile(r'id="webhook-secret" class="copy" value="([^"]+)"')


@pytest.fixture
def settings(database_url, tmp_path):
    return hook_settings(database_url, tmp_path)


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def create(app, namespace, url, status=200, **fields):
    token = csrf_token(app.get(f"/namespaces/{namespace}/webhooks"))
    form = {"url": url, "events": ["push", "delete"], "secret": "", **fields, "csrf_token": token}
    return app.post(f"/namespaces/{namespace}/webhooks", form, status=status)


def act(app, namespace, webhook_id, action, status=303):
    token = csrf_token(app.get(f"/namespaces/{namespace}/webhooks"))
    return app.post(f"/namespaces/{namespace}/webhooks/{webhook_id}/{action}", {"csrf_token": token}, status=status)


def audited(db, action):
    db.rollback()
    return list(db.execute(sa.select(audit_events).where(audit_events.c.action == action)))


def webhook_ids(db) -> list[int]:
    db.rollback()
    return list(db.execute(sa.select(webhooks.c.id)).scalars())


def test_anonymous_visitors_are_sent_to_log_in(testapp):
    assert "/login" in testapp.get("/namespaces/ada/webhooks", status=303).headers["Location"]


def test_an_owner_adds_a_webhook_and_sees_its_secret_once(testapp, make_user, db, receiver):
    make_user("ada", PASSWORD)
    log_in(testapp, "ada", PASSWORD)
    page = create(testapp, "ada", receiver.url)
    secret = SECRET.search(page.text).group(1)  # type: ignore[union-attr]
    assert len(secret) >= 32
    listed = testapp.get("/namespaces/ada/webhooks")
    assert secret not in listed.text and receiver.url in listed.text and "push, delete" in listed.text
    [row] = db.execute(sa.select(webhooks)).all()
    assert (row.namespace, row.url, row.events, row.enabled, row.created_by) == (
        "ada",
        receiver.url,
        "delete push",
        True,
        "ada",
    )
    [event] = audited(db, "webhook_created")
    assert event.namespace == "ada" and event.target == f"http://127.0.0.1:{receiver.port}/…"
    assert event.actor_name == "ada"
    assert secret not in (event.detail or "")

    chosen = create(testapp, "ada", receiver.url, secret="a secret I chose myself", events=["push"])
    assert SECRET.search(chosen.text).group(1) == "a secret I chose myself"  # type: ignore[union-attr]
    assert all("a secret I chose" not in (e.detail or "") for e in audited(db, "webhook_created"))


def test_only_namespace_admins_and_administrators_manage_webhooks(testapp, make_user, components, db, receiver):
    make_user("boss", PASSWORD)
    make_user("pusher", PASSWORD)
    make_user("stranger", PASSWORD)
    make_user("chief", PASSWORD, admin=True)
    make_team(components, "boss")

    def give_push(session):
        from stevedore.adapters.sql.accounts import SqlAccountStore
        from stevedore.adapters.sql.namespaces import SqlNamespaceStore
        from stevedore.domain.namespaces import NamespaceService

        NamespaceService(SqlNamespaceStore(session), SqlAccountStore(session), components.clock).add_member(
            "team", "pusher", Right.PUSH
        )

    in_transaction(components, give_push)
    for name in ("pusher", "stranger"):
        log_in(testapp, name, PASSWORD)
        testapp.get("/namespaces/team/webhooks", status=403)
        token = csrf_token(testapp.get("/namespaces"))
        form = {"url": receiver.url, "events": "push", "csrf_token": token}
        testapp.post("/namespaces/team/webhooks", form, status=403)
        testapp.get("/namespaces/nosuch/webhooks", status=403)  # the same answer: no oracle
        testapp.post("/logout", {"csrf_token": token}, status=303)
    assert count_rows(db, webhooks) == 0

    log_in(testapp, "boss", PASSWORD)
    create(testapp, "team", receiver.url)
    token = csrf_token(testapp.get("/namespaces/team/webhooks"))
    testapp.post("/logout", {"csrf_token": token}, status=303)
    log_in(testapp, "chief", PASSWORD)
    create(testapp, "team", receiver.url)
    testapp.get("/namespaces/nosuch/webhooks", status=404)
    assert count_rows(db, webhooks) == 2


def test_forms_need_the_csrf_token(testapp, make_user, db, receiver):
    make_user("ada", PASSWORD)
    log_in(testapp, "ada", PASSWORD)
    testapp.post("/namespaces/ada/webhooks", {"url": receiver.url, "events": "push"}, status=400)
    testapp.post("/namespaces/ada/webhooks", {"url": receiver.url, "events": "push", "csrf_token": "x"}, status=400)
    assert count_rows(db, webhooks) == 0
    create(testapp, "ada", receiver.url)
    [webhook_id] = webhook_ids(db)
    for action in ("disable", "delete", "ping"):
        testapp.post(f"/namespaces/ada/webhooks/{webhook_id}/{action}", {}, status=400)
    assert count_rows(db, webhooks) == 1 and count_rows(db, webhook_deliveries) == 0
    db.rollback()
    assert db.execute(sa.select(webhooks.c.enabled)).scalar_one()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://hooks.example/in", "starts with http:// or https://"),
        ("http://10.0.0.1/in", "10.0.0.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data", "link-local address"),
        ("http://[::ffff:10.1.1.1]/in", "private address"),
        ("http://user:pw@hooks.example/in", "user name or password"),
        ("http://no-such-host.invalid/in", "does not resolve"),
        ("http://a..b/hook", "not a valid name"),  # the idna codec's UnicodeError was a 500
        ("http://" + "a" * 64 + ".example.com/hook", "not a valid name"),
        ("https://hooks.example/ü", "may only hold ASCII characters"),  # would raise at every delivery attempt
        ("https://hooks.example/in?to=ü", "may only hold ASCII characters"),
    ],
)
def test_a_bad_url_is_refused_with_a_clear_400_page(testapp, make_user, db, url, message):
    make_user("ada", PASSWORD)
    log_in(testapp, "ada", PASSWORD)
    page = create(testapp, "ada", url, status=400, secret="a secret that is long enough")
    assert message in page.text
    assert "a secret that is long enough" not in page.text  # never sent back
    assert count_rows(db, webhooks) == 0 and audited(db, "webhook_created") == []


class PrivateName:
    def resolve(self, host: str, port: int) -> list[str]:
        return ["10.0.0.5"]


def test_a_name_resolving_to_a_private_address_is_refused_without_saying_which(testapp, make_user, db, caplog):
    caplog.set_level(logging.INFO, logger="stevedore.web.ui.webhooks")
    testapp.app.registry.webhook_resolver = PrivateName()
    make_user("ada", PASSWORD)
    log_in(testapp, "ada", PASSWORD)
    page = create(testapp, "ada", "http://db.internal/in", status=400)
    assert "db.internal resolves to a non-public address" in page.text
    assert "10.0.0.5" not in page.text and "private address" not in page.text  # no map of the internal DNS
    assert "db.internal resolves to 10.0.0.5 is a private address" in caplog.text  # for the operators
    assert count_rows(db, webhooks) == 0


def test_urls_are_listed_audited_and_flashed_without_their_path_and_query(testapp, make_user, db, receiver):
    make_user("ada", PASSWORD)
    log_in(testapp, "ada", PASSWORD)
    url = receiver.url + "/T00000/B00000/XXXXSECRETPATH?token=querysecret"
    created = create(testapp, "ada", url)
    base = f"http://127.0.0.1:{receiver.port}"

    def leaks(text: str) -> bool:
        return "SECRETPATH" in text or "querysecret" in text

    assert f"{base}/hook/…" in created.text and not leaks(created.text)
    [webhook_id] = webhook_ids(db)
    db.rollback()
    assert db.execute(sa.select(webhooks.c.url)).scalar_one() == url  # the database keeps it whole
    listed = testapp.get("/namespaces/ada/webhooks")
    assert f"{base}/hook/…" in listed.text and not leaks(listed.text)
    assert not leaks(testapp.get(f"/namespaces/ada/webhooks/{webhook_id}/deliveries").text)
    for action in ("disable", "enable", "ping", "delete"):
        flashed = act(testapp, "ada", webhook_id, action).follow()
        assert f"{base}/…" in flashed.text and not leaks(flashed.text), action
    events = [e for a in ("webhook_created", "webhook_updated", "webhook_deleted") for e in audited(db, a)]
    assert len(events) == 4
    assert all(e.target == f"{base}/…" and not leaks(e.detail or "") for e in events)


def test_disable_enable_delete_and_ping_are_audited(testapp, make_user, db, receiver):
    make_user("ada", PASSWORD)
    log_in(testapp, "ada", PASSWORD)
    create(testapp, "ada", receiver.url)
    [webhook_id] = webhook_ids(db)
    act(testapp, "ada", webhook_id, "disable")
    db.rollback()
    assert db.execute(sa.select(webhooks.c.enabled)).scalar_one() is False
    push_image(testapp, basic("ada", PASSWORD), "ada/app", "v1")
    assert count_rows(db, webhook_deliveries) == 0  # a disabled webhook hears nothing
    act(testapp, "ada", webhook_id, "enable")
    act(testapp, "ada", webhook_id, "ping")
    db.rollback()
    assert [r.action for r in db.execute(sa.select(webhook_deliveries))] == ["ping"]
    assert [e.detail for e in audited(db, "webhook_updated")] == [
        f"webhook {webhook_id} disabled",
        f"webhook {webhook_id} enabled",
    ]
    act(testapp, "ada", webhook_id, "delete")
    assert count_rows(db, webhooks) == 0 and count_rows(db, webhook_deliveries) == 0
    [deleted] = audited(db, "webhook_deleted")
    assert deleted.target == f"http://127.0.0.1:{receiver.port}/…" and deleted.namespace == "ada"
    act(testapp, "ada", webhook_id, "delete")  # gone already: a message, not an error page
    assert "has no webhook" in testapp.get("/namespaces/ada/webhooks").text
    token = csrf_token(testapp.get("/namespaces/ada/webhooks"))
    testapp.post(f"/namespaces/ada/webhooks/{webhook_id}/explode", {"csrf_token": token}, status=404)


def test_the_delivery_log_shows_deliveries_and_sends_a_failed_one_again(testapp, make_user, components, db, receiver):
    from stevedore.web.ui.webhooks import build_deliverer

    make_user("ada", PASSWORD)
    log_in(testapp, "ada", PASSWORD)
    create(testapp, "ada", receiver.url)
    [webhook_id] = webhook_ids(db)
    push_image(testapp, basic("ada", PASSWORD), "ada/app", "v1")
    receiver.answers = [500]
    assert build_deliverer(components).run_once().retried == 1
    log = testapp.get(f"/namespaces/ada/webhooks/{webhook_id}/deliveries")
    assert "ada/app:v1" in log.text and "HTTP 500" in log.text and ">pending<" in log.text
    assert "Send again" not in log.text

    db.rollback()
    db.execute(sa.update(webhook_deliveries).values(state="failed", next_attempt_at=None))
    db.commit()
    log = testapp.get(f"/namespaces/ada/webhooks/{webhook_id}/deliveries")
    assert ">failed<" in log.text and "Send again" in log.text
    [delivery_id] = db.execute(sa.select(webhook_deliveries.c.id)).scalars()
    db.rollback()
    testapp.post(
        f"/namespaces/ada/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
        {"csrf_token": csrf_token(log)},
        status=303,
    )
    db.rollback()
    [row] = db.execute(sa.select(webhook_deliveries)).all()
    assert (row.state, row.attempts) == ("pending", 0)
    assert build_deliverer(components).run_once().sent == 1
    assert ">sent<" in testapp.get(f"/namespaces/ada/webhooks/{webhook_id}/deliveries").text
    # Another namespace's admin cannot read this log.
    make_user("bob", PASSWORD)
    testapp.post("/logout", {"csrf_token": csrf_token(log)}, status=303)
    log_in(testapp, "bob", PASSWORD)
    testapp.get(f"/namespaces/ada/webhooks/{webhook_id}/deliveries", status=403)
    testapp.get(f"/namespaces/bob/webhooks/{webhook_id}/deliveries", status=404)
