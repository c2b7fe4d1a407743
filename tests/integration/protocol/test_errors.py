"""Error bodies, the API version header and the 401 challenge on every /v2/ endpoint (distribution-spec "Error
Codes", "API Version Check")."""

import dataclasses
import re

from tests.integration.protocol.helpers import (
    API_VERSION,
    basic,
    digest,
    parse_challenge,
    push_blob,
    push_image,
)

BLOB = digest(b"some blob")
UPLOAD = "/v2/errors/repo/blobs/uploads/0b4a2e52-1e25-4d5f-9e6a-2a1f0b0d6c11"

ENDPOINTS = [
    ("GET", "/v2/"),
    ("GET", "/v2/_catalog"),
    ("GET", "/v2/errors/repo/tags/list"),
    ("GET", "/v2/errors/repo/manifests/latest"),
    ("HEAD", "/v2/errors/repo/manifests/latest"),
    ("PUT", "/v2/errors/repo/manifests/latest"),
    ("DELETE", f"/v2/errors/repo/manifests/{BLOB}"),
    ("GET", f"/v2/errors/repo/blobs/{BLOB}"),
    ("HEAD", f"/v2/errors/repo/blobs/{BLOB}"),
    ("DELETE", f"/v2/errors/repo/blobs/{BLOB}"),
    ("POST", "/v2/errors/repo/blobs/uploads/"),
    ("POST", f"/v2/errors/repo/blobs/uploads/?mount={BLOB}&from=errors/other"),
    ("GET", UPLOAD),
    ("PATCH", UPLOAD),
    ("PUT", f"{UPLOAD}?digest={BLOB}"),
    ("DELETE", UPLOAD),
    ("GET", f"/v2/errors/repo/referrers/{BLOB}"),
]


def assert_error_body(response, code):
    assert response.headers["Content-Type"].split(";")[0] == "application/json"
    body = response.json
    assert set(body) == {"errors"}
    assert body["errors"], body
    for error in body["errors"]:
        assert set(error) <= {"code", "message", "detail"}
        assert re.fullmatch(r"[A-Z_]+", error["code"])
        assert isinstance(error.get("message", ""), str)
    assert body["errors"][0]["code"] == code


def test_no_credentials_is_401_with_a_bearer_challenge_everywhere(testapp, user):
    # One database for every endpoint: the parametrized form costs a PostgreSQL database per case.
    push_image(testapp, basic(*user), "errors/repo", "latest", layer_count=1)
    for method, path in ENDPOINTS:
        response = testapp.request(path, method=method, body=b"", status="*")
        assert response.status_int == 401, (method, path, response.status)
        assert response.headers["Docker-Distribution-API-Version"] == API_VERSION, (method, path)
        scheme, params = parse_challenge(response.headers["WWW-Authenticate"])
        assert scheme == "Bearer", (method, path)
        assert params["realm"].endswith("/v2/token"), (method, path)
        assert params.get("service"), (method, path)
        if method != "HEAD":
            assert_error_body(response, "UNAUTHORIZED")


def test_wrong_password_is_401_everywhere(testapp, user, components):
    # As many wrong passwords as endpoints: more than the failed-login backoff lets through (test_login_backoff.py).
    components.settings = dataclasses.replace(components.settings, login_free_failures=len(ENDPOINTS))
    for method, path in ENDPOINTS:
        response = testapp.request(path, method=method, body=b"", headers=basic(user[0], "wrong"), status="*")
        assert response.status_int == 401, (method, path, response.status)
        assert response.headers["Docker-Distribution-API-Version"] == API_VERSION, (method, path)
        assert response.headers["WWW-Authenticate"].startswith("Bearer "), (method, path)


def test_challenge_names_the_repository_scope(testapp, user):
    pull = testapp.get("/v2/errors/scoped/tags/list", status=401)
    assert parse_challenge(pull.headers["WWW-Authenticate"])[1]["scope"] == "repository:errors/scoped:pull"
    push = testapp.post("/v2/errors/scoped/blobs/uploads/", status=401)
    scope = parse_challenge(push.headers["WWW-Authenticate"])[1]["scope"]
    assert scope.startswith("repository:errors/scoped:")
    assert "push" in scope.rsplit(":", 1)[1].split(",")
    catalog = testapp.get("/v2/_catalog", status=401)
    assert parse_challenge(catalog.headers["WWW-Authenticate"])[1]["scope"] == "registry:catalog:*"


