"""Web layer: the invites page, where administrators (and every member, when `stevedore.members_may_invite` is on)
invite people (mailing them the sign-up link), see who invited whom and whether the invite was used, and revoke
invites nobody used yet. Members see and revoke only their own invites."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pyramid.httpexceptions import HTTPForbidden, HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from stevedore.adapters.sql.accounts import SqlAccountStore
from stevedore.domain.accounts import InviteService, IssuedInvite, may_invite
from stevedore.domain.audit import AuditAction
from stevedore.domain.errors import AccountExists, InvalidInput, InviteUnknown, TooManyRequests
from stevedore.domain.model import Account
from stevedore.domain.ports import MailNotSent
from stevedore.web.ui.forms import refused, sentence

log = logging.getLogger(__name__)

TEMPLATE = "stevedore.web:templates/invites.jinja2"
PAGE_SIZE = 50
MAX_EMAIL_LENGTH = 320  # the invites.email column
FLASH_DONE, FLASH_ERROR = "invites", "invites-error"


def inviter(request: Request) -> Account:
    """The account that may invite from this page (domain.accounts.may_invite): administrators, and every active
    account when `stevedore.members_may_invite` is on; else a 403 page. The anonymous never get here: the default
    permission sends them to the login page first."""
    account: Account | None = request.web_account
    if not may_invite(account, request.registry.stevedore.settings.members_may_invite):
        raise HTTPForbidden()
    assert account is not None
    return account


@view_config(route_name="ui.invites", request_method="GET", renderer=TEMPLATE)
def invites_page(request: Request) -> dict[str, Any]:
    return _page(request, inviter(request))


@view_config(route_name="ui.invites", request_method="POST", renderer=TEMPLATE)
def create_invite(request: Request) -> dict[str, Any]:
    account = inviter(request)
    email = request.POST.get("email", "").strip()
    service: InviteService = request.invite_service
    if len(email) > MAX_EMAIL_LENGTH:
        refused(request, 400)
        return _page(
            request, account, email=email[:MAX_EMAIL_LENGTH], error="The e-mail address is too long.", kept=False
        )
    try:
        issued = service.send_invite(email=email or None, invited_by=account)
    except (InvalidInput, AccountExists) as exc:
        refused(request, 400)
        return _page(request, account, email=email, error=sentence(exc.message), kept=False)
    except TooManyRequests as exc:
        refused(request, 429)
        return _page(request, account, email=email, error=sentence(exc.message), kept=False)
    except MailNotSent as exc:
        # The domain raised so that no invite is kept that nobody heard of: the transaction is dropped.
        log.warning("an invite mail could not be sent: %s", exc.message)
        refused(request, 502)
        return _page(
            request,
            account,
            email=email,
            error=f"The invite mail could not be sent, so no invite was made: {exc.message}. "
            "Try again later, or invite without an e-mail address and pass the link on yourself.",
            kept=False,
        )
    request.audit.record(
        AuditAction.INVITE_CREATED,
        actor=account,
        target=issued.invite.email,
        detail=f"invite {issued.invite.id}" + (f", mailed to {issued.mailed_to}" if issued.mailed_to else ""),
    )
    return _page(request, account, issued=_shown_once(request, issued))


@view_config(route_name="ui.invite_revoke", request_method="POST")
def revoke_invite(request: Request) -> Response:
    account = inviter(request)
    invite_id = int(request.matchdict["invite_id"])  # the route only matches digits
    try:
        request.invite_service.revoke_invite(invite_id, revoked_by=account)
    except InviteUnknown as exc:
        request.tm.doom()
        request.session.flash(sentence(exc.message), FLASH_ERROR)
    else:
        request.audit.record(AuditAction.INVITE_REVOKED, actor=account, detail=f"invite {invite_id}")
        request.session.flash(f"Invite {invite_id} is revoked: its link no longer works.", FLASH_DONE)
    return HTTPSeeOther(location=request.route_path("ui.invites"))


def _page(
    request: Request,
    viewer: Account,
    *,
    email: str = "",
    error: str | None = None,
    issued: dict[str, Any] | None = None,
    kept: bool = True,
) -> dict[str, Any]:
    """The page's data. `kept=False` after a refused form: the list is read outside the request's (doomed)
    transaction, so an invite it made and will not keep is not shown."""
    before = _before_id(request)
    components = request.registry.stevedore
    service: InviteService = request.invite_service
    if not kept:
        service = InviteService(SqlAccountStore(request.lookup_connection), components.clock, None, public_url=None)
    page = service.list_invites(limit=PAGE_SIZE, before_id=before, viewer=viewer)
    session = request.session
    return {
        "records": page.records,
        "sees_all": viewer.is_admin,
        "next_before_id": page.next_before_id,
        "paged": before is not None,
        "now": components.clock.now(),
        "when": when,
        "public_url": components.settings.public_url,
        "mail_on": components.mailer is not None,
        "email": email,
        "error": error,
        "issued": issued,
        "done": session.pop_flash(FLASH_DONE) if FLASH_DONE in _queues(session) else [],
        "failed": session.pop_flash(FLASH_ERROR) if FLASH_ERROR in _queues(session) else [],
    }


def when(moment: datetime) -> str:
    """A time as the page shows it: in UTC, to the minute."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _queues(session: Any) -> set[str]:
    # Popping an empty queue would still mark the session changed (and write it): look first.
    return {key[3:] for key in session if key.startswith("_f_")}


def _before_id(request: Request) -> int | None:
    text = request.GET.get("before", "")
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise InvalidInput("the page number is not valid")
    return int(text)


def _shown_once(request: Request, issued: IssuedInvite) -> dict[str, Any]:
    """What the page shows of a new invite: its link (the code is stored only hashed, so this is the one chance to
    copy it), where it was mailed, and why no mail went out. Without a public URL the link is built from the address
    this page was opened with: it is only shown to the administrator, never mailed."""
    link = issued.link or request.route_url("ui.signup", _query={"invite": issued.code})
    return {
        "link": link,
        "mailed_to": issued.mailed_to,
        "email": issued.invite.email,
        "notice": sentence(issued.notice) if issued.notice else None,
        "expires_at": issued.invite.expires_at,
        "from_public_url": issued.link is not None,
    }
