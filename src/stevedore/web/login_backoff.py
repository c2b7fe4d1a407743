"""Web layer: the backoff of failed password logins (domain/login_backoff.py) for a request. Right before a password
check, `reserve_login` reserves the attempt in a short transaction of its own, committed before bcrypt runs: refused
with `LoginThrottled` (429) while the name or the client address is blocked, otherwise counted as pending at once,
so attempts arriving together see each other (one past the free failures while another check of the same key is in
flight waits for it, polling briefly, on every node). The check runs through `checked` (one that gives no answer,
too busy or failed, takes the attempt back). After it, `login_failed` (the attempt counted as a failure; the audit of
a block's onset) or `login_succeeded` (the attempt taken back, the account's failures cleared, the address known to
the account).

These transactions are never the request's (a refused login's request transaction is rolled back). On SQLite a
request whose own write transaction has begun holds the database's one write lock, and a second writer from the same
thread would wait for it until it timed out: no route checks a password after opening its transaction, and one that
did would be refused (429, logged as a bug) rather than hang. Used by `security.account_for_password` (/v2/ and the
token endpoint), the login page and the account page alike."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from pyramid.request import Request
from sqlalchemy.orm import Session

from stevedore.adapters.sql.login_backoff import SqlLoginFailureStore
from stevedore.domain.audit import AuditAction
from stevedore.domain.errors import TooManyRequests
from stevedore.domain.login_backoff import BackoffRule, Blocked, KeyKind, LoginBackoff, LoginBusy, Reservation

if TYPE_CHECKING:
    from stevedore.web.app import Components

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long a reservation told `LoginBusy` (another check of its keys in flight) waits for its turn: about as long as
# a password check may wait for a free bcrypt slot (adapters/passwords.py), and polled at growing intervals. At most
# `MAX_WAITING` requests of a process wait at once; more are refused at once (429, retry in a moment).
BUSY_WAIT_SECONDS = 12.0
BUSY_POLL_SECONDS = (0.02, 0.25)
MAX_WAITING = 32


class _Waiting:
    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def enter(self) -> bool:
        with self.lock:
            if self.count >= MAX_WAITING:
                return False
            self.count += 1
            return True

    def leave(self) -> None:
        with self.lock:
            self.count -= 1


_waiting = _Waiting()


def _backoff(request: Request, session: Session) -> LoginBackoff:
    components: Components = request.registry.stevedore
    settings = components.settings
    return LoginBackoff(
        SqlLoginFailureStore(session),
        components.clock,
        account=BackoffRule(settings.login_free_failures, settings.login_backoff_max_seconds_account),
        address=BackoffRule(settings.login_free_failures, settings.login_backoff_max_seconds_address),
    )


def refuse_inside_write_lock(request: Request) -> None:
    """Raise 429 (logged as a bug) when the request holds SQLite's write lock: a reservation would wait for it."""
    if _holds_write_lock(request):
        log.error("a password check after the request's SQLite write transaction began: refused (a bug)")
        raise TooManyRequests("the login could not be checked right now: retry in a moment")


def reserve_login(request: Request, username: str) -> Reservation:
    """Before a password check: raises `LoginThrottled` (429, with the seconds left) when the name or the client
    address (`client_addr`, as the audit log takes it) is blocked; otherwise the attempt is counted as pending,
    committed, and its reservation returned for `login_failed` or `login_succeeded`. While another check of the name
    or the address is in flight and this one would be past the free failures (`LoginBusy`), it waits for that one to
    resolve (a few hundred milliseconds: a right password then lets it go on, a wrong one blocks it), up to
    `BUSY_WAIT_SECONDS`."""
    refuse_inside_write_lock(request)
    components: Components = request.registry.stevedore
    deadline = time.monotonic() + BUSY_WAIT_SECONDS
    pause, longest = BUSY_POLL_SECONDS
    waiting = False
    try:
        while True:
            try:
                with components.write_sessions() as session, session.begin():
                    return _backoff(request, session).reserve(username, request.client_addr)
            except LoginBusy:
                if time.monotonic() + pause > deadline:
                    raise
                if not waiting:
                    if not _waiting.enter():
                        raise
                    waiting = True
            time.sleep(pause)
            pause = min(longest, pause * 2)
    finally:
        if waiting:
            _waiting.leave()


def checked(request: Request, reservation: Reservation, check: Callable[[], T]) -> T:
    """Run the password check of a reserved attempt. A check that gives no answer (too busy: 429; the database
    failed) takes the attempt back before the error goes on: only passwords actually checked count."""
    try:
        return check()
    except Exception:
        try:
            _write(request, lambda backoff: backoff.unchecked(reservation))
        except Exception:
            log.exception("the login backoff could not take back an attempt that was never checked")
        raise


def login_failed(request: Request, reservation: Reservation) -> None:
    """The password was wrong: the attempt is counted as a failure, and a key that this made blocked is recorded in
    the audit log (once per block onset, not per refusal)."""
    found: list[Blocked] = []

    def fail(backoff: LoginBackoff) -> None:
        found[:] = backoff.failed(reservation)

    try:
        _write(request, fail)
    except Exception:  # the refusal stands; an operator must hear that it went uncounted (pending until forgotten)
        log.exception("the login backoff could not count a failed login")
        return
    for blocked in found:
        _audit(request, blocked, reservation.username)


def login_succeeded(request: Request, reservation: Reservation) -> None:
    """The right password: the account's count starts over, the address's gets its attempt back, and the address is
    known to the account. Written before the response, so the client's next request finds it done."""
    try:
        _write(request, lambda backoff: backoff.succeeded(reservation))
    except Exception:  # the login is right; an operator must hear that its count stayed
        log.exception("the login backoff could not record a successful login")


def _write(request: Request, write: Callable[[LoginBackoff], None]) -> None:
    """A short transaction of its own, now; after the request when the request holds SQLite's write lock."""
    components: Components = request.registry.stevedore

    def run() -> None:
        with components.write_sessions() as session, session.begin():
            write(_backoff(request, session))

    if _holds_write_lock(request):
        _after_request(request, run)
    else:
        run()


def _holds_write_lock(request: Request) -> bool:
    """Has this request begun its own write transaction on SQLite (which then holds the database's write lock)?"""
    from stevedore.web.app import SAFE_METHODS  # app.py imports this module (through security.py)

    session: Session | None = request.__dict__.get("dbsession")  # only if the request made one
    return (
        session is not None
        and request.method not in SAFE_METHODS
        and session.get_bind().dialect.name == "sqlite"
        and session.in_transaction()
    )


def _audit(request: Request, blocked: Blocked, username: str) -> None:
    who = "account" if blocked.key.kind == KeyKind.ACCOUNT else "address"
    request.audit.record_apart(
        AuditAction.LOGIN_THROTTLED,
        actor_name=username if blocked.key.kind == KeyKind.ACCOUNT else None,
        target=f"{who} {blocked.key.value}",
        detail=f"{blocked.failures} failed logins: each further one now waits, up to {blocked.max_seconds} seconds",
    )


def _after_request(request: Request, write: Callable[[], None]) -> None:
    def run(_request: Request) -> None:
        try:
            write()
        except Exception:  # the response is decided already; an operator must hear of it
            log.exception("the login backoff could not record a login's outcome")

    request.add_finished_callback(run)
