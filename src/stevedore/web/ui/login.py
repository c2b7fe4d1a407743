"""Web layer: logging in to the pages and out again, with the same user name and password docker uses."""

from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config

from stevedore.domain.audit import AuditAction
from stevedore.domain.errors import TooManyRequests
from stevedore.domain.login_backoff import LoginThrottled, seconds_text
from stevedore.domain.model import MAX_USERNAME_LENGTH
from stevedore.web.login_backoff import checked, login_failed, login_succeeded, reserve_login
from stevedore.web.ui.forms import local_path_or, refused
from stevedore.web.ui.session import log_in, log_out

TEMPLATE = "stevedore.web:templates/login.jinja2"
WRONG_CREDENTIALS = "The user name or the password is wrong, or the account is disabled."
BUSY = "Too many logins are being checked right now. Wait a few seconds and try again."
THROTTLED = "Too many failed logins for this account or from your address: try again in {seconds}."


@view_config(route_name="ui.login", request_method="GET", renderer=TEMPLATE, permission=NO_PERMISSION_REQUIRED)
def login_form(request: Request) -> dict[str, Any] | Response:
    next_path = local_path_or(request, request.GET.get("next"))
    if request.web_account is not None:
        return HTTPSeeOther(location=next_path)
    return {"next": next_path, "username": "", "error": None}


@view_config(route_name="ui.login", request_method="POST", renderer=TEMPLATE, permission=NO_PERMISSION_REQUIRED)
def login(request: Request) -> dict[str, Any] | Response:
    username = request.POST.get("username", "")
    password = request.POST.get("password", "")
    next_path = local_path_or(request, request.POST.get("next"))
    form = {"next": next_path, "username": username[:64]}
    try:
        # The failed-login backoff (domain/login_backoff.py), counted like the failures on /v2/.
        reservation = reserve_login(request, username)
        account = checked(request, reservation, lambda: request.lookup_account_service.authenticate(username, password))
    except TooManyRequests as exc:
        refused(request, 429)
        request.response.headers["Retry-After"] = str(exc.retry_after_seconds or 2)
        if isinstance(exc, LoginThrottled):
            return {**form, "error": THROTTLED.format(seconds=seconds_text(exc.retry_after_seconds or 1))}
        return {**form, "error": BUSY}
    if account is None:
        refused(request, 400)
        _record_failure(request, username)
        login_failed(request, reservation)
        return {**form, "error": WRONG_CREDENTIALS}
    login_succeeded(request, reservation)
    log_in(request, account)
    request.audit.record(AuditAction.LOGIN, actor=account, detail="pages")
    return HTTPSeeOther(location=next_path)


def _record_failure(request: Request, username: str) -> None:
    """Kept apart from the request's transaction, which the refusal drops. The name as typed (cut, stored raw,
    escaped when shown); with the account's id too when the name is one."""
    printable = 0 < len(username) <= MAX_USERNAME_LENGTH and username.isprintable()  # PostgreSQL refuses a NUL
    known = request.lookup_account_store.by_username(username) if printable else None
    request.audit.record_apart(
        AuditAction.LOGIN_FAILED, actor=known, actor_name=None if known else username, detail="pages"
    )


@view_config(route_name="ui.logout", request_method="POST", permission=NO_PERMISSION_REQUIRED)
def logout(request: Request) -> Response:
    if request.web_account is not None:
        request.audit.record(AuditAction.LOGOUT, actor=request.web_account, detail="pages")
    log_out(request)
    return HTTPSeeOther(location=request.route_path("ui.home"))