def test_every_kind_of_response_carries_the_api_version(testapp, auth):
    image = push_image(testapp, auth, "errors/version", "v1", layer_count=1)
    responses = [
        testapp.get("/v2/", headers=auth, status=200),
        testapp.get("/v2/errors/version/manifests/v1", headers=auth, status=200),
        testapp.head(f"/v2/errors/version/blobs/{digest(image.blobs[0])}", headers=auth, status=200),
        testapp.post("/v2/errors/version/blobs/uploads/", headers=auth, status=202),
        testapp.get("/v2/errors/version/manifests/nope", headers=auth, status=404),
        testapp.get("/v2/errors/version/tags/list", headers=auth, status=200),
        testapp.get("/v2/Errors/version/tags/list", headers=auth, status=400),
        testapp.get("/v2/errors/unknown/tags/list", headers=auth, status=404),
        testapp.get("/v2/errors/version/nothing-here", headers=auth, status=404),
        testapp.post("/v2/errors/version/tags/list", headers=auth, status=[404, 405]),
        testapp.get(f"/v2/errors/version/blobs/{BLOB}", headers={**auth, "Range": "bytes=0-1"}, status=404),
    ]
    for response in responses:
        assert response.headers["Docker-Distribution-API-Version"] == API_VERSION, response.request.path


def test_invalid_repository_names_are_name_invalid(testapp, auth):
    for name in ("Upper", "errors/Upper", "a//b", "-lead", "trail-", "a/", "x" * 256, "a..b"):
        for response in (
            testapp.get(f"/v2/{name}/tags/list", headers=auth, status=400),
            testapp.get(f"/v2/{name}/manifests/latest", headers=auth, status=400),
            testapp.post(f"/v2/{name}/blobs/uploads/", headers=auth, status=400),
        ):
            assert_error_body(response, "NAME_INVALID")
            assert response.headers["Docker-Distribution-API-Version"] == API_VERSION


def test_valid_unusual_names_are_accepted(testapp, auth):
    for name in ("a", "a.b-c_d/e__f", "x" * 255, "very/deep/path/of/many/components"):
        push_image(testapp, auth, name, "v1", layer_count=1)
        assert testapp.get(f"/v2/{name}/tags/list", headers=auth, status=200).json["name"] == name


def test_invalid_blob_digest_is_digest_invalid(testapp, auth):
    push_blob(testapp, auth, "errors/digest", b"x")
    for bad in ("sha256:abc", "sha256:" + "g" * 64, "sha256:" + "A" * 64, "notadigest", "sha256" + "a" * 64, "sha256:"):
        response = testapp.get(f"/v2/errors/digest/blobs/{bad}", headers=auth, status=400)
        assert_error_body(response, "DIGEST_INVALID")


def test_unknown_digest_algorithm_is_400(testapp, auth):
    push_blob(testapp, auth, "errors/md5", b"x")
    md5 = "md5:" + "0" * 32
    for response in (
        testapp.get(f"/v2/errors/md5/blobs/{md5}", headers=auth, status=400),
        testapp.put(f"/v2/errors/md5/manifests/{md5}", params=b"{}", headers=auth, status=400),
        testapp.post(f"/v2/errors/md5/blobs/uploads/?digest={md5}", params=b"x", headers=auth, status=400),
    ):
        assert response.json["errors"][0]["code"] in ("DIGEST_INVALID", "UNSUPPORTED")


def test_invalid_reference_is_400_on_push_and_manifest_unknown_on_pull_and_delete(testapp, auth):
    push_image(testapp, auth, "errors/ref", "v1", layer_count=1)
    for reference, push_code in (
        ("sha256:short", "DIGEST_INVALID"),
        ("sha256:zzz", "DIGEST_INVALID"),
        (".INVALID_MANIFEST_NAME", "TAG_INVALID"),
        ("t" * 129, "TAG_INVALID"),
        ("a%2Fb", "TAG_INVALID"),  # an encoded '/' arrives decoded: a tag with a slash
        ("", "TAG_INVALID"),
    ):
        url = f"/v2/errors/ref/manifests/{reference}"
        push = testapp.put(url, params=b"{}", headers=auth, content_type="application/json", status=400)
        assert_error_body(push, push_code)
        assert_error_body(testapp.get(url, headers=auth, status=404), "MANIFEST_UNKNOWN")
        assert_error_body(testapp.delete(url, headers=auth, status=404), "MANIFEST_UNKNOWN")
    assert testapp.get("/v2/errors/ref/manifests/v1", headers=auth, status=200)


