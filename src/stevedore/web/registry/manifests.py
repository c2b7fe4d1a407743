"""Web layer: /v2/<name>/manifests/<reference> — pull (GET, HEAD), push (PUT) and delete."""

from __future__ import annotations

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from stevedore.domain.model import Reference
from stevedore.web.registry.http import absolute, empty_response, read_limited_body, repository
from stevedore.web.security import Permission


@view_config(route_name="registry.manifest", request_method=("GET", "HEAD"), permission=Permission.PULL)
def get_manifest(request: Request) -> Response:
    name = repository(request)
    manifest = request.registry_service.get_manifest(name, Reference.parse(request.matchdict["reference"]))
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
def put_manifest(request: Request) -> Response:
    name = repository(request)
    reference = Reference.parse(request.matchdict["reference"])
    service = request.registry_service
    body = read_limited_body(request, service.max_manifest_bytes)
    pushed = service.put_manifest(
        name, reference, body, request.headers.get("Content-Type"), extra_tags=request.GET.getall("tag")
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
def delete_manifest(request: Request) -> Response:
    request.registry_service.delete_manifest(repository(request), Reference.parse(request.matchdict["reference"]))
    return empty_response(202)
