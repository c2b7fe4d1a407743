"""parse_manifest: which manifests the registry accepts, and what it learns they reference."""

from __future__ import annotations

import json

import pytest

from stevedore.domain.errors import ManifestInvalid
from stevedore.domain.manifests import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    parse_manifest,
)
from stevedore.domain.model import Digest

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"


def desc(media_type: str, data: bytes, **extra) -> dict:
    return {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data), **extra}


def image_doc(media_type: str | None = OCI_MANIFEST, **extra) -> dict:
    config_type, layer_type = (
        (DOCKER_CONFIG, DOCKER_LAYER) if media_type == DOCKER_MANIFEST else (OCI_CONFIG, OCI_LAYER)
    )
    document = {
        "schemaVersion": 2,
        "config": desc(config_type, b"config"),
        "layers": [desc(layer_type, b"layer one"), desc(layer_type, b"layer two")],
        **extra,
    }
    if media_type is not None:
        document["mediaType"] = media_type
    return document


def index_doc(media_type: str | None = OCI_INDEX, **extra) -> dict:
    child_type = DOCKER_MANIFEST if media_type == DOCKER_MANIFEST_LIST else OCI_MANIFEST
    document = {
        "schemaVersion": 2,
        "manifests": [
            desc(child_type, b"amd64", platform={"architecture": "amd64", "os": "linux"}),
            desc(child_type, b"arm64", platform={"architecture": "arm64", "os": "linux"}),
        ],
        **extra,
    }
    if media_type is not None:
        document["mediaType"] = media_type
    return document


def parse(document: object, content_type: str | None = None):
    return parse_manifest(json.dumps(document).encode(), content_type)


# --- every supported media type ------------------------------------------------------------------------
@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_image_manifest_references_its_config_and_layers(media_type):
    parsed = parse(image_doc(media_type), media_type)
    assert parsed.media_type == media_type
    assert not parsed.is_index
    assert [d.digest for d in parsed.blobs] == [Digest.of(b) for b in (b"config", b"layer one", b"layer two")]
    assert [d.size for d in parsed.blobs] == [6, 9, 9]
    assert parsed.children == ()
    assert parsed.subject is None and parsed.artifact_type is None and parsed.annotations is None


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_MANIFEST_LIST])
def test_index_references_its_child_manifests(media_type):
    parsed = parse(index_doc(media_type), media_type)
    assert parsed.media_type == media_type
    assert parsed.is_index
    assert parsed.blobs == ()
    assert [d.digest for d in parsed.children] == [Digest.of(b"amd64"), Digest.of(b"arm64")]
    assert parsed.children[0].platform == {"architecture": "amd64", "os": "linux"}


def test_empty_index_and_manifest_without_layers_are_valid():
    assert parse(index_doc(manifests=[])).children == ()
    assert [d.digest for d in parse(image_doc(layers=[])).blobs] == [Digest.of(b"config")]


def test_annotations_and_descriptor_details_are_kept():
    layer = desc(OCI_LAYER, b"layer", annotations={"org.opencontainers.image.title": "x.tar"}, urls=["https://a/b"])
    parsed = parse(image_doc(layers=[layer], annotations={"created": "today"}))
    assert parsed.annotations == {"created": "today"}
    assert parsed.blobs[1] == Descriptor(
        OCI_LAYER,
        Digest.of(b"layer"),
        5,
        urls=("https://a/b",),
        annotations={"org.opencontainers.image.title": "x.tar"},
    )


# --- Content-Type against mediaType --------------------------------------------------------------------
def test_content_type_that_contradicts_the_media_type_is_refused():
    with pytest.raises(ManifestInvalid):
        parse(image_doc(OCI_MANIFEST), DOCKER_MANIFEST)
    with pytest.raises(ManifestInvalid):
        parse(index_doc(OCI_INDEX), OCI_MANIFEST)


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/json",
        "application/octet-stream",
        "application/json; charset=utf-8",
        f"{OCI_MANIFEST}; charset=utf-8",
        OCI_MANIFEST.upper(),
        f"  {OCI_MANIFEST} ",
    ],
)
def test_generic_or_decorated_content_types_defer_to_the_media_type(content_type):
    assert parse(image_doc(OCI_MANIFEST), content_type).media_type == OCI_MANIFEST


