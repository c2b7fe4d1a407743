"""Web layer: the setup page, where the holder of the one-time setup code creates the first administrator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config
from sqlalchemy.orm import Session

from stevedore.adapters.sql.accounts import SqlAccountStore
from stevedore.adapters.sql.namespaces import SqlNamespaceStore
from stevedore.adapters.sql.setup_codes import SqlSetupCodeStore
from stevedore.domain.accounts import AccountService
from stevedore.domain.audit import AuditAction
from stevedore.domain.errors import AccountExists, InvalidInput
from stevedore.domain.setup import SetupService
from stevedore.web.ui.forms import refused
from stevedore.web.ui.session import log_in

if TYPE_CHECKING:
    from stevedore.web.app import Components

TEMPLATE = "stevedore.web:templates/setup.jinja2"


def setup_service_for(session: Session, components: Components) -> SetupService:
    accounts = AccountService(
        SqlAccountStore(session), components.hasher, components.clock, namespaces=SqlNamespaceStore(session)
    )
    return SetupService(
        SqlSetupCodeStore(session), accounts, components.clock, secret_key=components.settings.secret_key
    )


def setup_service(request: Request) -> SetupService:
    """`request.setup_service`, in the request's transaction."""
    return setup_service_for(request.dbsession, request.registry.stevedore)


@view_config(route_name="ui.setup", request_method="GET", renderer=TEMPLATE, permission=NO_PERMISSION_REQUIRED)
def setup_form(request: Request) -> dict[str, Any]:
    code = request.GET.get("code", "")
    request.setup_service.check_code(code)  # SetupDone: 404; SetupCodeInvalid: 403
    return {"code": code, "username": "", "email": "", "error": None}


@view_config(route_name="ui.setup", request_method="POST", renderer=TEMPLATE, permission=NO_PERMISSION_REQUIRED)
def setup(request: Request) -> dict[str, Any] | Response:
    code = request.POST.get("code", "")
    username = request.POST.get("username", "").strip()
    email = request.POST.get("email", "").strip()
    password = request.POST.get("password", "")
    form = {"code": code, "username": username[:64], "email": email[:320]}
    service: SetupService = request.setup_service
    service.check_code(code)
    if password != request.POST.get("password_again", ""):
        refused(request, 400)
        return {**form, "error": "The two passwords differ."}
    try:
        account = service.create_first_administrator(code, username, password, email)
    except (InvalidInput, AccountExists) as exc:
        refused(request, 400)
        return {**form, "error": exc.message}
    request.audit.record(AuditAction.SETUP, actor=account, target=account.username, detail="first administrator")
    log_in(request, account)
    return HTTPSeeOther(location=request.route_path("ui.home"))
