"""Web layer: the tokens page, where a logged-in person makes personal access tokens (the secret shown once, with
the `docker login` line that uses it), sees when each was made, last used and expires, and revokes them. Also wires
the access-token services into the request."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPForbidden, HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from stevedore.adapters.sql.access_tokens import SqlAccessTokenStore
from stevedore.domain.access_tokens import (
    MAX_EXPIRY_DAYS,
    MAX_NAME_LENGTH,
    AccessTokenService,
    AccessTokenUnknown,
    IssuedAccessToken,
    TokenScope,
    parse_namespaces,
)
from stevedore.domain.audit import AuditAction
from stevedore.domain.errors import InvalidInput
from stevedore.domain.model import Account
from stevedore.web.ui.forms import refused, sentence
from stevedore.web.ui.invites import when

TEMPLATE = "stevedore.web:templates/tokens.jinja2"
FLASH_DONE, FLASH_ERROR = "tokens", "tokens-error"
MAX_NAMESPACES_LENGTH = 2000


def includeme(config: Configurator) -> None:
    """Request methods and anything else this part wires into the app (app.py includes it)."""
    config.add_request_method(_access_token_service, "access_token_service", reify=True)
    config.add_request_method(_lookup_access_token_service, "lookup_access_token_service", reify=True)


def _access_token_service(request: Request) -> AccessTokenService:
    """For the page's writes, in the request's transaction."""
    return AccessTokenService(SqlAccessTokenStore(request.dbsession), request.registry.stevedore.clock)


def _lookup_access_token_service(request: Request) -> AccessTokenService:
    """For who is calling, outside the request's transaction (like the account look-up); a use is noted in a short
    transaction of its own."""
    components = request.registry.stevedore
    return AccessTokenService(
        SqlAccessTokenStore(request.lookup_connection, touch_sessions=components.write_sessions), components.clock
    )


def holder(request: Request) -> Account:
    """The logged-in account (anonymous visitors are sent to the login page by the default permission first)."""
    account: Account | None = request.web_account
    if account is None or not account.is_active:
        raise HTTPForbidden()
    return account


@view_config(route_name="ui.tokens", request_method="GET", renderer=TEMPLATE)
def tokens_page(request: Request) -> dict[str, Any]:
    return _page(request, holder(request))


@view_config(route_name="ui.tokens", request_method="POST", renderer=TEMPLATE)
def create_token(request: Request) -> dict[str, Any]:
    account = holder(request)
    form = {
        "name": str(request.POST.get("name", "")).strip()[: MAX_NAME_LENGTH + 1],
        "scope": str(request.POST.get("scope", TokenScope.PUSH.value)),
        "namespaces": str(request.POST.get("namespaces", ""))[: MAX_NAMESPACES_LENGTH + 1],
        "expires_in_days": str(request.POST.get("expires_in_days", "")).strip()[:10],
    }
    try:
        if len(form["namespaces"]) > MAX_NAMESPACES_LENGTH:
            raise InvalidInput("the list of namespaces is too long")
        days_text = form["expires_in_days"]
        if days_text and not (days_text.isascii() and days_text.isdigit()):
            raise InvalidInput(f"the expiry is a number of days, from 1 to {MAX_EXPIRY_DAYS}, or empty for none")
        issued = request.access_token_service.create(
            account,
            name=form["name"],
            scope=form["scope"],
            namespaces=parse_namespaces(form["namespaces"]),
            expires_in_days=int(days_text) if days_text else None,
        )
    except InvalidInput as exc:
        refused(request, 400)
        return _page(request, account, form=form, error=sentence(exc.message), kept=False)
    request.audit.record(AuditAction.TOKEN_CREATED, actor=account, target=issued.token.name, detail=form["scope"])
    return _page(request, account, issued=_shown_once(request, account, issued))


@view_config(route_name="ui.token_revoke", request_method="POST")
def revoke_token(request: Request) -> Response:
    account = holder(request)
    text = request.matchdict["token_id"]  # the route only matches digits
    token_id = int(text) if len(text) <= 10 and int(text) < 2**31 else 0  # no row has an id beyond the column's
    try:
        token = request.access_token_service.revoke(account, token_id)
    except AccessTokenUnknown as exc:
        request.tm.doom()
        request.session.flash(sentence(exc.message), FLASH_ERROR)
    else:
        request.audit.record(AuditAction.TOKEN_REVOKED, actor=account, target=token.name)
        request.session.flash(f"The token “{token.name}” is revoked: it no longer works.", FLASH_DONE)
    return HTTPSeeOther(location=request.route_path("ui.tokens"))


def _page(
    request: Request,
    account: Account,
    *,
    form: dict[str, str] | None = None,
    error: str | None = None,
    issued: dict[str, Any] | None = None,
    kept: bool = True,
) -> dict[str, Any]:
    """The page's data. `kept=False` after a refused form: the list is read outside the (doomed) transaction."""
    components = request.registry.stevedore
    service: AccessTokenService = request.access_token_service if kept else request.lookup_access_token_service
    session = request.session
    queues = {key[3:] for key in session if key.startswith("_f_")}
    return {
        "tokens": service.list_for(account),
        "now": components.clock.now(),
        "when": when,
        "scopes": list(TokenScope),
        "form": form or {"name": "", "scope": TokenScope.PUSH.value, "namespaces": "", "expires_in_days": "90"},
        "error": error,
        "issued": issued,
        "max_days": MAX_EXPIRY_DAYS,
        "max_name": MAX_NAME_LENGTH,
        "done": session.pop_flash(FLASH_DONE) if FLASH_DONE in queues else [],
        "failed": session.pop_flash(FLASH_ERROR) if FLASH_ERROR in queues else [],
    }


def _shown_once(request: Request, account: Account, issued: IssuedAccessToken) -> dict[str, Any]:
    """The secret (kept only as a hash, so this is the one chance to copy it) and the `docker login` line for it,
    naming the registry by its public URL when there is one."""
    public_url = request.registry.stevedore.settings.public_url
    host = urlsplit(public_url).netloc if public_url else request.host
    return {
        "token": issued.token,
        "secret": issued.secret,
        "login": f"docker login -u {account.username} --password-stdin {host}",
    }
