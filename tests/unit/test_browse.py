"""The repository pages' pure helpers: sizes, platforms and configs read out of stored manifests, hostile or not."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from stevedore.domain.browse import (
    ManifestRow,
    TagRow,
    child_digests,
    human_size,
    image_size,
    load_document,
    page_number,
    parse_config,
    platforms,
    short_digest,
    tag_views,
)

NOW = datetime(2024, 1, 1, tzinfo=UTC)
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def image(config_size: int, *layer_sizes: int) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D1, "size": config_size},
            "layers": [{"mediaType": "x/y", "digest": D2, "size": s} for s in layer_sizes],
        }
    ).encode()


def index(*entries: dict) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(entries)}).encode()


def test_an_images_size_is_its_config_and_layers():
    assert image_size(load_document(image(100, 1000, 2000))) == 3100


def test_sizes_that_are_no_sizes_count_as_nothing():
    document = {"config": {"size": "12"}, "layers": [{"size": -5}, {"size": True}, "junk", {"size": 7}]}
    assert image_size(document) == 7
    assert image_size(load_document(b"not json")) == 0
    assert load_document(b"[1, 2]") == {}


def test_platforms_of_an_index_skip_attestations_and_repeats():
    document = load_document(
        index(
            {"digest": D1, "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": D2, "size": 1, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"digest": D3, "size": 1, "platform": {"os": "unknown", "architecture": "unknown"}},
            {"digest": D3, "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": D3, "size": 1, "platform": "linux/amd64"},
            {"digest": D3, "size": 1},
        )
    )
    assert platforms(document) == ["linux/amd64", "linux/arm64/v8"]


def test_an_index_tag_sums_the_images_the_repository_holds():
    rows = [
        TagRow(
            "multi",
            NOW,
            D3,
            OCI_INDEX,
            10,
            NOW,
            index(
                {"digest": D1, "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
                {"digest": D2, "size": 1, "platform": {"os": "linux", "architecture": "arm64"}},
            ),
        ),
        TagRow("single", NOW, D1, OCI_MANIFEST, 10, NOW, image(10, 90)),
    ]
    assert child_digests(rows) == {D1, D2}
    children = {D1: ManifestRow(D1, OCI_MANIFEST, 10, NOW, image(10, 90))}
    multi, single = tag_views(rows, children)
    assert (multi.size, multi.platforms, multi.is_index) == (100, ["linux/amd64", "linux/arm64"], True)
    assert (single.size, single.platforms, single.is_index) == (100, [], False)
    assert tag_views(rows[:1], {})[0].size is None


def test_a_config_gives_env_entrypoint_labels_and_history_and_ignores_junk():
    config = parse_config(
        json.dumps(
            {
                "os": "linux",
                "architecture": "arm",
                "variant": "v7",
                "config": {
                    "Env": ["A=1", 5],
                    "Entrypoint": "/bin/sh",
                    "Cmd": None,
                    "Labels": {"b": "2", "a": "1", "n": 3},
                    "ExposedPorts": {"80/tcp": {}},
                },
                "history": [{"created_by": "RUN x", "empty_layer": True}, "junk"],
            }
        ).encode()
    )
    assert config is not None
    assert config.platform == "linux/arm/v7"
    assert config.env == ["A=1"] and config.entrypoint == ["/bin/sh"] and config.cmd is None
    assert list(config.labels.items()) == [("a", "1"), ("b", "2")]
    assert config.exposed_ports == ["80/tcp"]
    assert [(h.created_by, h.empty_layer) for h in config.history] == [("RUN x", True)]
    assert parse_config(b"\xff") is None and parse_config(b'"text"') is None


def test_small_formatting_helpers():
    assert human_size(None) == "—" and human_size(512) == "512 B" and human_size(1536) == "1.5 KiB"
    assert human_size(5 * 1024**3) == "5.0 GiB"
    assert short_digest(D1) == "sha256:111111111111"
    assert page_number(None) == 1 and page_number("3") == 3 and page_number("-2") == 1 and page_number("x") == 1
    assert page_number("99999999999") == 100_000