def test_content_type_supplies_a_missing_media_type():
    assert parse(image_doc(None), DOCKER_MANIFEST).media_type == DOCKER_MANIFEST
    assert parse(index_doc(None), DOCKER_MANIFEST_LIST).media_type == DOCKER_MANIFEST_LIST


def test_content_type_that_does_not_fit_the_document_is_refused():
    with pytest.raises(ManifestInvalid):
        parse(index_doc(None), OCI_MANIFEST)  # an index has no config
    with pytest.raises(ManifestInvalid):
        parse(image_doc(None), OCI_INDEX)  # an image manifest has no manifests list


def test_missing_media_type_is_inferred_from_the_fields():
    assert parse(image_doc(None)).media_type == OCI_MANIFEST
    assert parse(index_doc(None)).media_type == OCI_INDEX
    assert parse(image_doc(None), "application/json").media_type == OCI_MANIFEST


def test_media_type_that_cannot_be_inferred_is_refused():
    with pytest.raises(ManifestInvalid, match="unsupported manifest media type"):
        parse({"schemaVersion": 2, "layers": []})


@pytest.mark.parametrize("media_type", ["application/vnd.example+json", OCI_CONFIG, 42, ["x"]])
def test_unsupported_or_non_string_media_types_are_refused(media_type):
    with pytest.raises(ManifestInvalid):
        parse(image_doc(None, mediaType=media_type))
    if isinstance(media_type, str):
        with pytest.raises(ManifestInvalid):
            parse(image_doc(None), media_type)


# --- schema 1 and schema versions ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("document", "content_type"),
    [
        ({"schemaVersion": 1, "name": "x", "tag": "latest", "fsLayers": []}, None),
        ({"schemaVersion": 1, "name": "x", "tag": "latest", "fsLayers": []}, SCHEMA1_SIGNED),
        ({"schemaVersion": 1, "mediaType": SCHEMA1, "fsLayers": []}, None),
        (image_doc(None), SCHEMA1),
    ],
)
def test_docker_schema1_is_refused_with_a_clear_reason(document, content_type):
    with pytest.raises(ManifestInvalid, match="schema 1"):
        parse(document, content_type)


@pytest.mark.parametrize("version", [None, 3, "2", 0])
def test_schema_version_must_be_2(version):
    document = image_doc()
    if version is None:
        del document["schemaVersion"]
    else:
        document["schemaVersion"] = version
    with pytest.raises(ManifestInvalid):
        parse(document)


# --- not a manifest at all -----------------------------------------------------------------------------
@pytest.mark.parametrize("body", [b"", b"not json", b"\xff\xfe\x00", b"[]", b'"text"', b"null", b"2"])
def test_bodies_that_are_not_a_json_object_are_refused(body):
    with pytest.raises(ManifestInvalid):
        parse_manifest(body, OCI_MANIFEST)


def test_index_without_a_manifests_list_is_refused():
    with pytest.raises(ManifestInvalid):
        parse({"schemaVersion": 2, "mediaType": OCI_INDEX})
    with pytest.raises(ManifestInvalid):
        parse(index_doc(manifests={"not": "a list"}))


def test_image_without_config_or_layers_list_is_refused():
    document = image_doc()
    del document["config"]
    with pytest.raises(ManifestInvalid, match="config"):
        parse(document)
    with pytest.raises(ManifestInvalid, match="layers"):
        parse(image_doc(layers=None))
    with pytest.raises(ManifestInvalid, match="layers"):
        parse(image_doc(layers={"0": desc(OCI_LAYER, b"x")}))


@pytest.mark.parametrize("annotations", [[], "x", {"k": 1}, {"k": None}, {"k": ["v"]}])
def test_annotations_must_map_strings_to_strings(annotations):
    with pytest.raises(ManifestInvalid):
        parse(image_doc(annotations=annotations))
    with pytest.raises(ManifestInvalid):
        parse(index_doc(annotations=annotations))


def test_artifact_type_must_be_a_string():
    with pytest.raises(ManifestInvalid):
        parse(image_doc(artifactType=7))


# --- descriptors ---------------------------------------------------------------------------------------
GOOD = desc(OCI_LAYER, b"layer")


