"""Web layer: discovery — /v2/<name>/tags/list, /v2/_catalog and /v2/<name>/referrers/<digest>."""

from __future__ import annotations

from urllib.parse import urlencode

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from stevedore.domain.access import Access, Action
from stevedore.domain.errors import NameInvalid
from stevedore.domain.manifests import OCI_INDEX
from stevedore.domain.model import Digest, RepositoryName
from stevedore.domain.registry import Page
from stevedore.web.registry.http import json_response, page_size, pagination_marker, repository
from stevedore.web.security import Permission


def _link_next(response: Response, path: str, page: Page, n: int | None) -> None:
    """RFC 5988 `Link` to the next page, as distribution-spec's discovery section shows it."""
    if page.has_more and page.items:
        query = urlencode({"n": n if n is not None else len(page.items), "last": page.items[-1]})
        response.headers["Link"] = f'<{path}?{query}>; rel="next"'


@view_config(route_name="registry.tags", request_method=("GET", "HEAD"), permission=Permission.PULL)
def list_tags(request: Request) -> Response:
    name = repository(request)
    n = page_size(request)
    page = request.registry_service.list_tags(name, pagination_marker(request), n)
    response = json_response({"name": name.value, "tags": page.items})
    _link_next(response, f"/v2/{name}/tags/list", page, n)
    return response


@view_config(route_name="registry.catalog", request_method=("GET", "HEAD"), permission=Permission.CATALOG)
def catalog(request: Request) -> Response:
    n = page_size(request)
    principal = request.principal
    rights: Access = request.access

    def visible(name: str) -> bool:
        # The account's rights decide, not the token's repository scopes: a token asked for the catalog carries
        # registry:catalog:* alone, and the catalog lists everything its holder may pull.
        try:
            allowed = rights.may(principal.account, Action.PULL, RepositoryName.parse(name))
        except NameInvalid:
            return False
        # A personal access token limited to some namespaces shows only those.
        return allowed and (principal.access_token is None or principal.access_token.allows("pull", name))

    page = request.registry_service.list_repositories(pagination_marker(request), n, visible)
    response = json_response({"repositories": page.items})
    _link_next(response, "/v2/_catalog", page, n)
    return response


@view_config(route_name="registry.referrers", request_method=("GET", "HEAD"), permission=Permission.PULL)
def referrers(request: Request) -> Response:
    name = repository(request)
    digest = Digest.parse(request.matchdict["digest"])
    artifact_type = request.params.get("artifactType") or None
    descriptors = request.registry_service.referrers(name, digest, artifact_type)
    response = json_response({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}, OCI_INDEX)
    if artifact_type is not None:
        response.headers["OCI-Filters-Applied"] = "artifactType"
    return response
