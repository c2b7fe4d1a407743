"""`/-/healthy`, `/-/ready` (and its older name `/-/health`), and `/metrics`: who may read it, and that its labels
are route names, never a repository's. The metrics are this process's (every test's app counts into them), so each
test compares a value before and after what it does."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa
import webtest
from prometheus_client.parser import text_string_to_metric_families

from stevedore.adapters.sql.tables_audit import audit_events
from stevedore.web.app import make_app
from tests.integration.protocol.helpers import basic, bearer, digest, push_blob, push_image
from tests.integration.test_access_tokens import make_token
from tests.integration.web.helpers import log_in

METRICS_TOKEN = "scrape-me-0123456789abcdef"
ADMIN = ("operator", "the administrator's password")
MEMBER = ("alice", "correct horse battery")


@pytest.fixture
def people(make_user):
    make_user(*ADMIN, admin=True)
    make_user(*MEMBER)


def app_with(components, **settings) -> webtest.TestApp:
    components.settings = dataclasses.replace(components.settings, **settings)
    return webtest.TestApp(make_app(components))


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(app: webtest.TestApp) -> str:
    return app.get("/metrics", headers=basic(*ADMIN), status=200).text


# --- health -------------------------------------------------------------------------------------------------------
class BrokenStore:
    def stat(self, digest):
        raise OSError("disk gone")


def broken_database():
    raise OSError("the database went away")


def test_healthy_answers_while_database_and_storage_are_both_down(components, testapp):
    components.blob_store = BrokenStore()
    components.lookup_connections = broken_database
    response = testapp.get("/-/healthy", status=200)
    assert response.json == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"
    testapp.head("/-/healthy", status=200)
    assert testapp.get("/-/ready", status=503).json == {
        "status": "unavailable",
        "database": "unavailable",
        "storage": "unavailable",
    }


@pytest.mark.parametrize("path", ["/-/ready", "/-/health"])
def test_ready_and_its_older_name_check_database_and_storage(components, testapp, path):
    response = testapp.get(path, status=200)
    assert response.json == {"status": "ok", "database": "ok", "storage": "ok"}
    assert response.headers["Cache-Control"] == "no-store"
    components.lookup_connections = broken_database
    assert testapp.get(path, status=503).json == {"status": "unavailable", "database": "unavailable", "storage": "ok"}


# --- who may read /metrics ---------------------------------------------------------------------------------------
def test_metrics_are_closed_to_anonymous_callers_by_default(testapp, people):
    response = testapp.get("/metrics", status=401)
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert "stevedore_http_requests" not in response.text


def test_an_administrator_reads_the_metrics_in_prometheus_text_format(testapp, people):
    response = testapp.get("/metrics", headers=basic(*ADMIN), status=200)
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response.headers["Cache-Control"] == "no-store"
    assert "# TYPE stevedore_http_requests_total counter" in response.text
    families = {family.name for family in text_string_to_metric_families(response.text)}
    assert {"stevedore_http_requests", "stevedore_http_request_duration_seconds"} <= families


def test_openmetrics_is_answered_when_asked_for(testapp, people):
    response = testapp.get(
        "/metrics", headers={**basic(*ADMIN), "Accept": "application/openmetrics-text; version=1.0.0"}, status=200
    )
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


def test_a_member_a_wrong_password_and_an_admins_access_token_are_refused(components, testapp, people, db):
    assert "administrators" in testapp.get("/metrics", headers=basic(*MEMBER), status=403).text
    testapp.get("/metrics", headers=basic(ADMIN[0], "not the password"), status=401)
    db.rollback()
    failed = db.execute(sa.select(audit_events.c.detail).where(audit_events.c.action == "login_failed")).scalars()
    assert list(failed) == ["metrics"]  # audited as a refusal on /metrics, not on the registry
    _, secret = make_token(components, ADMIN[0], scope="delete")
    assert "access token" in testapp.get("/metrics", headers=basic(ADMIN[0], secret), status=403).text
    testapp.get("/metrics", headers=bearer(METRICS_TOKEN), status=401)  # no metrics token is set


def test_an_administrator_signed_in_on_the_pages_reads_them_and_a_member_does_not(testapp, people):
    log_in(testapp, *MEMBER)
    testapp.get("/metrics", status=403)
    testapp.reset()  # a new browser
    log_in(testapp, *ADMIN)
    testapp.get("/metrics", status=200)


def test_the_metrics_token_opens_them_and_another_bearer_does_not(components, people):
    app = app_with(components, metrics_token=METRICS_TOKEN)
    assert "stevedore_http_requests" in app.get("/metrics", headers=bearer(METRICS_TOKEN), status=200).text
    app.get("/metrics", headers=bearer(METRICS_TOKEN + "x"), status=401)
    app.get("/metrics", headers=bearer(METRICS_TOKEN[:-1]), status=401)
    app.get("/metrics", status=401)


def test_metrics_public_opens_them_to_anyone(components):
    app = app_with(components, metrics_public=True)
    assert "stevedore_http_requests" in app.get("/metrics", status=200).text


# --- what is counted -------------------------------------------------------------------------------------------------
def test_a_manifest_request_is_counted_under_its_route_and_never_names_the_repository(components, people):
    app = app_with(components, metrics_public=True)
    auth = basic(*ADMIN)
    pushed = push_image(app, auth, "hushhush/secret-project", "release-candidate")
    before = app.get("/metrics").text
    app.get("/v2/hushhush/secret-project/manifests/release-candidate", headers=auth, status=200)
    missing = app.get("/v2/hushhush/secret-project/manifests/no-such-tag", headers=auth, status=404)
    after = app.get("/metrics").text

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = {"route": "registry.manifest", "method": "GET"}
    assert grew("stevedore_http_requests_total", **route, status="200") == 1
    assert grew("stevedore_http_requests_total", **route, status="404") == 1
    sent = grew("stevedore_http_response_body_bytes_total", route="registry.manifest")
    assert sent == len(pushed.body) + len(missing.body)
    for secret in ("hushhush", "secret-project", "release-candidate", "no-such-tag", pushed.digest):
        assert secret not in after


def test_a_path_that_matches_no_route_is_counted_as_notfound(components):
    app = app_with(components, metrics_public=True)
    before = app.get("/metrics").text
    app.get("/no/such/page/for/anyone", status=404)
    after = app.get("/metrics").text
    labels = {"route": "notfound", "method": "GET", "status": "404"}
    assert value(after, "stevedore_http_requests_total", **labels) == (
        value(before, "stevedore_http_requests_total", **labels) + 1
    )
    assert "no/such/page" not in after


@pytest.mark.filterwarnings("ignore:Unknown REQUEST_METHOD")  # webtest's lint: what a client may send all the same
def test_an_unknown_method_is_counted_as_other(components):
    app = app_with(components, metrics_public=True)
    before = app.get("/metrics").text
    app.request("/-/healthy", method="BREW", status="*")
    after = app.get("/metrics").text
    assert "BREW" not in after

    def others(text: str) -> float:
        return sum(
            count
            for (name, labels), count in samples(text).items()
            if name == "stevedore_http_requests_total" and ("method", "other") in labels
        )

    assert others(after) == others(before) + 1


def test_bytes_in_and_out_and_upload_durations_are_counted(components, people):
    app = app_with(components, metrics_public=True)
    auth = basic(*ADMIN)
    data = b"layer bytes " * 5000
    before = app.get("/metrics").text
    blob = push_blob(app, auth, "team/app", data)  # POST, then the closing PUT with the whole blob
    whole = b"a monolithic blob " * 100
    app.post(
        f"/v2/team/app/blobs/uploads/?digest={digest(whole)}",
        params=whole,
        headers=auth,
        content_type="application/octet-stream",
        status=201,
    )
    assert app.get(f"/v2/team/app/blobs/{blob}", headers=auth, status=200).body == data
    app.head(f"/v2/team/app/blobs/{blob}", headers=auth, status=200)
    after = app.get("/metrics").text

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("stevedore_http_request_body_bytes_total", route="registry.upload") == len(data)
    assert grew("stevedore_http_request_body_bytes_total", route="registry.uploads") == len(whole)
    assert grew("stevedore_http_response_body_bytes_total", route="registry.blob") == len(data)  # not the HEAD
    assert grew("stevedore_blob_upload_duration_seconds_count", kind="session") == 1
    assert grew("stevedore_blob_upload_duration_seconds_count", kind="monolithic") == 1
    assert grew("stevedore_http_request_duration_seconds_count", route="registry.blob") == 2
