"""Webhooks end to end, on SQLite and PostgreSQL, with a real HTTP receiver on loopback (which the settings allow):
pushes and deletions over /v2/ queue signed deliveries in their own transaction; deliverers send them, retry with
backoff, pick up what an earlier process left, never send an event twice when they race, and refuse a target whose
name resolves to a forbidden address at delivery time (DNS rebinding)."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
import transaction
import webtest

from stevedore.adapters.sql.engine import join_transaction
from stevedore.adapters.sql.tables_webhooks import webhook_deliveries
from stevedore.adapters.sql.webhooks import SqlWebhookStore
from stevedore.adapters.webhook_delivery import Deliverer, PassResult
from stevedore.domain.lifecycle import EventAction
from stevedore.domain.webhooks import (
    CONTENT_TYPE,
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    OutboxEntry,
    Webhook,
    verify,
)
from stevedore.web.app import build_components, make_app
from stevedore.web.settings import Settings
from stevedore.web.ui.webhooks import build_deliverer
from tests.integration.conftest import SECRET, TOKEN_SIGNING_KEY
from tests.integration.protocol.helpers import basic, push_image
from tests.integration.services import stevedore_cli, write_ini

HOOK_SECRET = "a webhook secret of some length"
PASSWORD = "correct horse battery"
AUTH = basic("alice", PASSWORD)


class Receiver:
    """An HTTP server on loopback that records every POST and answers with the statuses queued (then 200)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[int] = []
        self.delay = 0.0
        self.drip = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    status = receiver.answers.pop(0) if receiver.answers else 200
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(status)
                try:
                    for _ in range(receiver.drip):  # a header every 0.3 s: no single read waits long
                        self.send_header("X-Drip", "x")
                        self.flush_headers()
                        time.sleep(0.3)
                except OSError:  # the deliverer hung up, as it should
                    return
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[dict[str, Any]]:
        return [event for request in self.requests for event in json.loads(request["body"])["events"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def hook_settings(database_url: str, tmp_path, **extra: str) -> Settings:
    return Settings.from_mapping(
        {
            "stevedore.database_url": database_url,
            "stevedore.storage_url": f"file://{tmp_path}/blobs",
            "stevedore.bcrypt_rounds": "4",
            "stevedore.blob_fsync": "false",
            "stevedore.public_url": "http://registry.example",  # not https: webtest would drop its Secure cookies
            "stevedore.webhook_allowed_networks": "127.0.0.0/8",
            "stevedore.webhook_timeout_seconds": "3",
            **{f"stevedore.{key}": value for key, value in extra.items()},
        },
        environ={"STEVEDORE_SECRET_KEY": SECRET, "STEVEDORE_TOKEN_SIGNING_KEYS": TOKEN_SIGNING_KEY},
    )


@pytest.fixture
def settings(database_url, tmp_path):
    return hook_settings(database_url, tmp_path)


def add_webhook(components, url: str, events=(EventAction.PUSH, EventAction.DELETE), namespace="alice") -> int:
    session = components.write_sessions()
    with transaction.manager:
        join_transaction(session)
        webhook = SqlWebhookStore(session).add(
            Webhook(namespace, url, HOOK_SECRET, frozenset(events), True, datetime.now(UTC), "alice")
        )
    session.close()
    assert webhook.id is not None
    return webhook.id


def rows(components) -> list[Any]:
    with components.read_sessions() as session:
        return list(session.execute(sa.select(webhook_deliveries).order_by(webhook_deliveries.c.id)))


class Later:
    """A clock `offset` ahead of the system's."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


def test_push_and_delete_over_http_send_signed_deliveries(testapp, components, user, receiver):
    add_webhook(components, receiver.url)
    pushed = push_image(testapp, AUTH, "alice/app", "v1")
    [queued] = rows(components)
    assert queued.state == "pending" and queued.attempts == 0
    assert receiver.requests == []  # nothing is sent from the request itself

    assert build_deliverer(components).run_once().sent == 1
    [request] = receiver.requests
    headers, body = request["headers"], request["body"]
    assert request["path"] == "/hook"
    assert headers["Content-Type"] == CONTENT_TYPE
    assert headers[SIGNATURE_HEADER] == "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert verify(HOOK_SECRET, body, headers[SIGNATURE_HEADER])
    assert abs(int(headers[TIMESTAMP_HEADER]) - time.time()) < 60
    [event] = json.loads(body)["events"]
    assert headers[EVENT_ID_HEADER] == event["id"]
    assert event["action"] == "push"
    assert event["actor"] == {"name": "alice"}
    assert event["target"] == {
        "repository": "alice/app",
        "digest": pushed.digest,
        "mediaType": pushed.media_type,
        "size": len(pushed.body),
        "length": len(pushed.body),
        "tag": "v1",
        "url": f"http://registry.example/v2/alice/app/manifests/{pushed.digest}",
    }
    assert event["request"]["host"] == "registry.example" and event["request"]["method"] == "PUT"

    testapp.delete("/v2/alice/app/manifests/v1", headers=AUTH, status=202)
    assert build_deliverer(components).run_once().sent == 1
    deleted = receiver.events()[1]
    assert deleted["action"] == "delete"
    assert deleted["target"]["tag"] == "v1" and deleted["target"]["digest"] == pushed.digest
    assert verify(HOOK_SECRET, receiver.requests[1]["body"], receiver.requests[1]["headers"][SIGNATURE_HEADER])
    assert [(r.state, r.attempts, r.last_status) for r in rows(components)] == [("sent", 1, 200), ("sent", 1, 200)]


def test_events_a_webhook_does_not_want_and_other_namespaces_queue_nothing(
    testapp, components, make_user, user, receiver
):
    add_webhook(components, receiver.url, events=(EventAction.DELETE,))
    add_webhook(components, receiver.url, namespace="bob")
    push_image(testapp, AUTH, "alice/app", "v1")
    assert rows(components) == []
    testapp.delete("/v2/alice/app/manifests/v1", headers=AUTH, status=202)
    assert [r.action for r in rows(components)] == ["delete"]


def test_a_push_that_rolls_back_after_queueing_sends_nothing(testapp, components, user, receiver, monkeypatch):
    """The outbox rows are written in the push's transaction: a failure after they are written leaves none."""
    add_webhook(components, receiver.url)
    original = SqlWebhookStore.enqueue

    def enqueue_then_fail(self, entries, now):
        original(self, entries, now)
        assert entries
        raise RuntimeError("the push fails after its deliveries were queued")

    monkeypatch.setattr(SqlWebhookStore, "enqueue", enqueue_then_fail)
    with pytest.raises(webtest.AppError, match="500"):
        push_image(testapp, AUTH, "alice/app", "v1")
    monkeypatch.undo()
    assert rows(components) == []
    assert build_deliverer(components).run_once().total == 0 and receiver.requests == []
    push_image(testapp, AUTH, "alice/app", "v1")
    assert len(rows(components)) == 1


def test_a_receiver_answering_500_gets_a_retry(testapp, components, user, receiver):
    add_webhook(components, receiver.url)
    push_image(testapp, AUTH, "alice/app", "v1")
    receiver.answers = [500]
    assert build_deliverer(components).run_once().retried == 1
    [row] = rows(components)
    assert (row.state, row.attempts, row.last_status, row.last_error) == ("pending", 1, 500, "HTTP 500")
    due = row.next_attempt_at.replace(tzinfo=UTC) if row.next_attempt_at.tzinfo is None else row.next_attempt_at
    assert timedelta(seconds=7) < due - datetime.now(UTC) < timedelta(seconds=13)  # 10 s, with jitter

    assert build_deliverer(components).run_once().total == 0  # not due yet
    later = build_deliverer(components)
    later.clock = Later(timedelta(seconds=15))
    assert later.run_once().sent == 1
    first, second = receiver.requests
    assert first["body"] == second["body"]
    assert first["headers"][EVENT_ID_HEADER] == second["headers"][EVENT_ID_HEADER]
    [row] = rows(components)
    assert (row.state, row.attempts, row.last_status, row.last_error) == ("sent", 2, 200, None)


def test_a_delivery_fails_for_good_after_the_last_attempt(components, user, receiver):
    from stevedore.domain.webhooks import MAX_ATTEMPTS

    webhook_id = add_webhook(components, receiver.url)
    enqueue(components, webhook_id, 1)
    receiver.answers = [503] * MAX_ATTEMPTS
    deliverer = build_deliverer(components)
    for attempt in range(MAX_ATTEMPTS):
        deliverer.clock = Later(timedelta(days=attempt))
        assert deliverer.run_once().total == 1
    [row] = rows(components)
    assert (row.state, row.attempts, row.next_attempt_at) == ("failed", MAX_ATTEMPTS, None)
    deliverer.clock = Later(timedelta(days=30))
    assert deliverer.run_once().total == 0


def test_redirects_are_not_followed(components, user, receiver):
    webhook_id = add_webhook(components, receiver.url)
    enqueue(components, webhook_id, 1)
    receiver.answers = [302]
    assert build_deliverer(components).run_once().retried == 1
    assert [r["path"] for r in receiver.requests] == ["/hook"]
    [row] = rows(components)
    assert row.last_status == 302 and "redirect" in row.last_error


def test_a_slow_receiver_is_cut_off_at_the_timeout(database_url, tmp_path, user, receiver):
    components = build_components(hook_settings(database_url, tmp_path, webhook_timeout_seconds="1"))
    try:
        enqueue(components, add_webhook(components, receiver.url), 1)
        receiver.delay = 3
        started = time.monotonic()
        assert build_deliverer(components).run_once().retried == 1
        assert time.monotonic() - started < 2.5
        assert "timed out" in rows(components)[0].last_error
        # One that answers at once but drips its headers: each read is quick, the whole is cut off all the same.
        receiver.delay, receiver.drip = 0, 15
        enqueue(components, 1, 1)
        started = time.monotonic()
        assert build_deliverer(components).run_once().retried == 1
        assert time.monotonic() - started < 2.5
        assert "timed out" in rows(components)[1].last_error
    finally:
        components.engine.dispose()


def test_pending_deliveries_are_sent_by_a_new_process_after_a_restart(database_url, tmp_path, user, receiver):
    """The app that queued them is gone before any was sent; a command run in a process of its own (as cron would,
    or a restarted server's worker) finds them in the database."""
    components = build_components(hook_settings(database_url, tmp_path))
    add_webhook(components, receiver.url)
    app = webtest.TestApp(make_app(components))
    push_image(app, AUTH, "alice/app", "v1")
    push_image(app, AUTH, "alice/app", "v2", seed="other")
    components.engine.dispose()  # the "crash": nothing was delivered
    assert receiver.requests == []

    ini = str(tmp_path / "restart.ini")
    extra = "stevedore.webhook_allowed_networks = 127.0.0.0/8\nstevedore.public_url = https://registry.example"
    write_ini(ini, database_url=database_url, storage_dir=str(tmp_path / "blobs"), port=1, extra=extra)
    result = stevedore_cli(ini, "webhooks", "deliver")
    assert result.returncode == 0, result.stderr
    assert "2 sent" in result.stdout
    assert sorted(e["target"]["tag"] for e in receiver.events()) == ["v1", "v2"]
    again = stevedore_cli(ini, "webhooks", "deliver")
    assert again.returncode == 0, again.stderr
    assert "0 sent" in again.stdout and len(receiver.requests) == 2


def enqueue(components, webhook_id: int, count: int) -> list[str]:
    session = components.write_sessions()
    ids = [f"event-{i}" for i in range(count)]
    with transaction.manager:
        join_transaction(session)
        SqlWebhookStore(session).enqueue(
            [OutboxEntry(webhook_id, i, "push", json.dumps({"events": [{"id": i}]})) for i in ids],
            datetime.now(UTC) - timedelta(seconds=1),
        )
    session.close()
    return ids


def test_deliverers_racing_on_two_nodes_send_each_event_once(database_url, tmp_path, user, receiver):
    nodes = [build_components(hook_settings(database_url, tmp_path)) for _ in range(2)]
    try:
        ids = enqueue(nodes[0], add_webhook(nodes[0], receiver.url), 40)
        receiver.delay = 0.01
        deliverers = [build_deliverer(node) for node in nodes for _ in range(3)]  # three threads a node
        results = []
        threads = [threading.Thread(target=lambda d=d: results.append(d.run_once())) for d in deliverers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        sent = [r["headers"][EVENT_ID_HEADER] for r in receiver.requests]
        assert sorted(sent) == sorted(ids)  # every event, none twice
        assert sum(r.sent for r in results) == 40
        assert sum(1 for r in results if r.sent) > 1  # they did share the work
        assert {(r.state, r.attempts) for r in rows(nodes[0])} == {("sent", 1)}
    finally:
        for node in nodes:
            node.engine.dispose()


def test_an_expired_lease_lets_another_deliverer_take_the_row(components, user, receiver):
    webhook_id = add_webhook(components, receiver.url)
    enqueue(components, webhook_id, 1)
    first = build_deliverer(components)
    claimed = first.queue.claim(datetime.now(UTC), first.lease)  # a deliverer that dies holding it
    assert claimed is not None
    assert build_deliverer(components).run_once().total == 0  # held
    later = build_deliverer(components)
    later.clock = Later(first.lease + timedelta(seconds=1))
    assert later.run_once().sent == 1
    assert first.queue.sent(claimed, 200, datetime.now(UTC)) is False  # the late result changes nothing
    assert len(receiver.requests) == 1


class Rebinding:
    """A resolver whose answer for the name changes (DNS rebinding)."""

    def __init__(self, answer: list[str]) -> None:
        self.answer = answer
        self.asked: list[str] = []

    def resolve(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        return list(self.answer)


def test_a_name_rebound_to_a_forbidden_address_is_refused_at_delivery(components, user, receiver, caplog):
    caplog.set_level(logging.INFO, logger="stevedore.adapters.webhook_delivery")
    url = f"http://hooks.example:{receiver.port}/hook"
    add_webhook(components, url)  # saved while the name resolved to a public address
    enqueue(components, 1, 1)
    resolver = Rebinding(["169.254.169.254"])
    deliverer: Deliverer = build_deliverer(components, resolver=resolver)
    assert deliverer.run_once().retried == 1
    [row] = rows(components)
    # The delivery log (which the namespace's admins read) does not say which address; the server's log does.
    assert "resolves to a non-public address" in row.last_error and row.last_status is None
    assert "169.254.169.254" not in row.last_error
    assert "hooks.example resolves to 169.254.169.254 is a link-local address" in caplog.text
    assert receiver.requests == [] and resolver.asked == ["hooks.example"]

    resolver.answer = ["93.184.215.14", "10.0.0.8"]  # one bad address among good ones refuses the whole name
    deliverer.clock = Later(timedelta(minutes=1))
    assert deliverer.run_once().retried == 1
    assert "10.0.0.8" not in rows(components)[0].last_error and "10.0.0.8 is a private address" in caplog.text


def test_the_connection_goes_to_the_checked_address_with_the_name_in_host(components, user, receiver):
    url = f"http://hooks.example:{receiver.port}/hook"
    add_webhook(components, url)
    enqueue(components, 1, 1)
    resolver = Rebinding(["127.0.0.1"])  # allowed by the settings; the name itself resolves nowhere
    assert build_deliverer(components, resolver=resolver).run_once().sent == 1
    [request] = receiver.requests
    assert request["headers"]["Host"] == f"hooks.example:{receiver.port}"
    assert resolver.asked == ["hooks.example"]  # resolved once: the connection used the checked address


def test_loopback_is_refused_at_delivery_without_the_setting(database_url, tmp_path, user, receiver):
    components = build_components(hook_settings(database_url, tmp_path, webhook_allowed_networks=""))
    try:
        enqueue(components, add_webhook(components, receiver.url), 1)
        assert build_deliverer(components).run_once().retried == 1
        assert "127.0.0.1 is a loopback address" in rows(components)[0].last_error
        assert receiver.requests == []
    finally:
        components.engine.dispose()


class Exploding:
    """A sender with a bug: every send raises, with the secret and the whole URL in the exception's message."""

    timeout = 3.0

    def __init__(self) -> None:
        self.calls = 0

    def send(self, url: str, body: bytes, headers: dict[str, str]) -> Any:
        self.calls += 1
        raise RuntimeError(f"cannot send to {url} with {HOOK_SECRET}")


def test_a_sender_that_raises_records_a_failed_attempt_and_the_round_goes_on(components, user, receiver, caplog):
    caplog.set_level(logging.INFO, logger="stevedore.adapters.webhook_delivery")
    secret_url = receiver.url + "/T0/B0/XXXXSECRETPATH?token=querysecret"
    webhook_id = add_webhook(components, secret_url)
    enqueue(components, webhook_id, 2)
    deliverer = build_deliverer(components)
    deliverer.sender = Exploding()  # type: ignore[assignment]
    started = datetime.now(UTC)
    assert deliverer.run_once() == PassResult(retried=2)  # both rows tried: the first one did not end the round
    for row in rows(components):
        assert (row.state, row.attempts, row.claim, row.claimed_until) == ("pending", 1, None, None)
        assert row.last_error == "internal error (RuntimeError): see the server's log"
        due = row.next_attempt_at if row.next_attempt_at.tzinfo else row.next_attempt_at.replace(tzinfo=UTC)
        assert due > started + timedelta(seconds=5)  # a backoff, as after any failed attempt
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2 and all(f"webhook {webhook_id}, delivery" in r.getMessage() for r in errors)
    assert "Traceback" in caplog.text and "RuntimeError: cannot send to" in caplog.text
    assert HOOK_SECRET not in caplog.text and "SECRETPATH" not in caplog.text and "querysecret" not in caplog.text
    assert len([r for r in caplog.records if r.levelno == logging.INFO]) == 0  # logged once, not twice
    # Nothing due until the backoff has passed; then it is tried again.
    assert deliverer.run_once() == PassResult()
    deliverer.clock = Later(timedelta(seconds=20))
    assert deliverer.run_once() == PassResult(retried=2)
    assert [row.attempts for row in rows(components)] == [2, 2]


def test_a_non_ascii_url_saved_before_the_check_fails_for_good_at_once(components, user, receiver):
    webhook_id = add_webhook(components, receiver.url + "/ü")  # the store takes it; the page now refuses it
    enqueue(components, webhook_id, 1)
    assert build_deliverer(components).run_once() == PassResult(failed=1)
    [row] = rows(components)
    assert (row.state, row.attempts, row.claim) == ("failed", 1, None)
    assert "ASCII" in row.last_error and receiver.requests == []


def test_deliveries_are_counted_in_the_metrics(components, user, receiver):
    from stevedore.web import metrics

    enqueue(components, add_webhook(components, receiver.url), 2)
    receiver.answers = [500]

    def value(outcome: str) -> float:
        metrics._state.webhook_metrics()
        registry = metrics._state.registry
        assert registry is not None
        return registry.get_sample_value("stevedore_webhook_deliveries_total", {"outcome": outcome}) or 0.0

    before = {o: value(o) for o in ("sent", "retried")}
    build_deliverer(components).run_once()
    assert value("sent") - before["sent"] == 1 and value("retried") - before["retried"] == 1
    body, _ = metrics.exposition()
    assert b"stevedore_webhook_delivery_duration_seconds_count" in body


@pytest.mark.server
def test_a_served_push_is_delivered_by_the_servers_own_workers(tmp_path, receiver):
    """`pserve` with two worker processes: each runs its delivery thread (started after the fork); a push over
    HTTP reaches the receiver with no command run, once."""
    import base64
    import urllib.request

    from tests.integration.protocol.helpers import descriptor, digest, image_manifest
    from tests.integration.services import WaitressProcess, free_port

    port = free_port()
    ini = str(tmp_path / "served.ini")
    extra = "stevedore.webhook_allowed_networks = 127.0.0.0/8"
    database_url = f"sqlite:///{tmp_path}/stevedore.sqlite"
    write_ini(ini, database_url=database_url, storage_dir=str(tmp_path / "blobs"), port=port, extra=extra,
              server_extra="workers = 2")  # fmt: skip
    for args, stdin in ((("db", "upgrade"), None), (("user", "create", "alice", "--password-stdin"), PASSWORD)):
        assert stevedore_cli(ini, *args, stdin=stdin).returncode == 0
    components = build_components(hook_settings(database_url, tmp_path))
    try:
        add_webhook(components, receiver.url)
    finally:
        components.engine.dispose()
    server = WaitressProcess(ini, port, str(tmp_path / "server.log"))
    server.start()
    try:
        auth = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
        base = f"http://127.0.0.1:{port}/v2/alice/app"

        def send(method: str, url: str, body: bytes, content_type: str) -> int:
            request = urllib.request.Request(url, data=body, method=method)
            request.add_header("Authorization", auth)
            request.add_header("Content-Type", content_type)
            with urllib.request.urlopen(request, timeout=10) as answer:
                return int(answer.status)

        config, layer = b'{"os":"linux"}', b"a layer" * 10
        for blob in (config, layer):
            assert send("POST", f"{base}/blobs/uploads/?digest={digest(blob)}", blob, "application/octet-stream") == 201
        manifest = image_manifest(
            descriptor("application/vnd.oci.image.config.v1+json", config),
            [descriptor("application/vnd.oci.image.layer.v1.tar", layer)],
        )
        assert send("PUT", f"{base}/manifests/v1", manifest, "application/vnd.oci.image.manifest.v1+json") == 201
        deadline = time.monotonic() + 20
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1)  # time for a second, wrong, delivery to arrive
        [event] = receiver.events()
        assert event["target"]["tag"] == "v1" and event["target"]["digest"] == digest(manifest)
    finally:
        server.stop()
