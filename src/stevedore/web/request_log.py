"""Web layer: one log line per request, for operators — method, path, status, size, time and who. Never headers,
bodies or credentials."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from pyramid.request import Request
from pyramid.response import Response

log = logging.getLogger("stevedore.requests")


def request_log_tween_factory(handler: Callable[[Request], Response], registry: Any) -> Callable[[Request], Response]:
    def request_log_tween(request: Request) -> Response:
        started = time.monotonic()
        response = handler(request)
        if log.isEnabledFor(logging.INFO):
            principal = request.__dict__.get("principal")  # only if this request already authenticated
            query = request.environ.get("QUERY_STRING", "")  # digests, mounts, paging: never secrets
            log.info(
                "%s %s%s %s %s %.3fs %s",
                request.method,
                request.environ.get("PATH_INFO", ""),
                f"?{query}" if query else "",
                response.status_code,
                response.content_length if response.content_length is not None else "-",
                time.monotonic() - started,
                principal.account.username if principal else "-",
            )
        return response

    return request_log_tween
