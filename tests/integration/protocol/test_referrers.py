"""GET /v2/<name>/referrers/<digest> (distribution-spec 1.1 "Listing Referrers")."""

import json

from tests.integration.protocol.helpers import (
    OCI_INDEX,
    OCI_MANIFEST,
    descriptor,
    digest,
    error_codes,
    index_manifest,
    push_artifact,
    push_blob,
    push_image,
    put_manifest,
)

SBOM = "application/vnd.example.sbom.v1"
SIGNATURE = "application/vnd.example.signature.v1"


def referrers(testapp, auth, repo, subject_digest, **query):
    url = f"/v2/{repo}/referrers/{subject_digest}"
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    response = testapp.get(url, headers=auth, status=200)
    assert response.headers["Content-Type"].split(";")[0] == OCI_INDEX
    document = response.json
    assert document["schemaVersion"] == 2
    assert document["mediaType"] == OCI_INDEX
    return response, {d["digest"]: d for d in document["manifests"]}


def test_referrers_lists_descriptors_of_manifests_with_that_subject(testapp, auth):
    image = push_image(testapp, auth, "referrers/basic", "v1")
    sbom = push_artifact(
        testapp,
        auth,
        "referrers/basic",
        artifact_type=SBOM,
        subject=image.descriptor(),
        annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z", "format": "spdx"},
        payload=b"sbom",
    )
    signature = push_artifact(
        testapp, auth, "referrers/basic", artifact_type=SIGNATURE, subject=image.descriptor(), payload=b"sig"
    )
    push_artifact(testapp, auth, "referrers/basic", artifact_type=SBOM, payload=b"unrelated")

    response, found = referrers(testapp, auth, "referrers/basic", image.digest)
    assert set(found) == {sbom.digest, signature.digest}
    assert found[sbom.digest] == {
        "mediaType": OCI_MANIFEST,
        "digest": sbom.digest,
        "size": len(sbom.body),
        "artifactType": SBOM,
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z", "format": "spdx"},
    }
    assert found[signature.digest]["artifactType"] == SIGNATURE
    assert found[signature.digest]["size"] == len(signature.body)
    assert not found[signature.digest].get("annotations")
    assert "OCI-Filters-Applied" not in response.headers


def test_artifact_type_falls_back_to_the_config_media_type(testapp, auth):
    image = push_image(testapp, auth, "referrers/fallback", "v1")
    config = b'{"kind": "attestation"}'
    push_blob(testapp, auth, "referrers/fallback", config)
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.example.config.v1+json", config),
            "layers": [],
            "subject": image.descriptor(),
        }
    ).encode()
    put_manifest(testapp, auth, "referrers/fallback", digest(body), body, OCI_MANIFEST)
    _, found = referrers(testapp, auth, "referrers/fallback", image.digest)
    assert found[digest(body)]["artifactType"] == "application/vnd.example.config.v1+json"


def test_an_index_can_be_a_referrer(testapp, auth):
    image = push_image(testapp, auth, "referrers/index", "v1")
    child = push_image(testapp, auth, "referrers/index", None, seed="child")
    body = index_manifest(
        [child.descriptor()], subject=image.descriptor(), annotations={"kind": "bundle"}, artifact_type=None
    )
    put_manifest(testapp, auth, "referrers/index", digest(body), body, OCI_INDEX)
    _, found = referrers(testapp, auth, "referrers/index", image.digest)
    assert found[digest(body)]["mediaType"] == OCI_INDEX
    assert found[digest(body)]["annotations"] == {"kind": "bundle"}
    assert "artifactType" not in found[digest(body)]


def test_artifact_type_filter(testapp, auth):
    image = push_image(testapp, auth, "referrers/filter", "v1")
    sbom = push_artifact(
        testapp, auth, "referrers/filter", artifact_type=SBOM, subject=image.descriptor(), payload=b"s"
    )
    push_artifact(testapp, auth, "referrers/filter", artifact_type=SIGNATURE, subject=image.descriptor(), payload=b"x")
    response, found = referrers(testapp, auth, "referrers/filter", image.digest, artifactType=SBOM)
    assert set(found) == {sbom.digest}
    assert response.headers["OCI-Filters-Applied"] == "artifactType"

    response, found = referrers(testapp, auth, "referrers/filter", image.digest, artifactType="application/none")
    assert found == {}
    assert response.headers["OCI-Filters-Applied"] == "artifactType"


def test_subject_pushed_after_its_referrer(testapp, auth):
    future = descriptor(OCI_MANIFEST, b"placeholder")
    # The referrer names a subject by digest before any such manifest exists.
    artifact = push_artifact(testapp, auth, "referrers/later", artifact_type=SBOM, subject=future, payload=b"early")
    _, found = referrers(testapp, auth, "referrers/later", future["digest"])
    assert set(found) == {artifact.digest}


def test_digest_without_referrers_is_an_empty_index(testapp, auth):
    image = push_image(testapp, auth, "referrers/none", "v1")
    for subject in (image.digest, digest(b"not a manifest at all")):
        response, found = referrers(testapp, auth, "referrers/none", subject)
        assert found == {}
        assert response.json["manifests"] == []


def test_referrers_are_per_repository(testapp, auth):
    image = push_image(testapp, auth, "referrers/here", "v1")
    push_image(testapp, auth, "referrers/there", "v1")
    push_artifact(testapp, auth, "referrers/here", artifact_type=SBOM, subject=image.descriptor())
    _, found = referrers(testapp, auth, "referrers/there", image.digest)
    assert found == {}


def test_deleted_referrer_disappears(testapp, auth):
    image = push_image(testapp, auth, "referrers/deleted", "v1")
    artifact = push_artifact(testapp, auth, "referrers/deleted", artifact_type=SBOM, subject=image.descriptor())
    testapp.delete(f"/v2/referrers/deleted/manifests/{artifact.digest}", headers=auth, status=202)
    _, found = referrers(testapp, auth, "referrers/deleted", image.digest)
    assert found == {}


def test_invalid_digest_is_400(testapp, auth):
    push_image(testapp, auth, "referrers/invalid", "v1")
    response = testapp.get("/v2/referrers/invalid/referrers/sha256:zzz", headers=auth, status=400)
    assert error_codes(response) == ["DIGEST_INVALID"]
