"""GET /v2/: the API version check, and who gets in."""

import base64


def basic(username, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def test_anonymous_ping_is_challenged(testapp):
    response = testapp.get("/v2/", status=401)
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'realm="http://localhost/v2/token"' in challenge
    assert response.json["errors"][0]["code"] == "UNAUTHORIZED"


def test_user_with_right_password_gets_200_and_empty_object(testapp, user):
    response = testapp.get("/v2/", headers=basic(*user), status=200)
    assert response.json == {}
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_wrong_password_and_unknown_user_are_401(testapp, user):
    testapp.get("/v2/", headers=basic(user[0], "not the password"), status=401)
    testapp.get("/v2/", headers=basic("mallory", user[1]), status=401)
    testapp.get("/v2/", headers={"Authorization": "Basic !!!notbase64"}, status=401)


def test_cached_credentials_still_reject_a_wrong_password(testapp, user):
    testapp.get("/v2/", headers=basic(*user), status=200)
    testapp.get("/v2/", headers=basic(*user), status=200)
    testapp.get("/v2/", headers=basic(user[0], user[1] + "x"), status=401)


def test_unknown_v2_path_is_a_json_404(testapp, user):
    response = testapp.get("/v2/nothing/here", headers=basic(*user), status=404)
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert response.json["errors"][0]["code"]


def test_front_page_renders_and_tells_how_to_set_up(testapp):
    page = testapp.get("/", status=200)
    assert "Stevedore" in page.text
    assert "user create" in page.text


def test_configured_public_url_is_used_in_the_realm_and_in_locations(components, user):
    import dataclasses

    import webtest

    from stevedore.web.app import make_app

    components.settings = dataclasses.replace(components.settings, public_url="https://registry.example.com")
    app = webtest.TestApp(make_app(components))
    challenge = app.get("/v2/", status=401).headers["WWW-Authenticate"]
    assert 'realm="https://registry.example.com/v2/token"' in challenge
    assert 'service="registry.example.com"' in challenge
    started = app.post("/v2/team/app/blobs/uploads/", headers=basic(*user), status=202)
    assert started.headers["Location"].startswith("https://registry.example.com/v2/team/app/blobs/uploads/")


def test_health_answers_anonymously_with_the_state_of_database_and_storage(testapp):
    response = testapp.get("/-/health", status=200)
    assert response.json == {"status": "ok", "database": "ok", "storage": "ok"}


def test_health_is_503_when_the_storage_fails(components, testapp):
    class BrokenStore:
        def stat(self, digest):
            raise OSError("disk gone")

    components.blob_store = BrokenStore()
    response = testapp.get("/-/health", status=503)
    assert response.json["storage"] == "unavailable" and response.json["database"] == "ok"


def test_every_request_is_logged_without_credentials(testapp, user, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="stevedore.requests"):
        testapp.get("/v2/", headers=basic(*user), status=200)
        testapp.get("/v2/", headers=basic(user[0], "not the password"), status=401)
    lines = [r.getMessage() for r in caplog.records if r.name == "stevedore.requests"]
    assert lines[0].startswith("GET /v2/ 200 ") and lines[0].endswith(" alice")
    assert lines[1].startswith("GET /v2/ 401 ")
    assert not any(user[1] in line or "Basic" in line for line in lines)
