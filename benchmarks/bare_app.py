"""The push/pull ceiling: a registry's blob path in a few lines of WSGI, no database, no auth check, no framework.

POST answers 202 + Location; PATCH appends the body to the upload's file, hashing it; PUT ?digest= appends its body
(if any), checks the SHA-256, fsyncs and renames the file into place before answering 201; GET and HEAD of a blob
serve the file through `wsgi.file_wrapper`. `benchmarks.race` serves it with Stevedore's own waitress runner and
settings (threads, recv_bytes, ...), so the difference to Stevedore is what the app itself costs. A request without
an Authorization header gets 401 (the server's start-up probe expects it); the header's value is not checked.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterable
from typing import Any

BLOCK = 1024 * 1024
StartResponse = Callable[..., Any]


def make_app(global_conf: dict[str, str], **settings: str) -> Callable[..., Iterable[bytes]]:
    root = settings["bare.storage"]
    os.makedirs(os.path.join(root, "uploads"), exist_ok=True)
    os.makedirs(os.path.join(root, "blobs"), exist_ok=True)
    hashers: dict[str, Any] = {}  # upload id -> running SHA-256

    def answer(start: StartResponse, status: str, headers: list[tuple[str, str]] | None = None) -> list[bytes]:
        start(status, [("Content-Length", "0"), *(headers or [])])
        return [b""]

    def append(environ: dict[str, Any], upload: str) -> None:
        body, left = environ["wsgi.input"], int(environ.get("CONTENT_LENGTH") or 0)
        with open(os.path.join(root, "uploads", upload), "ab") as out:
            while left > 0 and (chunk := body.read(min(BLOCK, left))):
                hashers[upload].update(chunk)
                out.write(chunk)
                left -= len(chunk)

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        if not environ.get("HTTP_AUTHORIZATION"):
            return answer(start, "401 Unauthorized", [("WWW-Authenticate", 'Basic realm="bare"')])
        parts = path.split("/")
        if method == "POST" and path.endswith("/blobs/uploads/"):
            upload = uuid.uuid4().hex
            hashers[upload] = hashlib.sha256()
            open(os.path.join(root, "uploads", upload), "wb").close()
            return answer(start, "202 Accepted", [("Location", f"{path}{upload}")])
        if method in ("PATCH", "PUT") and "uploads" in parts:
            upload = parts[-1]
            if upload not in hashers:
                return answer(start, "404 Not Found")
            append(environ, upload)
            if method == "PATCH":
                return answer(start, "202 Accepted", [("Location", path)])
            digest = dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)["digest"]
            if digest != "sha256:" + hashers.pop(upload).hexdigest():
                return answer(start, "400 Bad Request")
            source = os.path.join(root, "uploads", upload)
            with open(source, "rb+") as handle:
                os.fsync(handle.fileno())
            os.rename(source, os.path.join(root, "blobs", digest))
            return answer(start, "201 Created", [("Docker-Content-Digest", digest)])
        if method in ("GET", "HEAD") and len(parts) > 2 and parts[-2] == "blobs":
            blob = os.path.join(root, "blobs", parts[-1])
            if not os.path.exists(blob):
                return answer(start, "404 Not Found")
            start(
                "200 OK", [("Content-Length", str(os.path.getsize(blob))), ("Content-Type", "application/octet-stream")]
            )
            if method == "HEAD":
                return [b""]
            return environ["wsgi.file_wrapper"](open(blob, "rb"), BLOCK)
        if path in ("/v2/", "/v2"):
            return answer(start, "200 OK")
        return answer(start, "404 Not Found")

    return app
