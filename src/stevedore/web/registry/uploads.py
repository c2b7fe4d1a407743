"""Web layer: /v2/<name>/blobs/uploads/ — monolithic, chunked and streamed pushes, status, cancel, mount."""

from __future__ import annotations

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from stevedore.domain.access import Action
from stevedore.domain.errors import DigestInvalid, NameInvalid
from stevedore.domain.model import BlobInfo, Digest, RepositoryName
from stevedore.web.registry.http import (
    blob_location,
    content_range_start,
    empty_response,
    iter_body,
    repository,
    upload_location,
    upload_range,
)
from stevedore.web.security import Permission, authorize


def _created(request: Request, name: RepositoryName, info: BlobInfo) -> Response:
    response = empty_response(201)
    response.headers["Location"] = blob_location(request, name, info.digest)
    response.headers["Docker-Content-Digest"] = str(info.digest)
    return response


def _in_progress(request: Request, name: RepositoryName, upload_id: str, size: int, status: int = 202) -> Response:
    response = empty_response(status)
    response.headers["Location"] = upload_location(request, name, upload_id)
    response.headers["Range"] = upload_range(size)
    response.headers["Docker-Upload-UUID"] = upload_id
    return response


def _account_id(request: Request) -> int | None:
    return request.principal.account.id  # type: ignore[no-any-return]


@view_config(route_name="registry.uploads", request_method="POST", permission=Permission.PUSH)
def start_upload(request: Request) -> Response:
    name = repository(request)
    service = request.registry_service

    mount, source = request.GET.get("mount"), request.GET.get("from")
    if mount and source:
        digest = Digest.parse(mount)
        try:
            source_name = RepositoryName.parse(source)
        except NameInvalid:
            source_name = None
        # Without pull on the source (in this very token, for Bearer) a mount is simply not possible: the spec
        # answers that with a fresh upload session, which also reveals nothing about the source.
        if source_name is not None and authorize(request.principal, Action.PULL, source_name):
            mounted = service.mount_blob(name, source_name, digest)
            if mounted is not None:
                return _created(request, name, mounted)

    digest_param = request.GET.get("digest")
    if digest_param:
        return _created(request, name, service.push_blob(name, Digest.parse(digest_param), iter_body(request)))

    algorithm = request.GET.get("digest-algorithm", "sha256")
    if not Digest.is_supported_algorithm(algorithm):
        raise DigestInvalid(f"unsupported digest algorithm {algorithm!r}", detail={"digest-algorithm": algorithm})
    upload_id = service.start_upload(name, _account_id(request), algorithm)
    response = _in_progress(request, name, upload_id, 0)
    response.headers["OCI-Chunk-Min-Length"] = "0"
    return response


@view_config(route_name="registry.upload", request_method="GET", permission=Permission.PUSH)
def upload_status(request: Request) -> Response:
    name = repository(request)
    upload_id = request.matchdict["upload_id"]
    size = request.registry_service.upload_status(name, upload_id, _account_id(request))
    return _in_progress(request, name, upload_id, size, status=204)


@view_config(route_name="registry.upload", request_method="PATCH", permission=Permission.PUSH)
def append_chunk(request: Request) -> Response:
    name = repository(request)
    upload_id = request.matchdict["upload_id"]
    start = content_range_start(request)
    size = request.registry_service.append_upload(name, upload_id, _account_id(request), iter_body(request), start)
    return _in_progress(request, name, upload_id, size)


@view_config(route_name="registry.upload", request_method="PUT", permission=Permission.PUSH)
def finish_upload(request: Request) -> Response:
    name = repository(request)
    upload_id = request.matchdict["upload_id"]
    digest_param = request.GET.get("digest")
    if not digest_param:
        raise DigestInvalid("the digest query parameter is required to finish an upload")
    digest = Digest.parse(digest_param)
    start = content_range_start(request)
    info = request.registry_service.finish_upload(
        name, upload_id, _account_id(request), digest, iter_body(request), start
    )
    return _created(request, name, info)


@view_config(route_name="registry.upload", request_method="DELETE", permission=Permission.PUSH)
def cancel_upload(request: Request) -> Response:
    request.registry_service.cancel_upload(repository(request), request.matchdict["upload_id"], _account_id(request))
    return empty_response(204)
