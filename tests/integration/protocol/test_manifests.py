"""Pushing manifests: the media types, references they must resolve, validation and size (distribution-spec
"Pushing Manifests")."""

import json

from tests.integration.protocol.helpers import (
    ACCEPT_ALL,
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    EMPTY_JSON,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    descriptor,
    digest,
    error_codes,
    image_manifest,
    index_manifest,
    path_of,
    push_artifact,
    push_blob,
    push_image,
    put_manifest,
    to_json,
)

FOUR_MIB = 4 * 1024 * 1024


def get_manifest(testapp, auth, repo, reference, status=200):
    return testapp.get(f"/v2/{repo}/manifests/{reference}", headers={**auth, "Accept": ACCEPT_ALL}, status=status)


def assert_round_trip(testapp, auth, repo, reference, body, media_type):
    response = get_manifest(testapp, auth, repo, reference)
    assert response.body == body
    assert response.headers["Content-Type"].split(";")[0] == media_type
    assert response.headers["Docker-Content-Digest"] == digest(body)


def test_oci_image_manifest_put_by_tag_is_201_with_location_and_digest(testapp, auth):
    config = push_blob(testapp, auth, "manifests/oci", b'{"os":"linux"}')
    layer = push_blob(testapp, auth, "manifests/oci", b"layer bytes")
    body = image_manifest(
        {"mediaType": OCI_CONFIG, "digest": config, "size": 14},
        [{"mediaType": OCI_LAYER, "digest": layer, "size": 11}],
    )
    response = put_manifest(testapp, auth, "manifests/oci", "v1", body, OCI_MANIFEST)
    assert response.headers["Docker-Content-Digest"] == digest(body)
    pulled = testapp.get(path_of(response.headers["Location"]), headers={**auth, "Accept": ACCEPT_ALL}, status=200)
    assert pulled.body == body
    assert_round_trip(testapp, auth, "manifests/oci", "v1", body, OCI_MANIFEST)
    assert_round_trip(testapp, auth, "manifests/oci", digest(body), body, OCI_MANIFEST)


def test_docker_schema2_manifest(testapp, auth):
    image = push_image(testapp, auth, "manifests/docker", "v2", docker=True)
    assert json.loads(image.body)["config"]["mediaType"] == DOCKER_CONFIG
    assert_round_trip(testapp, auth, "manifests/docker", "v2", image.body, DOCKER_MANIFEST)


def test_docker_manifest_list(testapp, auth):
    amd = push_image(testapp, auth, "manifests/docker-list", None, docker=True, seed="amd64")
    arm = push_image(testapp, auth, "manifests/docker-list", None, docker=True, seed="arm64")
    body = index_manifest(
        [
            amd.descriptor(platform={"architecture": "amd64", "os": "linux"}),
            arm.descriptor(platform={"architecture": "arm64", "os": "linux", "variant": "v8"}),
        ],
        media_type=DOCKER_LIST,
    )
    response = put_manifest(testapp, auth, "manifests/docker-list", "multi", body, DOCKER_LIST)
    assert response.headers["Docker-Content-Digest"] == digest(body)
    assert_round_trip(testapp, auth, "manifests/docker-list", "multi", body, DOCKER_LIST)
    assert_round_trip(testapp, auth, "manifests/docker-list", amd.digest, amd.body, DOCKER_MANIFEST)


def test_oci_index(testapp, auth):
    amd = push_image(testapp, auth, "manifests/oci-index", None, seed="amd64")
    arm = push_image(testapp, auth, "manifests/oci-index", None, seed="arm64")
    body = index_manifest(
        [
            amd.descriptor(platform={"architecture": "amd64", "os": "linux"}),
            arm.descriptor(platform={"architecture": "arm64", "os": "linux"}),
        ],
        annotations={"org.opencontainers.image.ref.name": "multi"},
    )
    put_manifest(testapp, auth, "manifests/oci-index", "multi", body, OCI_INDEX)
    assert_round_trip(testapp, auth, "manifests/oci-index", "multi", body, OCI_INDEX)


def test_index_of_indexes(testapp, auth):
    image = push_image(testapp, auth, "manifests/nested", None)
    inner = index_manifest([image.descriptor(platform={"architecture": "amd64", "os": "linux"})])
    put_manifest(testapp, auth, "manifests/nested", digest(inner), inner, OCI_INDEX)
    outer = index_manifest([descriptor(OCI_INDEX, inner)])
    put_manifest(testapp, auth, "manifests/nested", "outer", outer, OCI_INDEX)
    assert_round_trip(testapp, auth, "manifests/nested", "outer", outer, OCI_INDEX)


