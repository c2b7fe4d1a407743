"""Deleting manifests, tags and blobs (distribution-spec "Content Management")."""

from tests.integration.protocol.helpers import (
    ACCEPT_ALL,
    OCI_MANIFEST,
    digest,
    error_codes,
    push_blob,
    push_image,
    put_manifest,
)


def get_manifest(testapp, auth, repo, reference, status=200):
    return testapp.get(f"/v2/{repo}/manifests/{reference}", headers={**auth, "Accept": ACCEPT_ALL}, status=status)


def test_delete_manifest_by_digest_removes_it_and_its_tags(testapp, auth):
    image = push_image(testapp, auth, "delete/by-digest", "v1")
    put_manifest(testapp, auth, "delete/by-digest", "v1-alias", image.body, OCI_MANIFEST)
    testapp.delete(f"/v2/delete/by-digest/manifests/{image.digest}", headers=auth, status=202)
    for reference in (image.digest, "v1", "v1-alias"):
        response = get_manifest(testapp, auth, "delete/by-digest", reference, status=404)
        assert error_codes(response) == ["MANIFEST_UNKNOWN"]
        testapp.head(f"/v2/delete/by-digest/manifests/{reference}", headers=auth, status=404)
    tags = testapp.get("/v2/delete/by-digest/tags/list", headers=auth, status="*")
    if tags.status_int == 200:
        assert tags.json["tags"] in ([], None)


def test_delete_by_tag_removes_only_that_tag(testapp, auth):
    image = push_image(testapp, auth, "delete/by-tag", "doomed")
    put_manifest(testapp, auth, "delete/by-tag", "kept", image.body, OCI_MANIFEST)
    testapp.delete("/v2/delete/by-tag/manifests/doomed", headers=auth, status=202)
    assert error_codes(get_manifest(testapp, auth, "delete/by-tag", "doomed", status=404)) == ["MANIFEST_UNKNOWN"]
    assert get_manifest(testapp, auth, "delete/by-tag", "kept").body == image.body
    assert get_manifest(testapp, auth, "delete/by-tag", image.digest).body == image.body
    assert testapp.get("/v2/delete/by-tag/tags/list", headers=auth).json["tags"] == ["kept"]


def test_deleted_manifest_can_be_pushed_again(testapp, auth):
    image = push_image(testapp, auth, "delete/again", "v1")
    testapp.delete(f"/v2/delete/again/manifests/{image.digest}", headers=auth, status=202)
    put_manifest(testapp, auth, "delete/again", "v1", image.body, OCI_MANIFEST)
    assert get_manifest(testapp, auth, "delete/again", "v1").body == image.body


def test_delete_unknown_manifest_is_404(testapp, auth):
    push_image(testapp, auth, "delete/unknown", "v1")
    for reference in (digest(b"never"), "no-such-tag"):
        response = testapp.delete(f"/v2/delete/unknown/manifests/{reference}", headers=auth, status=404)
        assert error_codes(response) == ["MANIFEST_UNKNOWN"]


def test_delete_manifest_in_one_repository_leaves_another(testapp, auth):
    first = push_image(testapp, auth, "delete/one", "v1")
    second = push_image(testapp, auth, "delete/two", "v1")
    assert first.digest == second.digest
    testapp.delete(f"/v2/delete/one/manifests/{first.digest}", headers=auth, status=202)
    assert get_manifest(testapp, auth, "delete/two", "v1").body == second.body


def test_delete_blob_hides_it_in_that_repository_only(testapp, auth):
    data = b"a blob two repositories share"
    blob = push_blob(testapp, auth, "delete/blob-a", data)
    push_blob(testapp, auth, "delete/blob-b", data)
    testapp.delete(f"/v2/delete/blob-a/blobs/{blob}", headers=auth, status=202)
    testapp.head(f"/v2/delete/blob-a/blobs/{blob}", headers=auth, status=404)
    response = testapp.get(f"/v2/delete/blob-a/blobs/{blob}", headers=auth, status=404)
    assert error_codes(response) == ["BLOB_UNKNOWN"]
    assert testapp.get(f"/v2/delete/blob-b/blobs/{blob}", headers=auth, status=200).body == data


def test_delete_unknown_blob_is_404_blob_unknown(testapp, auth):
    push_blob(testapp, auth, "delete/no-blob", b"other")
    response = testapp.delete(f"/v2/delete/no-blob/blobs/{digest(b'missing')}", headers=auth, status=404)
    assert error_codes(response) == ["BLOB_UNKNOWN"]


def test_deleted_blob_can_be_pushed_again(testapp, auth):
    data = b"comes back"
    blob = push_blob(testapp, auth, "delete/blob-again", data)
    testapp.delete(f"/v2/delete/blob-again/blobs/{blob}", headers=auth, status=202)
    push_blob(testapp, auth, "delete/blob-again", data)
    assert testapp.get(f"/v2/delete/blob-again/blobs/{blob}", headers=auth).body == data


def test_manifest_cannot_reference_a_blob_deleted_from_the_repository(testapp, auth):
    image = push_image(testapp, auth, "delete/blob-then-manifest", None)
    testapp.delete(f"/v2/delete/blob-then-manifest/manifests/{image.digest}", headers=auth, status=202)
    testapp.delete(f"/v2/delete/blob-then-manifest/blobs/{digest(image.blobs[1])}", headers=auth, status=202)
    response = put_manifest(testapp, auth, "delete/blob-then-manifest", "v1", image.body, OCI_MANIFEST, status=400)
    assert set(error_codes(response)) == {"MANIFEST_BLOB_UNKNOWN"}
