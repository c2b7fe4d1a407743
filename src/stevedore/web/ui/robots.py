"""Pages: robot accounts of a namespace — logins (`namespace+name`) that belong to the namespace, not to a person,
for CI and deployments. Its admins make them (the secret shown once, with the `docker login` line), see when each
was made, last used and expires, and disable, enable or delete them."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPForbidden, HTTPNotFound, HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from stevedore.adapters.sql.accounts import SqlAccountStore
from stevedore.adapters.sql.namespaces import SqlNamespaceStore
from stevedore.adapters.sql.robots import SqlRobotStore
from stevedore.domain.access_tokens import MAX_EXPIRY_DAYS, TokenScope
from stevedore.domain.audit import AuditAction
from stevedore.domain.errors import AccountExists, InvalidInput
from stevedore.domain.model import Account
from stevedore.domain.robots import IssuedRobot, RobotService, RobotUnknown
from stevedore.web.ui.forms import refused, sentence
from stevedore.web.ui.invites import when

TEMPLATE = "stevedore.web:templates/robots.jinja2"
FLASH_DONE, FLASH_ERROR = "robots", "robots-error"
ACTIONS = {"disable", "enable", "delete"}


def includeme(config: Configurator) -> None:
    """Routes and request methods of these pages (app.py includes this module)."""
    config.add_route("ui.robots", "/namespaces/{namespace}/robots")
    config.add_route("ui.robot_action", "/namespaces/{namespace}/robots/{robot}/{action}")
    config.add_request_method(_robot_service, "robot_service", reify=True)


def _robot_service(request: Request) -> RobotService:
    """Writes in the request's transaction; the caller's rights read as for every other decision."""
    return RobotService(
        SqlAccountStore(request.dbsession),
        SqlRobotStore(request.dbsession),
        SqlNamespaceStore(request.dbsession),
        request.access_token_service,
        request.access,
        request.registry.stevedore.clock,
    )


def _caller(request: Request) -> Account:
    account: Account | None = request.web_account
    if account is None or not account.is_active:
        raise HTTPForbidden()
    return account


@view_config(route_name="ui.robots", request_method="GET", renderer=TEMPLATE)
def robots_page(request: Request) -> dict[str, Any]:
    return _page(request, _caller(request), request.matchdict["namespace"])


@view_config(route_name="ui.robots", request_method="POST", renderer=TEMPLATE)
def create_robot(request: Request) -> dict[str, Any]:
    caller = _caller(request)
    namespace = request.matchdict["namespace"]
    form = {
        "name": str(request.POST.get("name", "")).strip()[:100],
        "scope": str(request.POST.get("scope", TokenScope.PUSH.value)),
        "expires_in_days": str(request.POST.get("expires_in_days", "")).strip()[:10],
    }
    try:
        days = form["expires_in_days"]
        if days and not (days.isascii() and days.isdigit()):
            raise InvalidInput(f"the expiry is a number of days, from 1 to {MAX_EXPIRY_DAYS}, or empty for none")
        issued = request.robot_service.create(
            caller, namespace, name=form["name"], scope=form["scope"], expires_in_days=int(days) if days else None
        )
    except (InvalidInput, AccountExists) as exc:
        refused(request, 400)
        return _page(request, caller, namespace, form=form, error=sentence(exc.message))
    request.audit.record(
        AuditAction.ROBOT_CREATED,
        actor=caller,
        namespace=issued.robot.namespace,
        target=issued.robot.login,
        detail=form["scope"],
    )
    return _page(request, caller, namespace, issued=_shown_once(request, issued))


@view_config(route_name="ui.robot_action", request_method="POST")
def robot_action(request: Request) -> Response:
    caller = _caller(request)
    namespace, name, action = (request.matchdict[key] for key in ("namespace", "robot", "action"))
    if action not in ACTIONS:
        raise HTTPNotFound()
    service: RobotService = request.robot_service
    try:
        if action == "delete":
            robot = service.delete(caller, namespace, name)
            audited, message = AuditAction.ROBOT_REVOKED, "is deleted: its secret no longer works"
        else:
            robot = service.set_active(caller, namespace, name, action == "enable")
            if action == "enable":
                audited, message = AuditAction.ROBOT_ENABLED, "is enabled again"
            else:
                audited, message = AuditAction.ROBOT_DISABLED, "is disabled: its secret no longer works"
    except RobotUnknown as exc:
        request.tm.doom()
        request.session.flash(sentence(exc.message), FLASH_ERROR)
    else:
        request.audit.record(audited, actor=caller, namespace=robot.namespace, target=robot.login)
        request.session.flash(f"The robot {robot.login} {message}.", FLASH_DONE)
    return HTTPSeeOther(location=request.route_path("ui.robots", namespace=namespace))


def _page(
    request: Request,
    caller: Account,
    namespace: str,
    *,
    form: dict[str, str] | None = None,
    error: str | None = None,
    issued: dict[str, Any] | None = None,
) -> dict[str, Any]:
    service: RobotService = request.robot_service
    robots = service.list(caller, namespace)  # Denied (403), NotFound (404), NameInvalid (400): the error page
    session = request.session
    queues = {key[3:] for key in session if key.startswith("_f_")}
    return {
        "namespace": namespace,
        "robots": robots,
        "now": request.registry.stevedore.clock.now(),
        "when": when,
        "scopes": list(TokenScope),
        "form": form or {"name": "", "scope": TokenScope.PUSH.value, "expires_in_days": "365"},
        "error": error,
        "issued": issued,
        "max_days": MAX_EXPIRY_DAYS,
        "done": session.pop_flash(FLASH_DONE) if FLASH_DONE in queues else [],
        "failed": session.pop_flash(FLASH_ERROR) if FLASH_ERROR in queues else [],
    }


def _shown_once(request: Request, issued: IssuedRobot) -> dict[str, Any]:
    public_url = request.registry.stevedore.settings.public_url
    host = urlsplit(public_url).netloc if public_url else request.host
    return {
        "robot": issued.robot,
        "secret": issued.secret,
        "login": f"docker login -u {issued.robot.login} --password-stdin {host}",
    }
