"""Domain layer: reading manifests and indexes (Docker schema2, OCI image-spec) to learn what they reference.

The registry stores manifests byte-exact; this module only validates them and extracts their references.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from stevedore.domain.errors import DigestInvalid, ManifestInvalid
from stevedore.domain.model import Digest

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_SCHEMA1 = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)
IMAGE_MANIFESTS = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
INDEXES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
SUPPORTED = IMAGE_MANIFESTS | INDEXES

# Layers a registry need not hold: Docker's foreign layers and OCI's non-distributable ones.
_FOREIGN_LAYER_MARKERS = ("foreign", "nondistributable")


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    platform: dict[str, Any] | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None


@dataclass(frozen=True)
class ParsedManifest:
    media_type: str
    blobs: tuple[Descriptor, ...] = ()
    children: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = field(default=None)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEXES


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise ManifestInvalid(f"{where} is not a descriptor object")
    media_type = value.get("mediaType")
    digest_text = value.get("digest")
    size = value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise ManifestInvalid(f"{where} has no mediaType")
    _check_media_type(media_type, f"{where}.mediaType")
    if not isinstance(digest_text, str):
        raise ManifestInvalid(f"{where} has no digest")
    try:
        digest = Digest.parse(digest_text)
    except DigestInvalid as exc:
        raise ManifestInvalid(f"{where} has an invalid digest {digest_text!r}") from exc
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestInvalid(f"{where} has no valid size")
    urls = value.get("urls") or ()
    if not isinstance(urls, list | tuple) or not all(isinstance(u, str) for u in urls):
        raise ManifestInvalid(f"{where} has invalid urls")
    annotations = value.get("annotations")
    if annotations is not None and not _is_string_map(annotations):
        raise ManifestInvalid(f"{where} has invalid annotations")
    platform = value.get("platform")
    if platform is not None and not isinstance(platform, dict):
        raise ManifestInvalid(f"{where} has an invalid platform")
    artifact_type = value.get("artifactType")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        urls=tuple(urls),
        platform=platform,
        artifact_type=artifact_type if isinstance(artifact_type, str) else None,
        annotations=annotations,
    )


MAX_MEDIA_TYPE_LENGTH = 255
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")


def _check_media_type(value: str, where: str) -> None:
    """RFC 6838 `type/subtype`, at most 255 characters (what the database stores for every backend)."""
    if len(value) > MAX_MEDIA_TYPE_LENGTH or not _MEDIA_TYPE.fullmatch(value):
        raise ManifestInvalid(f"{where} is not a valid media type")


def _is_string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _is_foreign(descriptor: Descriptor) -> bool:
    return bool(descriptor.urls) and any(m in descriptor.media_type for m in _FOREIGN_LAYER_MARKERS)


def parse_manifest(body: bytes, content_type: str | None) -> ParsedManifest:
    """Validate a pushed manifest and return what it references. Raises ManifestInvalid with a clear reason."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestInvalid("the manifest is not valid JSON") from exc
    except RecursionError as exc:
        raise ManifestInvalid("the manifest nests too deeply") from exc
    if not isinstance(document, dict):
        raise ManifestInvalid("the manifest is not a JSON object")

    declared = document.get("mediaType")
    header = (content_type or "").split(";")[0].strip().lower() or None
    if header in ("application/json", "application/octet-stream"):
        header = None
    if declared is not None and not isinstance(declared, str):
        raise ManifestInvalid("mediaType must be a string")
    if header and declared and header != declared:
        raise ManifestInvalid(f"Content-Type {header} does not match the manifest's mediaType {declared}")
    media_type = header or declared
    if media_type is None:
        # An OCI manifest or index may omit mediaType; tell them apart by their fields.
        media_type = OCI_INDEX if "manifests" in document else OCI_MANIFEST if "config" in document else None
    if document.get("schemaVersion") == 1 or media_type in DOCKER_SCHEMA1:
        raise ManifestInvalid("Docker schema 1 manifests are not supported: push with a current client (schema 2)")
    if media_type not in SUPPORTED:
        raise ManifestInvalid(
            f"unsupported manifest media type {media_type!r}: use a Docker schema 2 or OCI manifest or index"
        )
    if document.get("schemaVersion") != 2:
        raise ManifestInvalid("schemaVersion must be 2")

    annotations = document.get("annotations")
    if annotations is not None and not _is_string_map(annotations):
        raise ManifestInvalid("annotations must map strings to strings")
    subject = _descriptor(document["subject"], "subject") if document.get("subject") is not None else None
    artifact_type = document.get("artifactType")
    if artifact_type is not None:
        if not isinstance(artifact_type, str):
            raise ManifestInvalid("artifactType must be a string")
        _check_media_type(artifact_type, "artifactType")

    if media_type in INDEXES:
        entries = document.get("manifests")
        if not isinstance(entries, list):
            raise ManifestInvalid("an index needs a manifests list")
        children = tuple(_descriptor(entry, f"manifests[{i}]") for i, entry in enumerate(entries))
        return ParsedManifest(media_type, (), children, subject, artifact_type, annotations)

    config = _descriptor(document.get("config"), "config")
    layers_value = document.get("layers")
    if not isinstance(layers_value, list):
        raise ManifestInvalid("an image manifest needs a layers list")
    layers = tuple(_descriptor(layer, f"layers[{i}]") for i, layer in enumerate(layers_value))
    blobs = (config, *[layer for layer in layers if not _is_foreign(layer)])
    # image-spec: a manifest's artifactType, or else its config's mediaType, is what the referrers API reports.
    if artifact_type is None and subject is not None:
        artifact_type = config.media_type
    return ParsedManifest(media_type, blobs, (), subject, artifact_type, annotations)
