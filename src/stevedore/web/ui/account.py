"""Pages: the caller's account: who they are, and a password change (which ends their other page sessions and every
token of the old password; the session that made the change goes on under a fresh id)."""

from __future__ import annotations

from typing import Any

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPForbidden, HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from stevedore.adapters.sql.web_sessions import SqlWebSessionStore
from stevedore.domain.audit import AuditAction
from stevedore.domain.errors import InvalidInput, TooManyRequests
from stevedore.domain.login_backoff import LoginThrottled, seconds_text
from stevedore.domain.model import Account
from stevedore.web.login_backoff import checked as reserved_check
from stevedore.web.login_backoff import login_failed, login_succeeded, reserve_login
from stevedore.web.ui.forms import refused, sentence
from stevedore.web.ui.invites import when
from stevedore.web.ui.session import log_in

TEMPLATE = "stevedore.web:templates/account.jinja2"
FLASH_DONE = "account"
MAX_PASSWORD_LENGTH = 1000  # far beyond what bcrypt reads (72 bytes): the strength rules say so, not a cut
WRONG_PASSWORD = "Your current password is wrong, so nothing was changed."


def includeme(config: Configurator) -> None:
    """Routes and request methods of these pages (app.py includes this module)."""
    config.add_route("ui.account", "/account")


def holder(request: Request) -> Account:
    """The logged-in account (the anonymous are sent to the login page by the default permission first)."""
    account: Account | None = request.web_account
    if account is None or not account.is_active:
        raise HTTPForbidden()
    return account


@view_config(route_name="ui.account", request_method="GET", renderer=TEMPLATE)
def account_page(request: Request) -> dict[str, Any]:
    return _page(request, holder(request))


@view_config(route_name="ui.account", request_method="POST", renderer=TEMPLATE)
def change_password(request: Request) -> dict[str, Any] | Response:
    account = holder(request)
    current = str(request.POST.get("current_password", ""))[:MAX_PASSWORD_LENGTH]
    new = str(request.POST.get("new_password", ""))[:MAX_PASSWORD_LENGTH]
    repeated = str(request.POST.get("new_password_again", ""))[:MAX_PASSWORD_LENGTH]
    try:
        # Counted like every password check (domain/login_backoff.py): a stolen session cannot guess the password.
        reservation = reserve_login(request, account.username)
        checked = reserved_check(
            request, reservation, lambda: request.lookup_account_service.authenticate(account.username, current)
        )
    except TooManyRequests as exc:
        refused(request, 429)
        request.response.headers["Retry-After"] = str(exc.retry_after_seconds or 2)
        if isinstance(exc, LoginThrottled):
            wait = seconds_text(exc.retry_after_seconds or 1)
            return _page(request, account, error=f"Too many wrong passwords: try again in {wait}.")
        return _page(request, account, error="Too many passwords are being checked right now. Try again shortly.")
    if checked is None or checked.id != account.id:
        refused(request, 400)
        login_failed(request, reservation)
        request.audit.record_apart(AuditAction.LOGIN_FAILED, actor=account, detail="password change: wrong password")
        return _page(request, account, error=WRONG_PASSWORD)
    login_succeeded(request, reservation)  # the attempt was counted before the check: taken back
    if new != repeated:
        refused(request, 400)
        return _page(request, account, error="The two new passwords differ, so nothing was changed.")
    if new == current:
        refused(request, 400)
        return _page(request, account, error="The new password is your current one: choose another.")
    try:
        changed = request.account_service.change_password(account.username, new)
    except InvalidInput as exc:
        refused(request, 400)
        return _page(request, account, error=sentence(exc.message))
    end_page_sessions(request, changed)
    request.password_reset_service.end_links(changed)
    request.audit.record(AuditAction.PASSWORD_CHANGED, actor=account, target=account.username, detail="account page")
    log_in(request, changed)  # this session goes on, under a new id and with the new token generation
    request.session.flash(
        "Your password is changed. Your other logins to these pages have ended, and so have the registry tokens "
        "of the old password (log in again with docker). Your personal access tokens still work.",
        FLASH_DONE,
    )
    return HTTPSeeOther(location=request.route_path("ui.account"))


def end_page_sessions(request: Request, account: Account) -> None:
    """Delete every page session of the account, in the request's transaction. (A session the account's new token
    generation has not caught up with would be refused anyway; this leaves none behind.)"""
    assert account.id is not None
    SqlWebSessionStore(request.dbsession).delete_for_account(account.id)


def _page(request: Request, account: Account, *, error: str | None = None) -> dict[str, Any]:
    session = request.session
    queues = {key[3:] for key in session if key.startswith("_f_")}
    return {
        "account": account,
        "when": when,
        "error": error,
        "done": session.pop_flash(FLASH_DONE) if FLASH_DONE in queues else [],
    }
