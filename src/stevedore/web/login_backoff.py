"""Web layer: the backoff of failed password logins (domain/login_backoff.py) for a request — read through the
request's look-up session right before a password check, written in a transaction of its own once the request's is
over (a refused login's request transaction is rolled back, and on SQLite that transaction may hold the write lock).
Used by `security.account_for_password` (/v2/ and the token endpoint) and the login page alike."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from pyramid.request import Request
from sqlalchemy.orm import Session

from stevedore.adapters.sql.login_backoff import SqlLoginFailureStore
from stevedore.domain.audit import AuditAction
from stevedore.domain.login_backoff import BackoffKey, BackoffRule, Blocked, KeyKind, LoginBackoff, Standing

if TYPE_CHECKING:
    from stevedore.web.app import Components

log = logging.getLogger(__name__)


def _backoff(request: Request, session: Session) -> LoginBackoff:
    components: Components = request.registry.stevedore
    settings = components.settings
    return LoginBackoff(
        SqlLoginFailureStore(session),
        components.clock,
        account=BackoffRule(settings.login_free_failures, settings.login_backoff_max_seconds_account),
        address=BackoffRule(settings.login_free_failures, settings.login_backoff_max_seconds_address),
    )


def check_login_backoff(request: Request, username: str) -> Standing:
    """Before a password check: raises `LoginThrottled` (429, with the seconds left) when the name or the client
    address (`client_addr`, as the audit log takes it) is blocked."""
    return _backoff(request, request.read_session).check(username, request.client_addr)


def login_failed(request: Request, username: str) -> None:
    """Count a refused password against the name and the address; record in the audit log a key that this made
    blocked (once per block onset, not per refusal)."""
    address = request.client_addr
    _apart(request, lambda backoff: _failed(request, backoff, username, address), "a failed login")


def login_succeeded(request: Request, username: str, standing: Standing) -> None:
    """The right password: the account's count starts over (a write only when it has failures on record)."""
    if standing.has_failures(BackoffKey.account(username)):
        _apart(request, lambda backoff: backoff.succeeded(username), "a successful login")


def _failed(request: Request, backoff: LoginBackoff, username: str, address: str | None) -> None:
    for blocked in backoff.failed(username, address):
        _audit(request, blocked, username)


def _audit(request: Request, blocked: Blocked, username: str) -> None:
    who = "account" if blocked.key.kind == KeyKind.ACCOUNT else "address"
    request.audit.record_apart(
        AuditAction.LOGIN_THROTTLED,
        actor_name=username if blocked.key.kind == KeyKind.ACCOUNT else None,
        target=f"{who} {blocked.key.value}",
        detail=f"{blocked.failures} failed logins: each further one now waits, up to {blocked.max_seconds} seconds",
    )


def _apart(request: Request, write: Callable[[LoginBackoff], None], what: str) -> None:
    components: Components = request.registry.stevedore

    def run(_request: Request) -> None:
        try:
            with components.write_sessions() as session, session.begin():
                write(_backoff(request, session))
        except Exception:  # the response is decided already; an operator must hear of it
            log.exception("the login backoff could not record %s", what)

    request.add_finished_callback(run)
