"""Web layer: /v2/<name>/blobs/uploads/ — monolithic, chunked and streamed pushes, status, cancel, mount."""

from __future__ import annotations

import time

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from stevedore.domain.access import Access, Action
from stevedore.domain.errors import DigestInvalid, NameInvalid
from stevedore.domain.model import BlobInfo, Digest, RepositoryName
from stevedore.web import metrics
from stevedore.web.errors import oci_error_response
from stevedore.web.registry.challenge import challenge_for_scopes
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


def _advertise_min_chunk(request: Request, response: Response) -> Response:
    """OCI-Chunk-Min-Length when the store has a minimum chunk (S3: its part size); absent when it has none."""
    minimum = request.registry_service.blobs.min_chunk_length()
    if minimum is not None:
        response.headers["OCI-Chunk-Min-Length"] = str(minimum)
    return response


def _account_id(request: Request) -> int | None:
    return request.principal.account.id  # type: ignore[no-any-return]


def _mount_from(request: Request, name: RepositoryName, digest: Digest, source: str) -> Response | None:
    """POST ?mount=&from=: 201 when mounted, a 401 challenge when only the token stands in the way, else None (the
    caller opens a fresh upload, which is how the spec answers a mount that cannot happen)."""
    try:
        source_name = RepositoryName.parse(source)
    except NameInvalid:
        return None
    principal = request.principal
    rights: Access = request.access
    if authorize(rights, principal, Action.PULL, source_name):
        mounted = request.registry_service.mount_blob(name, source_name, digest)
        return None if mounted is None else _created(request, name, mounted)
    if principal.scopes is not None and rights.may(principal.account, Action.PULL, source_name):
        # The account may pull the source, this token was just not issued for it. As CNCF Distribution does, ask
        # for both scopes: a client that follows challenges fetches one token for them and retries the mount
        # (docker asks for the source's scope up front). Built from the parsed names, never from the raw query.
        response = oci_error_response(
            401,
            "UNAUTHORIZED",
            "the token does not grant pull on the repository to mount from",
            {"scope": f"repository:{source_name.value}:pull"},
        )
        response.headers["WWW-Authenticate"] = challenge_for_scopes(
            request,
            [f"repository:{name.value}:pull,push", f"repository:{source_name.value}:pull"],
            insufficient=True,
        )
        return response
    # The account may not pull the source (or it does not exist for them): a fresh upload reveals nothing about it.
    return None


def _mount_from_any(request: Request, name: RepositoryName, digest: Digest) -> Response | None:
    """POST ?mount= without `from`: the spec lets the registry choose the source. Only repositories the caller may
    pull are candidates: for Basic credentials every one the account may pull; for a Bearer token only those the token
    itself grants pull on (the target included when, as clients ask, it grants pull,push there) and that the account
    may pull. Counting the account's rights alone would let a token scoped to one repository read blobs of others."""
    principal = request.principal
    rights: Access = request.access
    mounted = request.registry_service.mount_blob_from_any(
        name, digest, lambda candidate: bool(authorize(rights, principal, Action.PULL, candidate))
    )
    return None if mounted is None else _created(request, name, mounted)


@view_config(route_name="registry.uploads", request_method="POST", permission=Permission.PUSH)
def start_upload(request: Request) -> Response:
    name = repository(request)
    service = request.registry_service

    mount = request.GET.get("mount")
    if mount:
        digest = Digest.parse(mount)
        source = request.GET.get("from")
        answer = _mount_from(request, name, digest, source) if source else _mount_from_any(request, name, digest)
        if answer is not None:
            return answer

    digest_param = request.GET.get("digest")
    if digest_param:
        started = time.monotonic()
        info = service.push_blob(name, Digest.parse(digest_param), iter_body(request))
        metrics.record_blob_upload("monolithic", time.monotonic() - started)
        return _created(request, name, info)

    algorithm = request.GET.get("digest-algorithm", "sha256")
    if not Digest.is_supported_algorithm(algorithm):
        raise DigestInvalid(f"unsupported digest algorithm {algorithm!r}", detail={"digest-algorithm": algorithm})
    upload_id = service.start_upload(name, _account_id(request), algorithm)
    return _advertise_min_chunk(request, _in_progress(request, name, upload_id, 0))


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
    return _advertise_min_chunk(request, _in_progress(request, name, upload_id, size))


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
    _record_session_upload(request, name, upload_id)
    return _created(request, name, info)


def _record_session_upload(request: Request, name: RepositoryName, upload_id: str) -> None:
    """The upload's duration, from its POST (the ticket's time, whole seconds) to now. Sessions of older releases
    (plain UUIDs) carry no time and are not timed."""
    components = request.registry.stevedore
    ticket = components.upload_tickets.read(upload_id, name, _account_id(request))
    if ticket is not None and ticket.signed:
        metrics.record_blob_upload("session", (components.clock.now() - ticket.created_at).total_seconds())


@view_config(route_name="registry.upload", request_method="DELETE", permission=Permission.PUSH)
def cancel_upload(request: Request) -> Response:
    request.registry_service.cancel_upload(repository(request), request.matchdict["upload_id"], _account_id(request))
    return empty_response(204)
