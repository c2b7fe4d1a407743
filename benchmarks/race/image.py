"""Small images as docker pushes them: HEAD each blob, POST + PUT ?digest= the missing ones, PUT the manifest by tag."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from typing import Any

from benchmarks.race.load import Connection
from benchmarks.throughput import _with_digest

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = f"{MANIFEST}, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json"
LAYER_SIZE = 1024


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def new_image() -> tuple[bytes, bytes, bytes]:
    """(layer, config, manifest): a distinct 1 KiB layer, a config naming it, and their OCI manifest."""
    layer = os.urandom(LAYER_SIZE)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [digest(layer)]},
            "nonce": uuid.uuid4().hex,
        }
    ).encode()

    def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
        return {"mediaType": media_type, "digest": digest(data), "size": len(data)}

    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer)],
        }
    ).encode()
    return layer, config, manifest


def _path(location: str | None) -> str:
    if not location:
        return ""
    if "://" in location:
        rest = location.split("://", 1)[1]
        return "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return location


def push_image(conn: Connection, name: str, tag: str, image: tuple[bytes, bytes, bytes]) -> str:
    """docker's push of one image; "" on success, else what went wrong."""
    layer, config, manifest = image
    for blob in (layer, config):
        status, _r, error = conn.request("HEAD", f"/v2/{name}/blobs/{digest(blob)}")
        if status == 200:
            continue
        if status != 404:
            return error or f"HEAD blob: {status}"
        status, response, error = conn.request("POST", f"/v2/{name}/blobs/uploads/")
        if status != 202 or response is None:
            return error or f"POST upload: {status}"
        location = _path(response.getheader("Location"))
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(blob))}
        status, _r, error = conn.request("PUT", _with_digest(location, digest(blob)), body=blob, headers=headers)
        if status != 201:
            return error or f"PUT blob: {status}"
    headers = {"Content-Type": MANIFEST}
    status, _r, error = conn.request("PUT", f"/v2/{name}/manifests/{tag}", body=manifest, headers=headers)
    if status != 201:
        return error or f"PUT manifest: {status}"
    return ""
