"""Web layer: what page forms share: where a `next=` may lead, and turning a refused form into a page again."""

from __future__ import annotations

from urllib.parse import urlsplit

from pyramid.httpexceptions import HTTPForbidden
from pyramid.request import Request

from stevedore.domain.access import may_administer
from stevedore.domain.model import Account

# Longest `next=` path kept; anything longer is dropped rather than cut (a cut path could lead somewhere else).
MAX_NEXT_LENGTH = 2000


def local_path_or(request: Request, target: str | None, fallback_route: str = "ui.home") -> str:
    """`target` when it is a path on this site (`/repositories?page=2`), else the fallback route's URL: a login link
    must never send someone to another site (`//evil.example`, `https://evil.example`, `/\\evil.example`)."""
    if target and _is_local_path(target):
        return target
    return str(request.route_path(fallback_route))


def _is_local_path(target: str) -> bool:
    if len(target) > MAX_NEXT_LENGTH or not target.startswith("/") or target.startswith(("//", "/\\")):
        return False
    if any(ord(c) < 0x21 or c == "\\" or ord(c) == 0x7F for c in target):
        return False  # browsers drop tabs and newlines and read backslashes as slashes: `/\t/evil.example`
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def refused(request: Request, status: int) -> None:
    """The form is shown again with a message: nothing the request wrote may be committed."""
    request.tm.doom()
    request.response.status = status


def administrator(request: Request) -> Account:
    """The logged-in account, if it may administer (domain.access.may_administer); else a 403 page. The anonymous
    never get here: the default permission sends them to the login page first."""
    account: Account | None = request.web_account
    if not may_administer(account):
        raise HTTPForbidden()
    assert account is not None
    return account


def sentence(message: str) -> str:
    """A message as a sentence on a page: capitalized, with its full stop."""
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


def pop_flashes(request: Request, done: str, error: str) -> tuple[list[str], list[str]]:
    """The session's flash messages of these two queues (what went well, what did not), taken; a queue that was
    never used is not touched (so a page that flashes nothing does not write the session)."""
    session = request.session
    queues = {key[3:] for key in session if key.startswith("_f_")}
    return (
        session.pop_flash(done) if done in queues else [],
        session.pop_flash(error) if error in queues else [],
    )
