"""Web layer: exception views. Domain errors become the OCI JSON error body under /v2/ and an HTML page elsewhere."""

from __future__ import annotations

import logging
from typing import Any

from pyramid.exceptions import BadCSRFOrigin, BadCSRFToken, PredicateMismatch, URLDecodeError
from pyramid.httpexceptions import HTTPBadRequest, HTTPException, HTTPForbidden, HTTPNotFound
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import exception_view_config, forbidden_view_config, notfound_view_config, view_config

from stevedore.domain import errors as e
from stevedore.domain.model import RepositoryName
from stevedore.web.registry.challenge import challenge_header, required_scope
from stevedore.web.request_log import escaped_for_log
from stevedore.web.security import Permission
from stevedore.web.streaming_body import BodyInterrupted

log = logging.getLogger(__name__)

# Most specific first: the first class an error is an instance of decides.
ERROR_TABLE: list[tuple[type[e.StevedoreError], int, str]] = [
    (e.NameInvalid, 400, "NAME_INVALID"),
    (e.TagInvalid, 400, "TAG_INVALID"),
    (e.ReferenceInvalid, 400, "TAG_INVALID"),
    (e.DigestInvalid, 400, "DIGEST_INVALID"),
    (e.ManifestInvalid, 400, "MANIFEST_INVALID"),
    (e.ManifestBlobUnknown, 400, "MANIFEST_BLOB_UNKNOWN"),
    (e.SizeInvalid, 400, "SIZE_INVALID"),
    (e.RangeInvalid, 416, "BLOB_UPLOAD_INVALID"),
    (e.RangeNotSatisfiable, 416, "SIZE_INVALID"),
    (e.PayloadTooLarge, 413, "SIZE_INVALID"),
    (e.Unsupported, 400, "UNSUPPORTED"),
    (e.PaginationNumberInvalid, 400, "PAGINATION_NUMBER_INVALID"),
    (e.NameUnknown, 404, "NAME_UNKNOWN"),
    (e.BlobUnknown, 404, "BLOB_UNKNOWN"),
    (e.ManifestUnknown, 404, "MANIFEST_UNKNOWN"),
    (e.UploadUnknown, 404, "BLOB_UPLOAD_UNKNOWN"),
    (e.NotFound, 404, "NAME_UNKNOWN"),  # the spec has no generic code; under /v2/ only repositories have names
    (e.TooManyRequests, 429, "TOOMANYREQUESTS"),
    (e.Unauthenticated, 401, "UNAUTHORIZED"),
    (e.Denied, 403, "DENIED"),
    (e.TooManyUploads, 429, "TOOMANYREQUESTS"),
    (e.AccountExists, 409, "DENIED"),
    # Distribution answers storage trouble with UNAVAILABLE; 507 (Insufficient Storage) says which trouble.
    (e.StorageFull, 507, "UNAVAILABLE"),
    (e.StorageUnavailable, 503, "UNAVAILABLE"),
    (e.InvalidInput, 400, "UNSUPPORTED"),
]

NO_SUCH_ENDPOINT = "no such endpoint: a repository name is followed by manifests/, blobs/, tags/list or referrers/"


def status_and_code(error: e.StevedoreError) -> tuple[int, str]:
    for cls, status, code in ERROR_TABLE:
        if isinstance(error, cls):
            return status, code
    return 400, "UNSUPPORTED"


def is_registry_path(request: Request) -> bool:
    # The raw WSGI path: request.path_info would fail to decode a path like /v2/%ff.
    path: str = request.environ.get("PATH_INFO", "")
    return path == "/v2" or path.startswith("/v2/")


def oci_error_response(status: int, code: str, message: str, detail: Any = None) -> Response:
    response = Response(status=status, content_type="application/json", charset="utf-8")
    response.json_body = {"errors": [{"code": code, "message": message, "detail": detail}]}
    return response


def page_error_response(request: Request, status: int, message: str) -> Response:
    from pyramid.renderers import render_to_response

    response = render_to_response(
        "stevedore.web:templates/error.jinja2", {"status": status, "message": message}, request=request
    )
    response.status = status
    return response


@exception_view_config(e.StevedoreError)
def domain_error(exc: e.StevedoreError, request: Request) -> Response:
    status, code = status_and_code(exc)
    if isinstance(exc, e.Unauthenticated) and is_registry_path(request):
        response = oci_error_response(status, code, exc.message, exc.detail or {})
        response.headers["WWW-Authenticate"] = challenge_header(request, None)
        return response
    response = (
        oci_error_response(status, code, exc.message, exc.detail)
        if is_registry_path(request)
        else page_error_response(request, status, exc.message)
    )
    retry_after = getattr(exc, "retry_after_seconds", None)
    if status == 429 and retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


