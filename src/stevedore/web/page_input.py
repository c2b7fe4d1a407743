"""Web layer: what no page input may hold. A NUL in a path, query or form field is refused with a 400 page before any
view runs: PostgreSQL refuses NUL in text, so it would otherwise surface as a 500 wherever a field reaches a query.
Undecodable (non-UTF-8) query strings and forms get a 400 too. /v2/ is left alone: its views answer in the spec's
terms, and its bodies are never read here."""

from __future__ import annotations

from collections.abc import Iterable

from pyramid.events import NewRequest, subscriber
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import exception_view_config

from stevedore.domain.errors import InvalidInput
from stevedore.web.errors import is_registry_path, oci_error_response, page_error_response

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@subscriber(NewRequest)
def refuse_nul_in_page_input(event: NewRequest) -> None:
    request: Request = event.request
    if is_registry_path(request):
        return
    if "\x00" in request.path_info or _holds_nul(request.GET.values()):
        raise InvalidInput("The address holds a character no page takes (NUL).")
    if request.method == "POST" and (request.content_type or "") in FORM_TYPES and _holds_nul(request.POST.values()):
        raise InvalidInput("The form holds a character no page takes (NUL).")


def _holds_nul(values: Iterable[object]) -> bool:
    return any(isinstance(value, str) and "\x00" in value for value in values)


@exception_view_config(UnicodeDecodeError)
def undecodable_input(exc: UnicodeDecodeError, request: Request) -> Response:
    """A query string or form that is not UTF-8 (`?q=%ff`)."""
    if is_registry_path(request):
        return oci_error_response(400, "UNSUPPORTED", "the query is not valid UTF-8")
    return page_error_response(request, 400, "That address or form is not valid UTF-8.")
