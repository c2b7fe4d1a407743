"""Web layer: the sign-up page, where the holder of an invite link chooses a user name and a password."""

from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config

from stevedore.domain.accounts import hash_invite_code
from stevedore.domain.audit import AuditAction
from stevedore.domain.errors import AccountExists, InvalidInput, InviteUnknown
from stevedore.domain.model import MAX_USERNAME_LENGTH, Invite
from stevedore.web.ui.forms import refused, sentence
from stevedore.web.ui.session import log_in

TEMPLATE = "stevedore.web:templates/signup.jinja2"
# Unknown, used, expired, revoked or forged: one answer for all, so nobody can learn which codes exist.
INVITE_GONE = (
    "This invite link does not work: it is unknown, was used already, has expired or was revoked. "
    "Ask whoever invited you for a new one."
)
# Longer than any code we make (32 characters); longer input is no code of ours, and is not hashed or echoed.
MAX_CODE_LENGTH = 128
MAX_EMAIL_LENGTH = 320  # the accounts.email column


def usable_invite(request: Request, code: str) -> Invite:
    """The open invite this code names, or InviteUnknown (a 404 page) whatever the reason it is not open."""
    invite: Invite | None = None
    if code and len(code) <= MAX_CODE_LENGTH:
        invite = request.account_store.invite_by_code_hash(hash_invite_code(code))
    if invite is None or not invite.is_usable(request.registry.stevedore.clock.now()):
        raise InviteUnknown(INVITE_GONE)
    return invite


@view_config(route_name="ui.signup", request_method="GET", renderer=TEMPLATE, permission=NO_PERMISSION_REQUIRED)
def signup_form(request: Request) -> dict[str, Any]:
    code = request.GET.get("invite", "")
    invite = usable_invite(request, code)
    return {"code": code, "username": "", "email": invite.email or "", "error": None}


@view_config(route_name="ui.signup", request_method="POST", renderer=TEMPLATE, permission=NO_PERMISSION_REQUIRED)
def signup(request: Request) -> dict[str, Any] | Response:
    code = request.POST.get("invite", "")
    username = request.POST.get("username", "").strip()
    email = request.POST.get("email", "").strip()
    password = request.POST.get("password", "")
    invite = usable_invite(request, code)  # before anything else: a dead code learns nothing about names or addresses
    form = {"code": code, "username": username[:MAX_USERNAME_LENGTH], "email": email[:MAX_EMAIL_LENGTH]}
    error = _form_error(username, email, password, request.POST.get("password_again", ""))
    if error is None:
        try:
            account = request.account_service.redeem_invite(code, username, password, email=email)
        except (InvalidInput, AccountExists) as exc:
            error = exc.message
        else:
            request.audit.record(
                AuditAction.SIGNUP, actor=account, target=account.username, detail=f"invite {invite.id}"
            )
            log_in(request, account)
            return HTTPSeeOther(location=request.route_path("ui.home"))
    refused(request, 400)
    return {**form, "error": sentence(error)}


def _form_error(username: str, email: str, password: str, password_again: str) -> str | None:
    """What the form itself can tell before the domain's rules (which check the rest): over-long fields are refused
    whole here, never cut, and never echoed back in full."""
    if len(username) > MAX_USERNAME_LENGTH:
        return f"The user name is too long: at most {MAX_USERNAME_LENGTH} characters."
    if not email:
        return "Give an e-mail address: password reset links are mailed to it."
    if len(email) > MAX_EMAIL_LENGTH:
        return f"The e-mail address is too long: at most {MAX_EMAIL_LENGTH} characters."
    if password != password_again:
        return "The two passwords differ."
    return None
