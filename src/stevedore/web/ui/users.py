"""Pages: administrators' user pages: list, disable, enable, make or unmake administrator, reset.

Only those who may administer (domain.access.may_administer) see or use them. Every action is a POST with the CSRF
token, goes through the domain (which keeps the last active administrator) and is audited. Disabling ends the
account's page sessions and tokens at once. Robot accounts (`namespace+name`) are managed on namespace pages and are
not listed here."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPNotFound, HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from stevedore.adapters.sql.user_list import SqlUserList
from stevedore.domain.accounts import AccountService, LastAdministrator
from stevedore.domain.audit import AuditAction
from stevedore.domain.errors import AccountUnknown, InvalidInput
from stevedore.domain.model import MAX_USERNAME_LENGTH, Account
from stevedore.domain.password_resets import IssuedReset, PasswordResetService
from stevedore.domain.ports import MailNotSent
from stevedore.web.ui.account import end_page_sessions
from stevedore.web.ui.forms import administrator, refused, sentence
from stevedore.web.ui.invites import when

log = logging.getLogger(__name__)

LIST_TEMPLATE = "stevedore.web:templates/users.jinja2"
USER_TEMPLATE = "stevedore.web:templates/user.jinja2"
PAGE_SIZE = 50
FLASH_DONE, FLASH_ERROR = "users", "users-error"


def includeme(config: Configurator) -> None:
    """Routes and request methods of these pages (app.py includes this module)."""
    config.add_route("ui.users", "/users")
    config.add_route("ui.user", "/users/{username}")
    config.add_route("ui.user_disable", "/users/{username}/disable")
    config.add_route("ui.user_enable", "/users/{username}/enable")
    config.add_route("ui.user_admin_grant", "/users/{username}/make-admin")
    config.add_route("ui.user_admin_revoke", "/users/{username}/unmake-admin")
    config.add_route("ui.user_reset", "/users/{username}/password-reset")


@view_config(route_name="ui.users", request_method="GET", renderer=LIST_TEMPLATE)
def users_page(request: Request) -> dict[str, Any]:
    administrator(request)
    query = str(request.GET.get("q", "")).strip()
    after = str(request.GET.get("after", ""))
    if len(query) > MAX_USERNAME_LENGTH or len(after) > MAX_USERNAME_LENGTH:
        raise InvalidInput("the filter or the page is too long")
    page = SqlUserList(request.lookup_connection).page(name_contains=query, after=after or None, limit=PAGE_SIZE)
    return {"users": page.accounts, "next_after": page.next_after, "paged": bool(after), "q": query, "when": when}


@view_config(route_name="ui.user", request_method="GET", renderer=USER_TEMPLATE)
def user_page(request: Request) -> dict[str, Any]:
    administrator(request)
    return _page(request, _person(request))


def _person(request: Request, service: AccountService | None = None) -> Account:
    """The account the URL names: a person's (robots are managed on namespace pages), else a 404 page."""
    name = request.matchdict["username"]
    service = service or request.lookup_account_service
    try:
        account = service.account_named(name) if 0 < len(name) <= MAX_USERNAME_LENGTH else None
    except AccountUnknown:
        account = None
    if account is None or "+" in account.username:
        raise HTTPNotFound()
    return account


def _act(
    request: Request,
    change: Callable[[AccountService, str], Account],
    action: AuditAction,
    done: Callable[[Account], str],
    after: Callable[[Account], None] | None = None,
) -> Response:
    """One action of the user page: the domain change, what must follow it, the audit event, and back to the page
    with what happened (or why nothing did)."""
    admin = administrator(request)
    service: AccountService = request.account_service
    target = _person(request, service)
    try:
        changed = change(service, target.username)
    except (LastAdministrator, InvalidInput) as exc:
        request.tm.doom()
        request.session.flash(sentence(exc.message), FLASH_ERROR)
        return HTTPSeeOther(location=request.route_path("ui.user", username=target.username))
    if after is not None:
        after(changed)
    request.audit.record(action, actor=admin, target=changed.username)
    request.session.flash(done(changed), FLASH_DONE)
    if changed.id == admin.id and not (changed.is_active and changed.is_admin):
        return HTTPSeeOther(location=request.route_path("ui.home"))  # these pages are no longer theirs
    return HTTPSeeOther(location=request.route_path("ui.user", username=changed.username))