def test_oci_artifact_with_empty_config(testapp, auth):
    artifact = push_artifact(
        testapp, auth, "manifests/artifact", artifact_type="application/vnd.example.thing.v1", tag="thing"
    )
    document = json.loads(artifact.body)
    assert document["config"] == {"mediaType": OCI_EMPTY, "digest": digest(EMPTY_JSON), "size": 2}
    assert_round_trip(testapp, auth, "manifests/artifact", "thing", artifact.body, OCI_MANIFEST)
    assert testapp.get(f"/v2/manifests/artifact/blobs/{digest(EMPTY_JSON)}", headers=auth).body == EMPTY_JSON


def test_artifact_whose_layers_are_the_empty_blob(testapp, auth):
    push_blob(testapp, auth, "manifests/empty-layers", EMPTY_JSON)
    empty = descriptor(OCI_EMPTY, EMPTY_JSON)
    body = image_manifest(empty, [empty], artifact_type="application/vnd.example.note", annotations={"note": "hello"})
    put_manifest(testapp, auth, "manifests/empty-layers", "note", body, OCI_MANIFEST)
    assert_round_trip(testapp, auth, "manifests/empty-layers", "note", body, OCI_MANIFEST)


def test_put_by_digest(testapp, auth):
    image = push_image(testapp, auth, "manifests/by-digest", None)
    assert_round_trip(testapp, auth, "manifests/by-digest", image.digest, image.body, OCI_MANIFEST)


def test_put_by_digest_that_does_not_match_the_body_is_digest_invalid(testapp, auth):
    image = push_image(testapp, auth, "manifests/wrong-digest", None)
    other = image.body.replace(b"\n}", b', "annotations": {"x": "y"}\n}')
    response = put_manifest(testapp, auth, "manifests/wrong-digest", image.digest, other, OCI_MANIFEST, status=400)
    assert error_codes(response) == ["DIGEST_INVALID"]
    assert_round_trip(testapp, auth, "manifests/wrong-digest", image.digest, image.body, OCI_MANIFEST)


def test_retagging_points_the_tag_at_the_new_manifest(testapp, auth):
    push_image(testapp, auth, "manifests/retag", "moving", seed="first")
    second = push_image(testapp, auth, "manifests/retag", "moving", seed="second")
    assert_round_trip(testapp, auth, "manifests/retag", "moving", second.body, OCI_MANIFEST)


def test_manifest_with_a_missing_layer_is_manifest_blob_unknown(testapp, auth):
    config = push_blob(testapp, auth, "manifests/missing-layer", b"{}")
    body = image_manifest(
        {"mediaType": OCI_CONFIG, "digest": config, "size": 2},
        [descriptor(OCI_LAYER, b"never uploaded")],
    )
    response = put_manifest(testapp, auth, "manifests/missing-layer", "v1", body, OCI_MANIFEST, status=400)
    assert set(error_codes(response)) == {"MANIFEST_BLOB_UNKNOWN"}
    get_manifest(testapp, auth, "manifests/missing-layer", "v1", status=404)


def test_manifest_with_a_missing_config_is_manifest_blob_unknown(testapp, auth):
    layer = push_blob(testapp, auth, "manifests/missing-config", b"a layer")
    body = image_manifest(
        descriptor(DOCKER_CONFIG, b"no config"),
        [{"mediaType": DOCKER_LAYER, "digest": layer, "size": 7}],
        media_type=DOCKER_MANIFEST,
    )
    response = put_manifest(testapp, auth, "manifests/missing-config", "v1", body, DOCKER_MANIFEST, status=400)
    assert set(error_codes(response)) == {"MANIFEST_BLOB_UNKNOWN"}


def test_blob_only_in_another_repository_counts_as_missing(testapp, auth):
    config = b'{"elsewhere": true}'
    push_blob(testapp, auth, "manifests/has-blobs", config)
    body = image_manifest(descriptor(OCI_CONFIG, config), [])
    response = put_manifest(testapp, auth, "manifests/lacks-blobs", "v1", body, OCI_MANIFEST, status=400)
    assert set(error_codes(response)) == {"MANIFEST_BLOB_UNKNOWN"}


