"""Web layer: `GET /v2/`, the API version check that every client starts with."""

from __future__ import annotations

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from stevedore.web.security import Permission


@view_config(route_name="registry.base", request_method=("GET", "HEAD"), permission=Permission.AUTHENTICATED)
@view_config(route_name="registry.base_noslash", request_method=("GET", "HEAD"), permission=Permission.AUTHENTICATED)
def api_version_check(request: Request) -> Response:
    response = Response(status=200, content_type="application/json", charset="utf-8")
    response.body = b"{}"
    return response
