"""Small helpers for the /v2/ protocol tests: credentials, digests, descriptors, manifests and whole pushes.

They follow the distribution-spec from the client's side only; nothing here knows how Stevedore is built.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
EMPTY_JSON = b"{}"
ACCEPT_ALL = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])
API_VERSION = "registry/2.0"


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def digest(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest(data), "size": len(data), **extra}


def to_json(document: dict[str, Any]) -> bytes:
    """Indented, with a trailing newline: a registry that re-serializes instead of storing bytes gets caught."""
    return (json.dumps(document, indent=3) + "\n").encode()


def path_of(location: str) -> str:
    """A Location (absolute or relative) as the path and query webtest wants."""
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def with_query(location: str, **params: str | list[str]) -> str:
    """Location plus query parameters, keeping whatever the registry put in it."""
    path = path_of(location)
    return path + ("&" if "?" in path else "?") + urlencode(params, doseq=True)


def upload_id(location: str) -> str:
    """The upload's id in its URL: a ticket (domain/upload_tickets.py)."""
    return urlsplit(location).path.rstrip("/").rsplit("/", 1)[-1]


def session_id(location: str) -> str:
    """The session's id (its row's, its folder's, its S3 keys'): the first part of the ticket in its URL."""
    return upload_id(location).split(".")[0]


def open_upload(testapp: Any, auth: dict[str, str], repo: str, **kwargs: Any) -> str:
    """A session with a row and bytes, as docker's first PATCH leaves it (a POST alone writes nothing); its
    Location."""
    location = testapp.post(f"/v2/{repo}/blobs/uploads/", headers=auth, status=202, **kwargs).headers["Location"]
    testapp.patch(path_of(location), params=b"", headers=auth, status=202)
    return location


def error_codes(response: Any) -> list[str]:
    return [error["code"] for error in response.json["errors"]]


def parse_link(header: str) -> tuple[str, dict[str, list[str]]]:
    """`<url>; rel="next"` -> (path, query) of the url; asserts the RFC 5988 shape."""
    target, _, params = header.partition(";")
    target = target.strip()
    assert target.startswith("<") and target.endswith(">"), header
    assert params.replace(" ", "") == 'rel="next"', header
    parts = urlsplit(target[1:-1])
    return parts.path, parse_qs(parts.query)


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="..",service="..",scope=".."` -> ("Bearer", {realm, service, scope, ...})."""
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    while rest:
        key, _, rest = rest.strip().partition("=")
        assert rest.startswith('"'), header
        value, _, rest = rest[1:].partition('"')
        params[key.strip()] = value
        rest = rest.lstrip().removeprefix(",")
    return scheme, params


def push_blob(app: Any, auth: dict[str, str], repo: str, data: bytes) -> str:
    """POST then PUT ?digest=: the plain monolithic upload. Returns the digest."""
    blob_digest = digest(data)
    start = app.post(f"/v2/{repo}/blobs/uploads/", headers=auth, status=202)
    app.put(
        with_query(start.headers["Location"], digest=blob_digest),
        params=data,
        headers=auth,
        content_type="application/octet-stream",
        status=201,
    )
    return blob_digest


def put_manifest(
    app: Any, auth: dict[str, str], repo: str, reference: str, body: bytes, media_type: str, status: int = 201, **query
) -> Any:
    url = f"/v2/{repo}/manifests/{reference}"
    if query:
        url = with_query(url, **query)
    return app.put(url, params=body, headers=auth, content_type=media_type, status=status)


def image_manifest(
    config: dict[str, Any],
    layers: list[dict[str, Any]],
    *,
    media_type: str = OCI_MANIFEST,
    artifact_type: str | None = None,
    subject: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
) -> bytes:
    document: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    if artifact_type:
        document["artifactType"] = artifact_type
    document["config"] = config
    document["layers"] = layers
    if subject:
        document["subject"] = subject
    if annotations:
        document["annotations"] = annotations
    return to_json(document)


def index_manifest(
    manifests: list[dict[str, Any]],
    *,
    media_type: str = OCI_INDEX,
    artifact_type: str | None = None,
    subject: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
) -> bytes:
    document: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}
    if artifact_type:
        document["artifactType"] = artifact_type
    if subject:
        document["subject"] = subject
    if annotations:
        document["annotations"] = annotations
    return to_json(document)


@dataclass(frozen=True)
class Pushed:
    """A manifest that is in the registry: its bytes, digest and media type, and the blobs it references."""

    repo: str
    body: bytes
    digest: str
    media_type: str
    blobs: tuple[bytes, ...] = ()

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.body), **extra}


def push_image(
    app: Any,
    auth: dict[str, str],
    repo: str,
    tag: str | None = "latest",
    *,
    seed: str = "image",
    docker: bool = False,
    layer_count: int = 2,
    **manifest_fields: Any,
) -> Pushed:
    """Config and layers as blobs, then the manifest (by tag, or by digest when tag is None)."""
    config = to_json({"architecture": "amd64", "os": "linux", "seed": seed})
    layers = [f"layer {i} of {seed}".encode() * 50 for i in range(layer_count)]
    for blob in (config, *layers):
        push_blob(app, auth, repo, blob)
    if docker:
        media_type = DOCKER_MANIFEST
        body = image_manifest(
            descriptor(DOCKER_CONFIG, config),
            [descriptor(DOCKER_LAYER, layer) for layer in layers],
            media_type=media_type,
        )
    else:
        media_type = OCI_MANIFEST
        body = image_manifest(
            descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, layer) for layer in layers], **manifest_fields
        )
    put_manifest(app, auth, repo, tag or digest(body), body, media_type)
    return Pushed(repo, body, digest(body), media_type, (config, *layers))


def push_artifact(
    app: Any,
    auth: dict[str, str],
    repo: str,
    *,
    artifact_type: str,
    subject: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    payload: bytes = b"artifact payload",
    tag: str | None = None,
) -> Pushed:
    """An OCI artifact: the empty config `{}` and one payload layer."""
    push_blob(app, auth, repo, EMPTY_JSON)
    push_blob(app, auth, repo, payload)
    body = image_manifest(
        descriptor(OCI_EMPTY, EMPTY_JSON),
        [descriptor("application/vnd.example.payload", payload)],
        artifact_type=artifact_type,
        subject=subject,
        annotations=annotations,
    )
    put_manifest(app, auth, repo, tag or digest(body), body, OCI_MANIFEST)
    return Pushed(repo, body, digest(body), OCI_MANIFEST, (EMPTY_JSON, payload))
