"""Web layer: who is calling. Basic credentials (cached by HMAC so bcrypt runs once), Bearer tokens, and the
Pyramid security policy that routes every permission decision through domain.access."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyramid.request import Request
from pyramid.security import Allowed, Denied

from stevedore.domain.access import Access, Action
from stevedore.domain.access_tokens import AccessToken, AccessTokenService, looks_like_token
from stevedore.domain.accounts import AccountService
from stevedore.domain.audit import AuditAction
from stevedore.domain.errors import TokenInvalid, TooManyRequests
from stevedore.domain.login_backoff import LoginThrottled
from stevedore.domain.model import Account, RepositoryName, Scope, robot_namespace
from stevedore.domain.ports import AccountStore
from stevedore.domain.robots import robot_may_act
from stevedore.web.login_backoff import (
    checked,
    login_failed,
    login_succeeded,
    refuse_inside_write_lock,
    reserve_login,
)


class Permission:
    """View permissions. Repository permissions take the repository from the route's `name`."""

    AUTHENTICATED = "authenticated"
    PULL = Action.PULL.value
    PUSH = Action.PUSH.value
    DELETE = Action.DELETE.value
    CATALOG = "catalog"


@dataclass(frozen=True)
class Principal:
    account: Account
    # None: full credentials (Basic). Otherwise the scopes a Bearer token carries.
    scopes: tuple[Scope, ...] | None = None
    # A personal access token (as the Basic password, or behind a Bearer token issued for one): it limits the account.
    access_token: AccessToken | None = None

    def token_allows(self, action: str, repository: str) -> bool:
        if self.access_token is not None and not self.access_token.allows(action, repository):
            return False
        if self.scopes is None:
            return True
        return any(
            s.type == "repository" and s.name == repository and (action in s.actions or "*" in s.actions)
            for s in self.scopes
        )

    def token_allows_catalog(self) -> bool:
        if self.scopes is None:
            return True
        return any(s.type == "registry" and s.name == "catalog" for s in self.scopes)


class CredentialCache:
    """Verified Basic credentials for a short while, keyed by an HMAC of name and password (never the password).

    An entry remembers the password hash it was verified against: once the account's hash changes (a new password),
    the entry no longer answers, on every node, whatever its age."""

    def __init__(self, secret_key: bytes, ttl_seconds: int, max_entries: int = 10_000) -> None:
        self._key = hmac.new(secret_key, b"credential-cache", hashlib.sha256).digest()
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[bytes, tuple[int, str, float]] = {}
        self._lock = threading.Lock()

    def _fingerprint(self, username: str, password: str) -> bytes:
        return hmac.new(self._key, f"{username}\0{password}".encode(), hashlib.sha256).digest()

    def get(self, username: str, password: str) -> tuple[int, str] | None:
        """(account id, password hash it was verified against), or None."""
        if self.ttl <= 0:
            return None
        fingerprint = self._fingerprint(username, password)
        with self._lock:
            entry = self._entries.get(fingerprint)
            if entry is None:
                return None
            account_id, password_hash, expires = entry
            if expires < time.monotonic():
                del self._entries[fingerprint]
                return None
            return account_id, password_hash

    def put(self, username: str, password: str, account_id: int, password_hash: str) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[self._fingerprint(username, password)] = (
                account_id,
                password_hash,
                time.monotonic() + self.ttl,
            )


