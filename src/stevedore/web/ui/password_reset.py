"""Pages: forgotten passwords: the mailed single-use reset link. The forgotten-password form gives everybody the same
answer, whether or not the name or address belongs to an account; the link (built from the public URL only) leads to
a form that sets a new password, once, and ends every session and token of the old one."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config

from stevedore.adapters.sql.access_tokens import SqlAccessTokenStore
from stevedore.adapters.sql.password_resets import SqlPasswordResetStore
from stevedore.domain.access_tokens import AccessTokenService
from stevedore.domain.audit import AuditAction
from stevedore.domain.errors import InvalidInput
from stevedore.domain.password_resets import (
    MAX_NAME_OR_EMAIL_LENGTH,
    PasswordResetMailOff,
    PasswordResetService,
    PasswordResetUnknown,
)
from stevedore.domain.ports import MailNotSent
from stevedore.web.ui.account import MAX_PASSWORD_LENGTH, end_page_sessions
from stevedore.web.ui.forms import refused, sentence
from stevedore.web.ui.session import log_out

log = logging.getLogger(__name__)

FORGOT_TEMPLATE = "stevedore.web:templates/password_forgot.jinja2"
RESET_TEMPLATE = "stevedore.web:templates/password_reset.jinja2"
MAX_CODE_LENGTH = 200


def includeme(config: Configurator) -> None:
    """Routes and request methods of these pages (app.py includes this module)."""
    config.add_route("ui.password_forgot", "/password/forgot")
    config.add_route("ui.password_reset", "/password/reset")  # ?code=CODE
    config.add_request_method(_password_reset_service, "password_reset_service", reify=True)


def _password_reset_service(request: Request) -> PasswordResetService:
    """In the request's transaction (its writes stay only if the request's do)."""
    components = request.registry.stevedore
    settings = components.settings
    return PasswordResetService(
        SqlPasswordResetStore(request.dbsession),
        request.account_service,
        components.clock,
        components.mailer,
        public_url=settings.public_url,
        lifetime=timedelta(minutes=settings.password_reset_minutes),
        access_tokens=AccessTokenService(SqlAccessTokenStore(request.dbsession), components.clock),
    )


@view_config(
    route_name="ui.password_forgot", request_method="GET", renderer=FORGOT_TEMPLATE, permission=NO_PERMISSION_REQUIRED
)
def forgot_form(request: Request) -> dict[str, Any]:
    return _forgot_page(request)


@view_config(
    route_name="ui.password_forgot", request_method="POST", renderer=FORGOT_TEMPLATE, permission=NO_PERMISSION_REQUIRED
)
def forgot(request: Request) -> dict[str, Any]:
    service: PasswordResetService = request.password_reset_service
    text = str(request.POST.get("name", ""))
    if not service.mail_on:
        refused(request, 503)
        return _forgot_page(request)
    try:
        asked = service.request_by_mail(text[: MAX_NAME_OR_EMAIL_LENGTH + 1])
    except PasswordResetMailOff:
        refused(request, 503)
        return _forgot_page(request)
    except MailNotSent as exc:
        # Telling the asker would tell them the account exists: the operator hears of it, the asker gets the answer
        # everybody gets, and no link is kept that nobody received.
        log.warning("a password reset mail could not be sent: %s", exc.message)
        request.tm.doom()
        return _forgot_page(request, sent=True)
    if asked.account is not None:
        detail = "mailed" if asked.mailed else f"not mailed: {asked.why_not}"
        request.audit.record(AuditAction.PASSWORD_RESET_REQUESTED, target=asked.account.username, detail=detail)
    return _forgot_page(request, sent=True)


def _forgot_page(request: Request, *, sent: bool = False) -> dict[str, Any]:
    service: PasswordResetService = request.password_reset_service
    settings = request.registry.stevedore.settings
    return {
        "mail_on": service.mail_on,
        "public_url": settings.public_url,
        "sent": sent,
        "minutes": settings.password_reset_minutes,
    }


@view_config(
    route_name="ui.password_reset", request_method="GET", renderer=RESET_TEMPLATE, permission=NO_PERMISSION_REQUIRED
)
def reset_form(request: Request) -> dict[str, Any]:
    code = str(request.GET.get("code", ""))
    try:
        _reset, account = request.password_reset_service.check(code[:MAX_CODE_LENGTH])
    except PasswordResetUnknown as exc:
        request.response.status = 404
        return _reset_page(request, unknown=sentence(exc.message))
    return _reset_page(request, code=code, username=account.username)


@view_config(
    route_name="ui.password_reset", request_method="POST", renderer=RESET_TEMPLATE, permission=NO_PERMISSION_REQUIRED
)
def reset(request: Request) -> dict[str, Any]:
    code = str(request.POST.get("code", ""))[:MAX_CODE_LENGTH]
    password = str(request.POST.get("password", ""))[:MAX_PASSWORD_LENGTH]
    again = str(request.POST.get("password_again", ""))[:MAX_PASSWORD_LENGTH]
    service: PasswordResetService = request.password_reset_service
    try:
        _reset, account = service.check(code)
    except PasswordResetUnknown as exc:
        refused(request, 404)
        return _reset_page(request, unknown=sentence(exc.message))
    if password != again:
        refused(request, 400)
        return _reset_page(request, code=code, username=account.username, error="The two passwords differ.")
    try:
        changed = service.reset(code, password)
    except PasswordResetUnknown as exc:
        refused(request, 404)
        return _reset_page(request, unknown=sentence(exc.message))
    except InvalidInput as exc:
        refused(request, 400)
        return _reset_page(request, code=code, username=account.username, error=sentence(exc.message))
    end_page_sessions(request, changed)
    request.audit.record(AuditAction.PASSWORD_RESET, actor=changed, target=changed.username, detail="with a reset link")
    log_out(request)  # whoever was logged in on this browser logs in afresh
    return _reset_page(request, done=True, username=changed.username)


def _reset_page(
    request: Request,
    *,
    code: str = "",
    username: str = "",
    error: str | None = None,
    unknown: str | None = None,
    done: bool = False,
) -> dict[str, Any]:
    return {"code": code, "username": username, "error": error, "unknown": unknown, "done": done}