@view_config(route_name="ui.user_disable", request_method="POST")
def disable(request: Request) -> Response:
    def ended(account: Account) -> None:
        end_page_sessions(request, account)
        request.password_reset_service.end_links(account)

    return _act(
        request,
        lambda service, name: service.set_active(name, False),
        AuditAction.USER_DISABLED,
        lambda account: f"{account.username} is disabled: their logins, tokens and robots stopped working.",
        ended,
    )


@view_config(route_name="ui.user_enable", request_method="POST")
def enable(request: Request) -> Response:
    return _act(
        request,
        lambda service, name: service.set_active(name, True),
        AuditAction.USER_ENABLED,
        lambda account: f"{account.username} is enabled again (their old tokens stay ended).",
    )


@view_config(route_name="ui.user_admin_grant", request_method="POST")
def make_admin(request: Request) -> Response:
    return _act(
        request,
        lambda service, name: service.set_admin(name, True),
        AuditAction.ADMIN_GRANTED,
        lambda account: f"{account.username} is an administrator now.",
    )


@view_config(route_name="ui.user_admin_revoke", request_method="POST")
def unmake_admin(request: Request) -> Response:
    return _act(
        request,
        lambda service, name: service.set_admin(name, False),
        AuditAction.ADMIN_REVOKED,
        lambda account: f"{account.username} is no longer an administrator.",
    )


@view_config(route_name="ui.user_reset", request_method="POST", renderer=USER_TEMPLATE)
def send_reset(request: Request) -> dict[str, Any] | Response:
    admin = administrator(request)
    target = _person(request, request.account_service)
    service: PasswordResetService = request.password_reset_service
    try:
        issued = service.issue_by_admin(target.username, admin)
    except InvalidInput as exc:
        refused(request, 400)
        return _page(request, target, error=sentence(exc.message))
    except MailNotSent as exc:
        log.warning("a password reset mail could not be sent: %s", exc.message)
        refused(request, 502)
        return _page(
            request,
            target,
            error=f"The reset mail could not be sent, so no link was made: {exc.message}. Try again later.",
        )
    detail = f"by an administrator, mailed to {issued.mailed_to}" if issued.mailed_to else "by an administrator"
    request.audit.record(AuditAction.PASSWORD_RESET_REQUESTED, actor=admin, target=target.username, detail=detail)
    return _page(request, issued.account, issued=_shown_once(request, issued))


def _shown_once(request: Request, issued: IssuedReset) -> dict[str, Any]:
    """The link when it was not mailed (the code is stored only hashed: this is the one chance to copy it). Without
    a public URL it is built from the address this page was opened with: shown to the administrator, never mailed."""
    link = None
    if issued.mailed_to is None:
        link = issued.link or request.route_url("ui.password_reset", _query={"code": issued.code})
    return {
        "link": link,
        "mailed_to": issued.mailed_to,
        "notice": sentence(issued.notice) if issued.notice else None,
        "expires_at": issued.reset.expires_at,
        "from_public_url": issued.link is not None,
    }


def _page(
    request: Request, account: Account, *, error: str | None = None, issued: dict[str, Any] | None = None
) -> dict[str, Any]:
    components = request.registry.stevedore
    session = request.session
    queues = {key[3:] for key in session if key.startswith("_f_")}
    return {
        "user": account,
        "viewer": request.web_account,
        "when": when,
        "error": error,
        "issued": issued,
        "public_url": components.settings.public_url,
        "mail_on": components.mailer is not None,
        "done": session.pop_flash(FLASH_DONE) if FLASH_DONE in queues else [],
        "failed": session.pop_flash(FLASH_ERROR) if FLASH_ERROR in queues else [],
    }