# distribution-spec "Error Codes", plus Docker's TAG_INVALID and PAGINATION_NUMBER_INVALID.
SPEC_CODES = {
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
    "TAG_INVALID",
    "PAGINATION_NUMBER_INVALID",
}

# Paths under /v2/ that no route takes as they are, and what each one is.
NO_ENDPOINT = [
    # An upload id that names no upload, also with extra or encoded segments (PATH_INFO arrives decoded).
    *[
        (method, f"/v2/errors/paths/blobs/uploads/{upload}{query}", 404, "BLOB_UPLOAD_UNKNOWN")
        for upload in ("abc", "abc/def", "abc%2Fdef", "abc/def/", "a%00b")
        for method, query in (("GET", ""), ("PATCH", ""), ("PUT", f"?digest={BLOB}"), ("DELETE", ""))
    ],
    ("PUT", "/v2/errors/paths/manifests/a%2Fb", 400, "TAG_INVALID"),
    ("GET", "/v2/errors/paths/manifests/a%2Fb", 404, "MANIFEST_UNKNOWN"),
    ("GET", "/v2/errors/paths/nothing-here", 404, "NAME_UNKNOWN"),
    ("GET", "/v2/errors/paths/", 404, "NAME_UNKNOWN"),
    ("DELETE", "/v2/errors/paths/blobs/", 404, "NAME_UNKNOWN"),
    ("GET", "/v2/token/extra", 404, "NAME_UNKNOWN"),
    ("GET", "/v2/errors/Paths/nothing", 400, "NAME_INVALID"),
    ("GET", "/v2/_catalog/extra", 400, "NAME_INVALID"),
    ("GET", "/v2//", 400, "NAME_INVALID"),
    # A route that exists, with a method it does not have.
    ("POST", "/v2/errors/paths/tags/list", 405, "UNSUPPORTED"),
    ("POST", "/v2/errors/paths/blobs/uploads/abc/def", 405, "UNSUPPORTED"),
]


def test_a_path_that_names_no_endpoint_still_gets_a_code_from_the_spec(testapp, auth):
    push_image(testapp, auth, "errors/paths", "v1", layer_count=1)
    for method, path, status, code in NO_ENDPOINT:
        response = testapp.request(path, method=method, body=b"", headers=auth, status="*")
        assert response.status_int == status, (method, path, response.status, response.body)
        assert_error_body(response, code)
        assert code in SPEC_CODES
        assert response.headers["Docker-Distribution-API-Version"] == API_VERSION


def test_a_path_that_names_no_endpoint_is_challenged_for_the_anonymous(testapp, user):
    for method, path, status, _code in NO_ENDPOINT:
        response = testapp.request(path, method=method, body=b"", status="*")
        if status == 405:
            assert_error_body(response, "UNSUPPORTED")
            continue
        assert response.status_int == 401, (method, path, response.status)
        assert_error_body(response, "UNAUTHORIZED")
        scheme, params = parse_challenge(response.headers["WWW-Authenticate"])
        assert scheme == "Bearer" and params["realm"].endswith("/v2/token"), (method, path)
        assert params.get("scope", "repository:errors/paths:").startswith("repository:errors/paths:"), (method, path)


def test_outside_v2_an_unknown_path_keeps_its_page(testapp, auth):
    response = testapp.get("/nothing/here", headers=auth, status=404)
    assert response.headers["Content-Type"].startswith("text/html")
    assert "Docker-Distribution-API-Version" not in response.headers


def test_error_bodies_have_the_spec_shape(testapp, auth):
    push_image(testapp, auth, "errors/shape", "v1", layer_count=1)
    assert_error_body(testapp.get("/v2/errors/shape/manifests/nope", headers=auth, status=404), "MANIFEST_UNKNOWN")
    assert_error_body(testapp.get(f"/v2/errors/shape/blobs/{BLOB}", headers=auth, status=404), "BLOB_UNKNOWN")
    assert_error_body(testapp.get("/v2/errors/none/tags/list", headers=auth, status=404), "NAME_UNKNOWN")
    assert_error_body(
        testapp.get(UPLOAD.replace("errors/repo", "errors/shape"), headers=auth, status=404), "BLOB_UPLOAD_UNKNOWN"
    )
