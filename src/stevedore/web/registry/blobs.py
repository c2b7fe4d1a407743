"""Web layer: /v2/<name>/blobs/<digest> — pull (GET, HEAD, with ranges) and delete.

A GET whose store offers a download URL (S3, presigned) is answered 307 there once the permission (checked before
the view runs) and the database agree that the blob is in the repository; the client sends its Range to that URL.
HEADs are answered from the database alone. The request log writes the request's path, never the Location, so the
URL's signature stays out of the logs."""

from __future__ import annotations

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from stevedore.domain.audit import AuditAction
from stevedore.domain.errors import RangeNotSatisfiable
from stevedore.domain.model import Digest
from stevedore.web.registry.http import CHUNK_SIZE, empty_response, repository, requested_range
from stevedore.web.security import Permission


@view_config(route_name="registry.blob", request_method=("GET", "HEAD"), permission=Permission.PULL)
def get_blob(request: Request) -> Response:
    name = repository(request)
    digest = Digest.parse(request.matchdict["digest"])
    service = request.registry_service
    info = service.stat_blob(name, digest)  # everything from the database is resolved before the body is sent

    response = Response(status=200)
    response.headers["Content-Type"] = "application/octet-stream"
    response.headers["Docker-Content-Digest"] = str(digest)
    response.headers["ETag"] = f'"{digest}"'
    response.headers["Accept-Ranges"] = "bytes"
    response.headers["Cache-Control"] = "max-age=31536000"
    try:
        byte_range = requested_range(request, info.size)
    except RangeNotSatisfiable:
        response.status = 416
        response.headers["Content-Range"] = f"bytes */{info.size}"
        response.content_length = 0
        response.app_iter = []
        return response

    if byte_range is not None:
        response.status = 206
        response.headers["Content-Range"] = f"bytes {byte_range.start}-{byte_range.end}/{info.size}"
    length = byte_range.length if byte_range else info.size
    if request.method == "HEAD":
        response.app_iter = []
    elif (url := service.blobs.download_url(digest, info.location)) is not None:
        return _redirect(digest, url)
    else:
        path = service.blobs.local_path(digest)
        file_wrapper = request.environ.get("wsgi.file_wrapper")
        if byte_range is None and path is not None and file_wrapper is not None:
            response.app_iter = file_wrapper(open(path, "rb"), CHUNK_SIZE)  # noqa: SIM115 - the server closes it
        else:
            response.app_iter = service.open_blob(digest, byte_range, info.location)
    response.content_length = length
    return response


def _redirect(digest: Digest, url: str) -> Response:
    """307 keeps the method and lets the client repeat its Range header at the new location."""
    response = Response(status=307)
    response.headers["Location"] = url
    response.headers["Docker-Content-Digest"] = str(digest)
    response.headers["Cache-Control"] = "no-store"  # the URL expires: never cache the redirect itself
    response.content_length = 0
    response.app_iter = []
    return response


@view_config(route_name="registry.blob", request_method="DELETE", permission=Permission.DELETE)
def delete_blob(request: Request) -> Response:
    name = repository(request)
    digest = Digest.parse(request.matchdict["digest"])
    request.registry_service.delete_blob(name, digest)
    request.audit.record(AuditAction.DELETE_BLOB, repository=name, target=f"{name}@{digest}")
    return empty_response(202)
