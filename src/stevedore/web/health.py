"""Web layer: health for load balancers and orchestrators. `GET /-/healthy`: the process answers (liveness; it
touches nothing). `GET /-/ready`: this node can reach its database and storage (readiness; 503 when one of them is
unavailable); `/-/health` is its older name.

Anonymous on purpose, never cached, and they say nothing but "ok" or "unavailable" per dependency."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from pyramid.request import Request
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config

from stevedore.domain.model import Digest

log = logging.getLogger(__name__)


def _answer(status: int, body: dict[str, str]) -> Response:
    response = Response(status=status, content_type="application/json", charset="utf-8")
    response.json_body = body
    response.headers["Cache-Control"] = "no-store"
    return response


@view_config(route_name="healthy", request_method=("GET", "HEAD"), permission=NO_PERMISSION_REQUIRED)
def healthy(request: Request) -> Response:
    return _answer(200, {"status": "ok"})


@view_config(route_name="ready", request_method=("GET", "HEAD"), permission=NO_PERMISSION_REQUIRED)
@view_config(route_name="health", request_method=("GET", "HEAD"), permission=NO_PERMISSION_REQUIRED)
def ready(request: Request) -> Response:
    components = request.registry.stevedore
    checks = {"database": "ok", "storage": "ok"}
    try:
        request.lookup_connection.execute(sa.text("SELECT 1"))
    except Exception:
        log.exception("readiness check: the database is unavailable")
        checks["database"] = "unavailable"
    try:
        check = getattr(components.blob_store, "check_available", None)
        if check is not None:
            check()  # S3: HEAD the bucket
        else:
            components.blob_store.stat(Digest.of(b""))  # a read that touches the backend; absent is fine
    except Exception:
        log.exception("readiness check: the blob storage is unavailable")
        checks["storage"] = "unavailable"
    ready = all(value == "ok" for value in checks.values())
    return _answer(200 if ready else 503, {"status": "ok" if ready else "unavailable", **checks})
