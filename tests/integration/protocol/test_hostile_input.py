"""Hostile and odd input found in review: each gets a clear 4xx and the store stays as it was — never a 500."""

from __future__ import annotations

from tests.integration.protocol.helpers import (
    OCI_MANIFEST,
    descriptor,
    digest,
    error_codes,
    image_manifest,
    parse_challenge,
    push_blob,
    put_manifest,
)

CONFIG = b'{"architecture":"amd64","os":"linux"}'


def pushed_manifest(testapp, auth, repo):
    config = descriptor("application/vnd.oci.image.config.v1+json", CONFIG)
    push_blob(testapp, auth, repo, CONFIG)
    return image_manifest(config, [])


def test_a_tag_with_a_trailing_newline_is_refused_and_not_stored(testapp, auth):
    body = pushed_manifest(testapp, auth, "hostile/newline")
    response = testapp.put(
        "/v2/hostile/newline/manifests/latest%0A", params=body, headers=auth, content_type=OCI_MANIFEST, status=400
    )
    assert error_codes(response) == ["TAG_INVALID"]
    response = put_manifest(testapp, auth, "hostile/newline", "v1", body, OCI_MANIFEST, status=400, tag="x\n")
    assert error_codes(response) == ["TAG_INVALID"]
    assert testapp.get("/v2/hostile/newline/tags/list", headers=auth).json["tags"] == []


def test_range_offsets_with_thousands_of_digits_are_not_a_500(testapp, auth):
    blob = push_blob(testapp, auth, "hostile/range", b"0123456789")
    huge = "9" * 5000
    response = testapp.get(f"/v2/hostile/range/blobs/{blob}", headers={**auth, "Range": f"bytes={huge}-"})
    assert response.status_int == 200 and response.body == b"0123456789"  # an unintelligible Range is ignored
    start = testapp.post("/v2/hostile/range/blobs/uploads/", headers=auth, status=202)
    response = testapp.request(
        start.headers["Location"], method="PATCH", body=b"x", headers={**auth, "Content-Range": f"0-{huge}"}, status=416
    )
    assert error_codes(response) == ["BLOB_UPLOAD_INVALID"]


def test_deeply_nested_manifest_json_is_manifest_invalid(testapp, auth):
    body = b"[" * 200_000 + b"]" * 200_000
    response = put_manifest(testapp, auth, "hostile/deep", "v1", body, OCI_MANIFEST, status=400)
    assert error_codes(response) == ["MANIFEST_INVALID"]


def test_an_undecodable_path_is_a_400_with_the_registry_error(testapp, auth):
    response = testapp.get("/v2/%ff/tags/list", headers=auth, status=400)
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert error_codes(response) == ["NAME_INVALID"]


def test_control_characters_in_last_and_upload_ids_are_refused(testapp, auth):
    pushed_manifest(testapp, auth, "hostile/nul")
    testapp.get("/v2/hostile/nul/tags/list?last=a%00b", headers=auth, status=400)
    testapp.get("/v2/_catalog?last=a%00b", headers=auth, status=400)
    response = testapp.get("/v2/hostile/nul/blobs/uploads/a%00b", headers=auth, status=404)
    assert error_codes(response) == ["BLOB_UPLOAD_UNKNOWN"]


def test_an_overlong_artifact_type_is_refused_on_every_database(testapp, auth):
    config = descriptor("application/vnd.oci.empty.v1+json", b"{}")
    push_blob(testapp, auth, "hostile/artifact", b"{}")
    body = image_manifest(config, [], artifact_type="application/" + "x" * 300)
    response = put_manifest(testapp, auth, "hostile/artifact", "v1", body, OCI_MANIFEST, status=400)
    assert error_codes(response) == ["MANIFEST_INVALID"]


def test_a_big_anonymous_token_form_is_refused_before_it_is_read(testapp):
    response = testapp.post(
        "/v2/token",
        params=b"grant_type=password&username=x&password=" + b"y" * (128 * 1024),
        content_type="application/x-www-form-urlencoded",
        status=413,
    )
    assert error_codes(response) == ["SIZE_INVALID"]


def test_a_user_name_with_a_nul_is_simply_unauthorized(testapp):
    import base64

    token = base64.b64encode(b"ali\x00ce:whatever").decode()
    testapp.get("/v2/", headers={"Authorization": f"Basic {token}"}, status=401)


def test_a_failed_finish_leaves_the_upload_retryable(testapp, auth):
    start = testapp.post("/v2/hostile/retry/blobs/uploads/", headers=auth, status=202)
    location = start.headers["Location"]
    testapp.request(location, method="PATCH", body=b"abc", headers=auth, status=202)
    wrong = testapp.request(
        f"{location}?digest={digest(b'abcdef')}", method="PUT", body=b"xyz", headers=auth, status=400
    )
    assert error_codes(wrong) == ["DIGEST_INVALID"]
    assert testapp.get(location, headers=auth, status=204).headers["Range"] == "0-2"
    testapp.request(f"{location}?digest={digest(b'abcdef')}", method="PUT", body=b"def", headers=auth, status=201)
    assert testapp.get(f"/v2/hostile/retry/blobs/{digest(b'abcdef')}", headers=auth).body == b"abcdef"


def test_a_quote_in_the_name_cannot_add_a_realm_to_the_challenge(testapp):
    hostile = "/v2/a%22,realm=%22http:%2f%2fevil.example%2ftoken%22,x=%22"
    for method, path in (
        ("GET", f"{hostile}/manifests/latest"),
        ("HEAD", f"{hostile}/manifests/latest"),
        ("POST", f"{hostile}/blobs/uploads/"),
        ("GET", f"{hostile}/tags/list"),
        ("GET", f"{hostile}/nowhere"),
    ):
        response = testapp.request(path, method=method, status=401)
        header = response.headers["WWW-Authenticate"]
        assert header.count("realm=") == 1 and "evil" not in header, (method, header)
        _scheme, params = parse_challenge(header)
        assert params["realm"] == "http://localhost/v2/token", header
        assert "scope" not in params, header  # no scope from a name that does not parse
        assert "evil" not in response.text


def test_a_hostile_host_header_cannot_break_out_of_the_challenge(testapp):
    response = testapp.get("/v2/team/app/manifests/latest", headers={"Host": 'evil"x\\y\x01z, realm="a'}, status=401)
    header = response.headers["WWW-Authenticate"]
    assert header.count('"') == 6, header  # realm, service and scope, each in its own quotes
    assert not any(ord(c) < 32 or c == "\\" for c in header), header
    _scheme, params = parse_challenge(header)
    assert set(params) == {"realm", "service", "scope"}, header
    assert params["realm"].startswith("http://evil%22x%5Cy%01z") and params["realm"].endswith("/v2/token"), header
    assert params["scope"] == "repository:team/app:pull"
