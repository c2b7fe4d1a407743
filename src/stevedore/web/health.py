"""Web layer: `GET /-/health` for load balancers and orchestrators — can this node reach its database and storage?

Anonymous on purpose, and it says nothing but "ok" or "unavailable" per dependency."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from pyramid.request import Request
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config

from stevedore.domain.model import Digest

log = logging.getLogger(__name__)


@view_config(route_name="health", request_method=("GET", "HEAD"), permission=NO_PERMISSION_REQUIRED)
def health(request: Request) -> Response:
    components = request.registry.stevedore
    checks = {"database": "ok", "storage": "ok"}
    try:
        request.lookup_connection.execute(sa.text("SELECT 1"))
    except Exception:
        log.exception("health check: the database is unavailable")
        checks["database"] = "unavailable"
    try:
        check = getattr(components.blob_store, "check_available", None)
        if check is not None:
            check()  # S3: HEAD the bucket
        else:
            components.blob_store.stat(Digest.of(b""))  # a read that touches the backend; absent is fine
    except Exception:
        log.exception("health check: the blob storage is unavailable")
        checks["storage"] = "unavailable"
    healthy = all(value == "ok" for value in checks.values())
    response = Response(status=200 if healthy else 503, content_type="application/json", charset="utf-8")
    response.json_body = {"status": "ok" if healthy else "unavailable", **checks}
    response.headers["Cache-Control"] = "no-store"
    return response