@pytest.mark.parametrize(
    "bad",
    [
        "not an object",
        None,
        [GOOD],
        {**GOOD, "mediaType": ""},
        {**GOOD, "mediaType": 3},
        {k: v for k, v in GOOD.items() if k != "mediaType"},
        {k: v for k, v in GOOD.items() if k != "digest"},
        {**GOOD, "digest": 17},
        {**GOOD, "digest": "sha256:short"},
        {**GOOD, "digest": "md5:" + "0" * 32},
        {**GOOD, "digest": "sha256:" + "A" * 64},
        {k: v for k, v in GOOD.items() if k != "size"},
        {**GOOD, "size": -1},
        {**GOOD, "size": "5"},
        {**GOOD, "size": 5.0},
        {**GOOD, "size": True},
        {**GOOD, "urls": "https://a/b"},
        {**GOOD, "urls": [1]},
        {**GOOD, "annotations": {"k": 1}},
        {**GOOD, "platform": "linux/amd64"},
    ],
)
def test_bad_descriptors_are_refused_as_invalid_manifests(bad):
    with pytest.raises(ManifestInvalid):
        parse(image_doc(layers=[bad]))
    with pytest.raises(ManifestInvalid):
        parse(image_doc(config=bad))
    with pytest.raises(ManifestInvalid):
        parse(index_doc(manifests=[bad]))
    if bad is not None:  # a null subject is no subject
        with pytest.raises(ManifestInvalid):
            parse(image_doc(subject=bad))


def test_error_names_the_bad_descriptor():
    with pytest.raises(ManifestInvalid, match=r"layers\[1\]"):
        parse(image_doc(layers=[GOOD, {**GOOD, "size": -1}]))
    with pytest.raises(ManifestInvalid, match=r"manifests\[0\]"):
        parse(index_doc(manifests=[{**GOOD, "digest": "nope"}]))


def test_null_subject_is_no_subject():
    assert parse(image_doc(subject=None)).subject is None


# --- foreign layers ------------------------------------------------------------------------------------
@pytest.mark.parametrize("media_type", [DOCKER_FOREIGN, OCI_NONDISTRIBUTABLE])
def test_foreign_layers_with_urls_are_not_blobs_the_registry_must_hold(media_type):
    foreign = desc(media_type, b"windows base", urls=["https://mcr.example/base.tar.gz"])
    parsed = parse(image_doc(layers=[foreign, desc(OCI_LAYER, b"own layer")]))
    assert [d.digest for d in parsed.blobs] == [Digest.of(b"config"), Digest.of(b"own layer")]


def test_foreign_layer_without_urls_must_be_held():
    parsed = parse(image_doc(layers=[desc(DOCKER_FOREIGN, b"no urls")]))
    assert Digest.of(b"no urls") in {d.digest for d in parsed.blobs}


def test_ordinary_layer_with_urls_must_be_held():
    parsed = parse(image_doc(layers=[desc(OCI_LAYER, b"mirrored", urls=["https://a/b"])]))
    assert Digest.of(b"mirrored") in {d.digest for d in parsed.blobs}


# --- subject and artifactType --------------------------------------------------------------------------
SUBJECT = desc(OCI_MANIFEST, b"the subject")


def test_subject_is_parsed():
    parsed = parse(image_doc(subject=SUBJECT))
    assert parsed.subject == Descriptor(OCI_MANIFEST, Digest.of(b"the subject"), 11)


def test_artifact_type_is_kept():
    parsed = parse(image_doc(subject=SUBJECT, artifactType="application/vnd.example.sig"))
    assert parsed.artifact_type == "application/vnd.example.sig"


def test_artifact_type_falls_back_to_the_config_media_type_for_a_referrer():
    assert parse(image_doc(subject=SUBJECT)).artifact_type == OCI_CONFIG
    empty_config = image_doc(subject=SUBJECT, config=desc("application/vnd.oci.empty.v1+json", b"{}"))
    assert parse(empty_config).artifact_type == "application/vnd.oci.empty.v1+json"


def test_artifact_type_has_no_fallback_without_a_subject():
    assert parse(image_doc()).artifact_type is None


def test_index_artifact_type_has_no_fallback():
    assert parse(index_doc(subject=SUBJECT)).artifact_type is None
    assert parse(index_doc(subject=SUBJECT, artifactType="application/vnd.example")).artifact_type == (
        "application/vnd.example"
    )
    assert parse(index_doc(subject=SUBJECT)).subject.digest == Digest.of(b"the subject")