def test_index_with_a_missing_child_is_manifest_blob_unknown(testapp, auth):
    present = push_image(testapp, auth, "manifests/missing-child", None)
    absent = descriptor(OCI_MANIFEST, b'{"schemaVersion": 2}')
    body = index_manifest([present.descriptor(), absent])
    response = put_manifest(testapp, auth, "manifests/missing-child", "multi", body, OCI_INDEX, status=400)
    assert set(error_codes(response)) == {"MANIFEST_BLOB_UNKNOWN"}


def test_missing_subject_is_accepted_and_reported_in_oci_subject(testapp, auth):
    subject = {"mediaType": OCI_MANIFEST, "digest": digest(b"a manifest pushed later"), "size": 23}
    push_blob(testapp, auth, "manifests/subject", EMPTY_JSON)
    body = image_manifest(
        descriptor(OCI_EMPTY, EMPTY_JSON),
        [descriptor(OCI_EMPTY, EMPTY_JSON)],
        artifact_type="application/vnd.example.sig",
        subject=subject,
    )
    response = put_manifest(testapp, auth, "manifests/subject", digest(body), body, OCI_MANIFEST)
    assert response.headers["OCI-Subject"] == subject["digest"]
    assert_round_trip(testapp, auth, "manifests/subject", digest(body), body, OCI_MANIFEST)


def test_manifest_without_subject_has_no_oci_subject_header(testapp, auth):
    image = push_image(testapp, auth, "manifests/no-subject", None)
    response = put_manifest(testapp, auth, "manifests/no-subject", "again", image.body, OCI_MANIFEST)
    assert "OCI-Subject" not in response.headers


def test_schema1_is_refused_as_manifest_invalid(testapp, auth):
    body = to_json(
        {
            "schemaVersion": 1,
            "name": "manifests/schema1",
            "tag": "old",
            "architecture": "amd64",
            "fsLayers": [{"blobSum": digest(b"layer")}],
            "history": [{"v1Compatibility": "{}"}],
        }
    )
    for media_type in (
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.docker.distribution.manifest.v1+json",
    ):
        response = put_manifest(testapp, auth, "manifests/schema1", "old", body, media_type, status=400)
        assert error_codes(response) == ["MANIFEST_INVALID"]


def test_broken_json_is_manifest_invalid(testapp, auth):
    for body in (b'{"schemaVersion": 2, "mediaType": ', b"not json at all", b"[]", b""):
        response = put_manifest(testapp, auth, "manifests/broken", "v1", body, OCI_MANIFEST, status=400)
        assert error_codes(response) == ["MANIFEST_INVALID"]


def test_manifest_missing_required_fields_is_manifest_invalid(testapp, auth):
    for document in (
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []},
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": OCI_CONFIG}, "layers": []},
        {"schemaVersion": 2, "mediaType": OCI_INDEX},
    ):
        media_type = document["mediaType"]
        response = put_manifest(testapp, auth, "manifests/incomplete", "v1", to_json(document), media_type, status=400)
        assert error_codes(response) == ["MANIFEST_INVALID"]


def test_invalid_tag_reference_is_refused(testapp, auth):
    image = push_image(testapp, auth, "manifests/bad-tag", None)
    for tag in ("-leading-dash", "x" * 129, "bad%21tag"):
        response = put_manifest(testapp, auth, "manifests/bad-tag", tag, image.body, OCI_MANIFEST, status=400)
        assert response.json["errors"][0]["code"] in ("TAG_INVALID", "MANIFEST_INVALID", "NAME_INVALID")


def padded_manifest(testapp, auth, repo, size):
    """An OCI manifest of exactly `size` bytes, padded with an annotation."""
    push_blob(testapp, auth, repo, EMPTY_JSON)
    empty = descriptor(OCI_EMPTY, EMPTY_JSON)
    body = image_manifest(empty, [], artifact_type="application/vnd.example.big", annotations={"pad": ""})
    body = image_manifest(
        empty, [], artifact_type="application/vnd.example.big", annotations={"pad": "p" * (size - len(body))}
    )
    assert len(body) == size
    return body


def test_manifest_of_four_mib_is_accepted(testapp, auth):
    body = padded_manifest(testapp, auth, "manifests/big", FOUR_MIB)
    put_manifest(testapp, auth, "manifests/big", "big", body, OCI_MANIFEST)
    assert_round_trip(testapp, auth, "manifests/big", "big", body, OCI_MANIFEST)