class _Flight:
    """One password check in progress, and what it found (an account id and hash, or None) or what it raised."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: tuple[int, str] | None = None
        self.error: BaseException | None = None  # the check raised (a refusal, too busy, the database failed)


def _shared_refusal(error: BaseException) -> Exception:
    """What a follower raises for its leader's error: a fresh exception of its own (one object is never raised in
    several threads at once), the same 429 with the same Retry-After for a refusal; a generic 429 otherwise."""
    if isinstance(error, LoginThrottled):
        return LoginThrottled(error.retry_after_seconds or 1)
    if isinstance(error, TooManyRequests):
        refusal = TooManyRequests(error.message, error.detail)
        refusal.retry_after_seconds = error.retry_after_seconds
        return refusal
    return TooManyRequests("too many logins at once: retry in a moment")


class SingleFlight:
    """Identical credentials checked at once share one check: a client's burst of parallel first requests (or
    parallel jobs of one robot account) costs one bcrypt run and one failed-login reservation, not one each, and does
    not fill the password-check queue. The leader's `check` does it all (reserve, bcrypt, record the outcome);
    followers share its result, or its refusal (the same 429 and Retry-After). Followers wait at most as long as the
    check takes; there are at most `max_followers` of them in all."""

    def __init__(self, secret_key: bytes, max_followers: int = 16, wait_seconds: float = 15.0) -> None:
        self._key = hmac.new(secret_key, b"credential-flight", hashlib.sha256).digest()
        self.max_followers = max_followers
        self.wait_seconds = wait_seconds
        self._flights: dict[bytes, _Flight] = {}
        self._followers = 0
        self._lock = threading.Lock()

    def run(
        self, username: str, password: str, check: Callable[[], tuple[int, str] | None], *, client: str = ""
    ) -> tuple[int, str] | None:
        """`client` (the caller's address) is part of what must be identical: the leader's reservation is checked
        against its own address, so a follower from another address must not share a refusal meant for that one."""
        key = hmac.new(self._key, f"{username}\0{password}\0{client}".encode(), hashlib.sha256).digest()
        with self._lock:
            flight = self._flights.get(key)
            leading = flight is None
            if leading:
                flight = self._flights[key] = _Flight()
            elif self._followers >= self.max_followers:
                flight, leading = None, False
            else:
                self._followers += 1
        if flight is None:
            return check()  # too many followers already: check alone, through the bounded password checks
        if not leading:
            try:
                finished = flight.done.wait(self.wait_seconds)
            finally:
                with self._lock:
                    self._followers -= 1
            if not finished:
                raise TooManyRequests("too many logins at once: retry in a moment")
            if flight.error is not None:
                raise _shared_refusal(flight.error)
            return flight.result
        try:
            flight.result = check()
            return flight.result
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()


def parse_basic(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII text in the header
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


def parse_bearer(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def principal_for_password(request: Request, username: str, password: str) -> Principal | None:
    """Who these Basic credentials stand for. A password with the access-token prefix is looked up as a personal
    access token first (a SHA-256 look-up, no bcrypt, no throttling): the principal then carries the token, whose
    scope and namespaces limit the account's rights. Anything else (also a password that merely starts like a token)
    is checked as the account's password."""
    if looks_like_token(password):
        found = account_for_access_token(request, username, password)
        if found is not None:
            return Principal(found[0], access_token=found[1])
    account = account_for_password(request, username, password)
    if account is None:
        record_failed_login(request, username)
        return None
    return Principal(account)


def _could_be_username(text: str) -> bool:
    """Worth looking up: a hostile name (a NUL, which PostgreSQL refuses, or megabytes) is never an account."""
    return 0 < len(text) <= 64 and text.isprintable()


def record_failed_login(request: Request, username: str) -> None:
    """An audit event for refused Basic credentials (on /v2/, at the token endpoint or on /metrics), kept apart from
    the request's transaction, which the refusal drops. Bounded by the password checks themselves (a few a second)."""
    route = getattr(request.matched_route, "name", "")
    known = request.lookup_account_store.by_username(username) if _could_be_username(username) else None
    request.audit.record_apart(
        AuditAction.LOGIN_FAILED,
        actor=known,
        actor_name=None if known else username,
        detail=_FAILED_LOGIN_DETAILS.get(route, "registry"),
    )


_FAILED_LOGIN_DETAILS = {"registry.token": "token endpoint", "metrics": "metrics"}  # by route name; else "registry"


def account_for_access_token(request: Request, username: str, secret: str) -> tuple[Account, AccessToken] | None:
    """The active account `username` and its usable token with this secret. The account is read on every use, so a
    disabled (or renamed, or deleted) account's tokens stop at once."""
    service: AccessTokenService = request.lookup_access_token_service
    token = service.authenticate(secret)
    if token is None:
        return None
    store: AccountStore = request.lookup_account_store
    account = store.get(token.account_id)
    if account is None or not account.is_active or account.username != username:
        return None
    if not robot_stands(request, account):
        return None
    return account, token


def robot_stands(request: Request, account: Account) -> bool:
    """A person, or a robot whose namespace still stands behind it (domain/robots.py: a disabled or deleted user's
    robots do nothing). One more look-up, for robots only."""
    namespace = robot_namespace(account.username)
    if namespace is None:
        return True
    owner = request.lookup_account_store.by_username(namespace)
    exists = owner is not None or request.access.namespaces.get(namespace) is not None
    return robot_may_act(account, owner, exists)


def account_for_password(request: Request, username: str, password: str) -> Account | None:
    """The active account for this password (never an access token: see `principal_for_password`). bcrypt runs
    once; then a short-lived cache answers. Only the bcrypt check is slowed by the failed-login backoff: the attempt
    is reserved (counted as pending) before it, 429 while the name or the address is blocked (web/login_backoff.py).
    A client whose right password is cached keeps working during an attack.

    Identical credentials checked at once in this process join one flight (`SingleFlight`) BEFORE any reservation:
    only its leader reserves, checks and records the outcome, so a burst of N identical logins is one attempt, not
    N (N reservations at once would be past the free failures, and the backoff would make them wait in turn). Across
    processes and nodes, where no flight is shared, the reservations of right passwords are pending, never failures:
    they never block each other (domain/login_backoff.py)."""
    cache: CredentialCache = request.registry.stevedore.credential_cache
    store: AccountStore = request.lookup_account_store
    cached = cache.get(username, password)
    if cached is not None:
        account = _still(store, username, *cached)
        if account is not None:
            return account
    refuse_inside_write_lock(request)  # before joining a flight: its leader's reservation would wait for our lock
    service: AccountService = request.lookup_account_service

    def check() -> tuple[int, str] | None:
        """The leader's whole check: reserved, bcrypt, the outcome recorded (once for the flight)."""
        reservation = reserve_login(request, username)
        verified = checked(request, reservation, lambda: service.authenticate(username, password))
        if (
            verified is None
            or verified.id is None
            or _still(store, username, verified.id, verified.password_hash) is None
        ):
            login_failed(request, reservation)  # wrong, or the account changed in the meantime: a failure
            return None
        login_succeeded(request, reservation)
        cache.put(username, password, verified.id, verified.password_hash)
        return verified.id, verified.password_hash

    flights: SingleFlight = request.registry.stevedore.credential_flights
    found = flights.run(username, password, check, client=request.client_addr or "")
    return None if found is None else _still(store, username, *found)


def _still(store: AccountStore, username: str, account_id: int, password_hash: str) -> Account | None:
    """The account as it is now, if it still stands for these credentials: active, the same name, the same hash."""
    account = store.get(account_id)
    if (
        account is None
        or not account.is_active
        or account.username != username
        or not hmac.compare_digest(account.password_hash.encode(), password_hash.encode())
    ):
        return None
    return account


def registry_may(request: Request, permission: str | None) -> bool:
    """Would the caller's account (whatever its token says) be allowed `permission` on this request's repository?"""
    principal: Principal | None = request.principal
    if principal is None or permission is None:
        return False
    rights: Access = request.access
    if permission == Permission.CATALOG:
        return rights.may_list_catalog(principal.account)
    if permission == Permission.AUTHENTICATED:
        return True
    try:
        name = RepositoryName.parse((request.matchdict or {}).get("name", ""))
    except Exception:
        return False
    if principal.access_token is not None and not principal.access_token.allows(permission, name.value):
        return False  # no token fetched again can do more than the personal access token behind it: 403, not 401
    return rights.may(principal.account, Action(permission), name)


def authenticate_request(request: Request) -> Principal | None:
    """The caller, from the Authorization header, or None. Never raises for bad credentials: they are anonymous."""
    header = request.headers.get("Authorization", "")
    basic = parse_basic(header)
    if basic is not None:
        return principal_for_password(request, *basic)
    token = parse_bearer(header)
    if token is not None:
        from stevedore.web.registry.challenge import service_name  # it imports this module

        service = service_name(request)
        if service in request.registry.stevedore.settings.token_audiences:
            return None  # a token for a registry that trusts ours is never one for us, whatever Host says
        try:
            holder = request.token_service.holder_of_access_token(token, service=service)
        except TokenInvalid:
            return None
        if not robot_stands(request, holder.account):
            return None
        if holder.access_token_id is None:
            return Principal(holder.account, holder.scopes)
        # Issued for a personal access token: it ends with that token (revoked, expired), not only with the account.
        access_token = request.lookup_access_token_service.usable(holder.access_token_id, holder.account)
        if access_token is None:
            return None
        return Principal(holder.account, holder.scopes, access_token=access_token)
    return None


class StevedoreSecurityPolicy:
    """Pyramid 2 security policy: identity from the request's credentials, permissions from domain.access."""

    def identity(self, request: Request) -> Principal | None:
        return request.principal  # type: ignore[no-any-return]

    def authenticated_userid(self, request: Request) -> str | None:
        principal = request.principal
        return str(principal.account.id) if principal else None

    def permits(self, request: Request, context: Any, permission: str) -> Allowed | Denied:
        principal: Principal | None = request.principal
        request.required_permission = permission
        if principal is None:
            return Denied("not authenticated")
        if permission == Permission.AUTHENTICATED:
            return Allowed("authenticated")
        rights: Access = request.access
        if permission == Permission.CATALOG:
            if rights.may_list_catalog(principal.account) and principal.token_allows_catalog():
                return Allowed("catalog")
            return Denied("catalog")
        name = RepositoryName.parse(request.matchdict.get("name", ""))  # NameInvalid -> 400, after the 401
        return authorize(rights, principal, Action(permission), name)

    def remember(self, request: Request, userid: Any, **kw: Any) -> list[tuple[str, str]]:
        return []

    def forget(self, request: Request, **kw: Any) -> list[tuple[str, str]]:
        return []


def authorize(rights: Access, principal: Principal, action: Action, name: RepositoryName) -> Allowed | Denied:
    """Both must allow: the account's rights as they are now (a right taken away ends at once, also for tokens
    issued before) and, for a Bearer token, the scopes it was issued with; for a personal access token, its scope
    and namespaces too."""
    if not rights.may(principal.account, action, name):
        return Denied(f"{action} on {name} denied")
    if not principal.token_allows(action.value, name.value):
        return Denied(f"token lacks {action} on {name}")
    return Allowed(f"{action} on {name}")
