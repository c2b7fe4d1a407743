"""Web layer: the token endpoint of docker's auth flow, `/v2/token`.

GET with Basic credentials (docker's token spec: repeated `scope`, `offline_token`, `client_id`, `account`) and the
OAuth2 POST form (`grant_type=password` or `refresh_token`; one space-separated `scope`), which docker uses with the
identity token it keeps after `docker login`.
"""

from __future__ import annotations

from typing import Any

from pyramid.request import Request
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config

from stevedore.domain.access_tokens import AccessToken
from stevedore.domain.errors import InvalidInput, PayloadTooLarge, TokenInvalid, Unauthenticated
from stevedore.domain.model import Account, Scope
from stevedore.domain.tokens import IssuedToken
from stevedore.web.registry.challenge import service_name
from stevedore.web.registry.http import json_response
from stevedore.web.security import parse_basic, principal_for_password, robot_stands


def _scopes(values: list[str]) -> list[Scope]:
    scopes = []
    for value in values:
        for text in value.split():
            try:
                scopes.append(Scope.parse(text))
            except InvalidInput:
                continue  # an unintelligible scope is simply not granted
    return scopes


def _body(issued: IssuedToken, *, oauth: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": issued.issued_at,
    }
    if oauth:
        body["scope"] = " ".join(str(s) for s in issued.granted)
    if issued.refresh_token:
        body["refresh_token"] = issued.refresh_token
    return body


def _issue(
    request: Request,
    account: Account,
    scopes: list[Scope],
    *,
    service: str | None,
    offline: bool,
    access_token: AccessToken | None = None,
) -> IssuedToken:
    """Tokens for this registry, or for one of the registries configured to trust our tokens. A login made with a
    personal access token gets only what both the account and that token allow."""
    own = service_name(request)
    audiences = (own, *request.registry.stevedore.settings.token_audiences)
    return request.token_service.issue(  # type: ignore[no-any-return]
        account,
        scopes,
        service=service or own,
        offline=offline,
        audiences=audiences,
        own_service=own,
        access_token=access_token,
    )


def _token_response(body: dict[str, Any]) -> Response:
    response = json_response(body)
    response.headers["Cache-Control"] = "no-store"
    return response


def _unauthenticated(message: str) -> Unauthenticated:
    return Unauthenticated(message)


@view_config(route_name="registry.token", request_method="GET", permission=NO_PERMISSION_REQUIRED)
def get_token(request: Request) -> Response:
    credentials = parse_basic(request.headers.get("Authorization", ""))
    if credentials is None:
        raise _unauthenticated(f'authentication required: run "docker login {service_name(request)}" first')
    principal = principal_for_password(request, *credentials)
    if principal is None:
        raise _unauthenticated("invalid user name or password")
    issued = _issue(
        request,
        principal.account,
        _scopes(request.GET.getall("scope")),
        service=request.GET.get("service"),
        offline=request.GET.get("offline_token", "").lower() == "true",
        access_token=principal.access_token,
    )
    return _token_response(_body(issued, oauth=False))


MAX_FORM_BYTES = 64 * 1024


@view_config(route_name="registry.token", request_method="POST", permission=NO_PERMISSION_REQUIRED)
def post_token(request: Request) -> Response:
    # Anyone may call this: refuse a big body from its Content-Length before WebOb reads the form into memory.
    if request.content_length is None or request.content_length > MAX_FORM_BYTES:
        raise PayloadTooLarge(f"the token form is limited to {MAX_FORM_BYTES} bytes")
    posted = request.POST

    def field(name: str, default: str = "") -> str:
        # Only text counts: a multipart form may carry a file part under any name.
        value = posted.get(name, default)
        return value if isinstance(value, str) else default

    grant_type = field("grant_type")
    account: Account | None
    access_token: AccessToken | None = None
    if grant_type == "password":
        principal = principal_for_password(request, field("username"), field("password"))
        if principal is None:
            raise _unauthenticated("invalid user name or password")
        account, access_token = principal.account, principal.access_token
    elif grant_type == "refresh_token":
        try:
            holder = request.token_service.holder_of_refresh_token(field("refresh_token"))
            account = holder.account
            if not robot_stands(request, account):
                raise TokenInvalid("the robot's namespace no longer stands behind it")
            if holder.access_token_id is not None:
                # A login made with a personal access token ends with it (revoked or expired), and stays limited.
                access_token = request.lookup_access_token_service.usable(holder.access_token_id, account)
                if access_token is None:
                    raise TokenInvalid("the access token of this login was revoked or has expired")
        except TokenInvalid as exc:
            # docker shows this message as it is: say what to do (a new password or a disable ended the login).
            raise _unauthenticated(
                f'the login has expired or was ended: run "docker login {service_name(request)}" again'
            ) from exc
    else:
        raise InvalidInput("grant_type must be password or refresh_token")
    issued = _issue(
        request,
        account,
        _scopes([field("scope")]),
        service=field("service") or None,
        offline=grant_type == "password" and field("access_type") == "offline",
        access_token=access_token,
    )
    return _token_response(_body(issued, oauth=True))
