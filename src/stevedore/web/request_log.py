"""Web layer: one log line per request, for operators — method, path, status, size, time and who. Never headers,
bodies or credentials."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from pyramid.request import Request
from pyramid.response import Response

log = logging.getLogger("stevedore.requests")

# Printable ASCII but the space and the backslash: what a logged field may hold as it is.
_UNSAFE_BYTE = re.compile(rb"[^\x21-\x5b\x5d-\x7e]")


def escaped_for_log(value: str, *, from_environ: bool = True) -> str:
    r"""`value` as one unambiguous token of printable ASCII, the way nginx writes its access log: every byte that is
    a control character, a space, a backslash or not ASCII becomes `\xNN`, so a client cannot forge a line (`%0a`),
    colour a terminal (`%1b`) or split a field (`%20`). A string from the WSGI environ holds the request's bytes as
    latin-1 (PEP 3333), so a path byte that is not UTF-8 is shown as the byte it was; other text as its UTF-8."""
    try:
        data = value.encode("latin-1") if from_environ else value.encode("utf-8", "surrogatepass")
    except UnicodeEncodeError:  # a server that broke PEP 3333
        data = value.encode("utf-8", "surrogatepass")
    return _UNSAFE_BYTE.sub(lambda match: b"\\x%02x" % match.group()[0], data).decode("ascii")


def request_log_tween_factory(handler: Callable[[Request], Response], registry: Any) -> Callable[[Request], Response]:
    def request_log_tween(request: Request) -> Response:
        started = time.monotonic()
        response = handler(request)
        if log.isEnabledFor(logging.INFO):
            principal = request.__dict__.get("principal")  # only if this request already authenticated
            query = request.environ.get("QUERY_STRING", "")  # digests, mounts, paging: never secrets
            log.info(
                "%s %s%s %s %s %.3fs %s",
                escaped_for_log(request.environ.get("REQUEST_METHOD", "")),
                escaped_for_log(request.environ.get("PATH_INFO", "")),
                f"?{escaped_for_log(query)}" if query else "",
                response.status_code,
                response.content_length if response.content_length is not None else "-",
                time.monotonic() - started,
                escaped_for_log(principal.account.username, from_environ=False) if principal else "-",
            )
        return response

    return request_log_tween