def test_manifest_with_many_layers_is_accepted(testapp, auth):
    layers = [push_blob(testapp, auth, "manifests/many-layers", f"layer {i}".encode()) for i in range(3)]
    descriptors = [
        {"mediaType": OCI_LAYER, "digest": layers[i % 3], "size": len(f"layer {i % 3}"), "annotations": {"i": str(i)}}
        for i in range(15_000)
    ]
    config = push_blob(testapp, auth, "manifests/many-layers", b'{"os":"linux"}')
    body = image_manifest({"mediaType": OCI_CONFIG, "digest": config, "size": 14}, descriptors)
    assert 2 * 1024 * 1024 < len(body) <= FOUR_MIB
    put_manifest(testapp, auth, "manifests/many-layers", "many", body, OCI_MANIFEST)
    assert_round_trip(testapp, auth, "manifests/many-layers", "many", body, OCI_MANIFEST)


def test_manifest_over_four_mib_is_413(testapp, auth):
    body = padded_manifest(testapp, auth, "manifests/too-big", FOUR_MIB + 1)
    put_manifest(testapp, auth, "manifests/too-big", "big", body, OCI_MANIFEST, status=413)
    get_manifest(testapp, auth, "manifests/too-big", "big", status=404)


def test_put_by_digest_with_tag_parameters_creates_every_tag(testapp, auth):
    image = push_image(testapp, auth, "manifests/tag-params", None)
    response = put_manifest(
        testapp, auth, "manifests/tag-params", image.digest, image.body, OCI_MANIFEST, tag=["alpha", "beta"]
    )
    assert response.headers["Docker-Content-Digest"] == image.digest
    reported = [t.strip() for value in response.headers.getall("OCI-Tag") for t in value.split(",")]
    assert sorted(reported) == ["alpha", "beta"]
    for tag in ("alpha", "beta"):
        assert_round_trip(testapp, auth, "manifests/tag-params", tag, image.body, OCI_MANIFEST)
    tags = testapp.get("/v2/manifests/tag-params/tags/list", headers=auth).json["tags"]
    assert tags == ["alpha", "beta"]


def test_content_type_parameters_are_ignored_and_not_echoed(testapp, auth):
    image = push_image(testapp, auth, "manifests/params", None)
    put_manifest(testapp, auth, "manifests/params", "v1", image.body, f"{OCI_MANIFEST}; charset=utf-8")
    response = get_manifest(testapp, auth, "manifests/params", "v1")
    assert response.headers["Content-Type"] == OCI_MANIFEST
    assert response.body == image.body


def test_manifest_without_media_type_field_takes_the_content_type(testapp, auth):
    config = push_blob(testapp, auth, "manifests/no-media-type", b'{"os":"linux"}')
    body = to_json(
        {"schemaVersion": 2, "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 14}, "layers": []}
    )
    put_manifest(testapp, auth, "manifests/no-media-type", "v1", body, OCI_MANIFEST)
    assert_round_trip(testapp, auth, "manifests/no-media-type", "v1", body, OCI_MANIFEST)


def test_index_whose_child_is_only_in_another_repository_is_manifest_blob_unknown(testapp, auth):
    child = push_image(testapp, auth, "manifests/child-home", None)
    body = index_manifest([child.descriptor()])
    response = put_manifest(testapp, auth, "manifests/child-away", "multi", body, OCI_INDEX, status=400)
    assert set(error_codes(response)) == {"MANIFEST_BLOB_UNKNOWN"}


def test_put_by_sha512_digest(testapp, auth):
    image = push_image(testapp, auth, "manifests/sha512", None)
    reference = digest(image.body, "sha512")
    response = put_manifest(testapp, auth, "manifests/sha512", reference, image.body, OCI_MANIFEST)
    assert response.headers["Docker-Content-Digest"] == reference
    pulled = get_manifest(testapp, auth, "manifests/sha512", reference)
    assert pulled.body == image.body
    assert pulled.headers["Docker-Content-Digest"] == reference


def test_index_whose_child_is_a_layer_blob_is_refused(testapp, auth):
    image = push_image(testapp, auth, "manifests/blob-child", None)
    layer = image.blobs[1]
    body = index_manifest([{"mediaType": OCI_MANIFEST, "digest": digest(layer), "size": len(layer)}])
    response = put_manifest(testapp, auth, "manifests/blob-child", "multi", body, OCI_INDEX, status=400)
    assert error_codes(response)[0] in ("MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID")
