"""Web layer: /v2/<name>/manifests/<reference> — pull (GET, HEAD), push (PUT) and delete.

Each view also answers `registry.manifest_slashed`, the same path with a `/` in the reference (`a%2Fb` arrives
decoded) or none at all: such a reference parses as neither a tag nor a digest, and is answered like any other."""

from __future__ import annotations

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from stevedore.domain.audit import AuditAction
from stevedore.domain.errors import DigestInvalid, ManifestUnknown, ReferenceInvalid
from stevedore.domain.model import Reference
from stevedore.web.registry.http import absolute, empty_response, read_limited_body, repository
from stevedore.web.security import Permission


def reference_to_find(request: Request) -> Reference:
    """The reference of a GET, HEAD or DELETE. One that is neither a valid tag nor a valid digest names no manifest,
    so it is MANIFEST_UNKNOWN, as CNCF Distribution answers; only a PUT says why a reference is refused."""
    text = request.matchdict["reference"]
    try:
        return Reference.parse(text)
    except (ReferenceInvalid, DigestInvalid) as exc:
        raise ManifestUnknown("no manifest is known by that reference", detail={"reference": text}) from exc


@view_config(route_name="registry.manifest", request_method=("GET", "HEAD"), permission=Permission.PULL)
@view_config(route_name="registry.manifest_slashed", request_method=("GET", "HEAD"), permission=Permission.PULL)
def get_manifest(request: Request) -> Response:
    name = repository(request)
    manifest = request.registry_service.get_manifest(name, reference_to_find(request))
    response = Response(status=200)
    response.headers["Content-Type"] = manifest.media_type
    response.headers["Docker-Content-Digest"] = str(manifest.digest)
    response.headers["ETag"] = f'"{manifest.digest}"'
    if request.method == "HEAD":
        response.app_iter = []
        response.content_length = manifest.size
    else:
        response.body = manifest.content
    return response


@view_config(route_name="registry.manifest", request_method="PUT", permission=Permission.PUSH)
@view_config(route_name="registry.manifest_slashed", request_method="PUT", permission=Permission.PUSH)
def put_manifest(request: Request) -> Response:
    name = repository(request)
    reference = Reference.parse(request.matchdict["reference"])
    service = request.registry_service
    body = read_limited_body(request, service.max_manifest_bytes)
    principal = request.principal  # the PUSH permission let only a known caller in
    pushed = service.put_manifest(
        name,
        reference,
        body,
        request.headers.get("Content-Type"),
        extra_tags=request.GET.getall("tag"),
        pushed_by=principal.account.username if principal is not None else None,
    )
    request.audit.record(
        AuditAction.PUSH,
        repository=name,
        target=f"{name}@{pushed.digest}",
        detail=("tags " + ", ".join(pushed.tags)) if pushed.tags else None,
    )
    response = empty_response(201)
    response.headers["Location"] = absolute(request, f"/v2/{name}/manifests/{pushed.digest}")
    response.headers["Docker-Content-Digest"] = str(pushed.digest)
    if pushed.subject is not None:
        response.headers["OCI-Subject"] = str(pushed.subject)
    for tag in pushed.tags:
        response.headers.add("OCI-Tag", tag)
    return response


@view_config(route_name="registry.manifest", request_method="DELETE", permission=Permission.DELETE)
@view_config(route_name="registry.manifest_slashed", request_method="DELETE", permission=Permission.DELETE)
def delete_manifest(request: Request) -> Response:
    name = repository(request)
    reference = reference_to_find(request)
    principal = request.principal  # the DELETE permission let only a known caller in
    actor = principal.account.username if principal is not None else None
    request.registry_service.delete_manifest(name, reference, actor)
    if reference.tag is not None:
        request.audit.record(AuditAction.DELETE_TAG, repository=name, target=f"{name}:{reference.tag.value}")
    else:
        request.audit.record(AuditAction.DELETE_MANIFEST, repository=name, target=f"{name}@{reference.digest}")
    return empty_response(202)