@forbidden_view_config()
def forbidden(exc: HTTPForbidden, request: Request) -> Response:
    """401 with a challenge for the anonymous and for a token that lacks a scope; 403 for a known caller denied."""
    principal = request.principal
    if not is_registry_path(request):
        if principal is None:
            from pyramid.httpexceptions import HTTPSeeOther

            return HTTPSeeOther(location=request.route_url("ui.login", _query={"next": request.path_qs}))
        return page_error_response(request, 403, "You may not see this page.")
    permission = getattr(request, "required_permission", None)
    if principal is None:
        # Not docker's default message, and a detail: dockerd takes a bare default UNAUTHORIZED for a passing error
        # and retries a push for about a minute; this one it reports at once.
        scope = required_scope(request, permission)
        response = oci_error_response(
            401, "UNAUTHORIZED", "authentication required: log in to this registry", {"scope": scope} if scope else {}
        )
        response.headers["WWW-Authenticate"] = challenge_header(request, permission)
        return response
    if principal.scopes is not None and request.registry_may(permission):
        # Known caller, allowed, but this token was not issued for it: ask the client for a better token.
        response = oci_error_response(401, "UNAUTHORIZED", "the token does not grant this access")
        response.headers["WWW-Authenticate"] = challenge_header(request, permission, insufficient=True)
        return response
    return oci_error_response(403, "DENIED", "requested access to the resource is denied")


@notfound_view_config()
def not_found(exc: HTTPNotFound, request: Request) -> Response:
    if is_registry_path(request):
        if isinstance(exc, PredicateMismatch):
            return oci_error_response(405, "UNSUPPORTED", "the method is not supported here")
        return oci_error_response(404, "NAME_UNKNOWN", NO_SUCH_ENDPOINT)
    return page_error_response(request, 404, "There is nothing here.")


@exception_view_config(HTTPException)
def http_exception(exc: HTTPException, request: Request) -> Response:
    if is_registry_path(request) and exc.status_code >= 400:
        return oci_error_response(exc.status_code, "UNSUPPORTED", exc.title or exc.explanation)
    return exc


@exception_view_config(BadCSRFToken)
@exception_view_config(BadCSRFOrigin)
def bad_csrf(exc: HTTPBadRequest, request: Request) -> Response:
    """A page form without this session's CSRF token (stale, from another site, or the session ended): nothing was
    done. Only pages check CSRF; /v2/ never does."""
    return page_error_response(
        request,
        400,
        "This form has expired or did not come from this site, so nothing was changed. "
        "Go back, reload the page and send the form again.",
    )


@exception_view_config(URLDecodeError)
def undecodable_url(exc: URLDecodeError, request: Request) -> Response:
    if is_registry_path(request):
        return oci_error_response(400, "NAME_INVALID", "the path is not valid UTF-8")
    return page_error_response(request, 400, "That address is not valid.")


@exception_view_config(BodyInterrupted)
def body_interrupted(exc: BodyInterrupted, request: Request) -> Response:
    """A streamed upload body that did not arrive whole (web/streaming_body.py): the client went away or silent, or
    sent a body too large or badly chunked. Nothing of the request is committed (pyramid_tm aborts); an expected
    event, so no traceback. The client has usually gone and reads no answer."""
    log.info(
        "%s %s: the request body did not arrive whole: %s",
        escaped_for_log(request.environ.get("REQUEST_METHOD", "")),
        escaped_for_log(request.environ.get("PATH_INFO", "")),
        escaped_for_log(str(exc)),
    )
    if exc.too_large:
        return oci_error_response(413, "SIZE_INVALID", "the request body is larger than this server accepts")
    return oci_error_response(400, "BLOB_UPLOAD_INVALID", "the request body did not arrive whole")


@exception_view_config(Exception)
def unexpected_error(exc: Exception, request: Request) -> Response:
    log.exception(
        "unexpected error on %s %s",
        escaped_for_log(request.environ.get("REQUEST_METHOD", "")),
        escaped_for_log(request.environ.get("PATH_INFO", "")),
    )
    if is_registry_path(request):
        return oci_error_response(500, "UNKNOWN", "internal server error")
    return page_error_response(request, 500, "Something went wrong on our side.")


# --- /v2/ paths that name no endpoint: the last routes in routes.py ------------------------------------------------
@view_config(
    route_name="registry.upload_slashed", request_method=("GET", "PATCH", "PUT", "DELETE"), permission=Permission.PUSH
)
def upload_id_with_a_slash(request: Request) -> Response:
    """`blobs/uploads/abc/def` or `abc%2Fdef`: no upload has such an id. Checked like an upload, so the caller is
    authenticated and the name parsed (by the security policy) first; other methods are 405 as on an upload."""
    raise e.UploadUnknown(detail={"upload": request.matchdict["upload_id"]})


@view_config(route_name="registry.unknown", permission=Permission.AUTHENTICATED)
def no_such_endpoint(request: Request) -> Response:
    """Anything else under /v2/ reads as a repository name with no endpoint after it: NAME_INVALID when it is no
    valid name, else NAME_UNKNOWN. Only for a known caller: the anonymous get the 401 challenge, as everywhere."""
    name = RepositoryName.parse(request.matchdict["path"].removesuffix("/"))
    raise e.NameUnknown(NO_SUCH_ENDPOINT, detail={"name": str(name)})
