"""Web layer: page sessions. Pyramid's ISession, its state in the database (so every process and node shares it),
found through a signed cookie that carries nothing but a random id.

The page identity lives here and only here: a session cookie never authenticates a /v2/ request (the registry
reads the Authorization header alone), so a page on another site cannot make a browser push or delete. Sessions end
when idle too long, when too old whatever the use, on logout, and when the account is disabled or its password
changes (the session remembers the account's token generation).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pyramid.interfaces import ISession
from pyramid.request import Request
from pyramid.response import Response
from webob.cookies import SignedSerializer
from zope.interface import implementer

from stevedore.adapters.sql.web_sessions import SqlWebSessionStore, StoredWebSession
from stevedore.domain.model import Account

COOKIE_NAME = "stevedore_session"
ACCOUNT_KEY = "account_id"
GENERATION_KEY = "token_generation"
CSRF_KEY = "_csrft_"
# A session's last use is written at most this often: reading a page should rarely cost a write.
TOUCH_EVERY = timedelta(seconds=60)

F = TypeVar("F", bound=Callable[..., Any])


def _changes(method: F) -> F:
    def changing(self: WebSession, *args: Any, **kwargs: Any) -> Any:
        self.changed()
        return method(self, *args, **kwargs)

    changing.__name__ = method.__name__
    return changing  # type: ignore[return-value]


class _PlainText:
    """The cookie's payload is the session id itself; SignedSerializer adds the signature."""

    def dumps(self, value: str) -> bytes:
        return value.encode()

    def loads(self, value: bytes) -> str:
        return value.decode()


def hash_session_id(session_id: str) -> str:
    # The table keeps only this: reading the database opens no session.
    return hashlib.sha256(session_id.encode()).hexdigest()


@implementer(ISession)
class WebSession(dict[str, Any]):
    """A session's data, loaded when a view first touches `request.session` and saved when the response leaves."""

    def __init__(self, session_id: str | None, stored: StoredWebSession | None, now: datetime) -> None:
        super().__init__(stored.data if stored else {})
        self.session_id = session_id if stored else None
        self.stored = stored
        self.now = now
        self.new = stored is None
        self.created = (stored.created_at if stored else now).timestamp()
        self.dirty = False
        self.ended_id_hashes: list[str] = []  # to delete from the table: invalidated (or expired) sessions

    def changed(self) -> None:
        self.dirty = True

    def invalidate(self) -> None:
        """End this session here and in the table; what is stored afterwards goes to a new session with a new id."""
        if self.session_id is not None:
            self.ended_id_hashes.append(hash_session_id(self.session_id))
        super().clear()
        self.session_id, self.stored, self.new, self.created = None, None, True, self.now.timestamp()
        self.dirty = False

    # Every dict method that writes marks the session changed.
    __setitem__ = _changes(dict.__setitem__)
    __delitem__ = _changes(dict.__delitem__)
    clear = _changes(dict.clear)
    update = _changes(dict.update)
    setdefault = _changes(dict.setdefault)
    pop = _changes(dict.pop)
    popitem = _changes(dict.popitem)

    def flash(self, msg: Any, queue: str = "", allow_duplicate: bool = True) -> None:
        messages = list(self.get("_f_" + queue, []))
        if allow_duplicate or msg not in messages:
            messages.append(msg)
            self["_f_" + queue] = messages

    def pop_flash(self, queue: str = "") -> list[Any]:
        return list(self.pop("_f_" + queue, []))

    def peek_flash(self, queue: str = "") -> list[Any]:
        return list(self.get("_f_" + queue, []))

    def new_csrf_token(self) -> str:
        token = secrets.token_urlsafe(32)
        self[CSRF_KEY] = token
        return token

    def get_csrf_token(self) -> str:
        token = self.get(CSRF_KEY)
        return token if isinstance(token, str) else self.new_csrf_token()


class WebSessionFactory:
    """Pyramid's ISessionFactory for `config.set_session_factory`."""

    def __init__(self, *, secret_key: bytes, secure: bool, idle_seconds: int, max_seconds: int) -> None:
        self.serializer = SignedSerializer(secret_key, "stevedore.web-session", serializer=_PlainText())
        self.secure = secure
        self.idle = timedelta(seconds=idle_seconds)
        self.max_age = timedelta(seconds=max_seconds)

    def __call__(self, request: Request) -> WebSession:
        components = request.registry.stevedore
        now = components.clock.now()
        session_id = self._session_id_from_cookie(request)
        stored = None
        expired_hash = None
        if session_id is not None:
            with components.read_sessions() as db:
                stored = SqlWebSessionStore(db).get(hash_session_id(session_id))
            if stored is not None and not self._alive(stored, now):
                expired_hash, stored = stored.id_hash, None
        session = WebSession(session_id, stored, now)
        if expired_hash:
            session.ended_id_hashes.append(expired_hash)
        request.add_response_callback(lambda request, response: self._save(request, response, session, session_id))
        return session

    def _alive(self, stored: StoredWebSession, now: datetime) -> bool:
        return now - stored.last_seen_at < self.idle and now - stored.created_at < self.max_age

    def _session_id_from_cookie(self, request: Request) -> str | None:
        value = request.cookies.get(COOKIE_NAME)
        if not value:
            return None
        try:
            session_id: str = self.serializer.loads(value.encode())
        except (ValueError, UnicodeError):
            return None
        return session_id

    def _save(self, request: Request, response: Response, session: WebSession, cookie_id: str | None) -> None:
        components = request.registry.stevedore
        now = components.clock.now()
        ended, kept = session.ended_id_hashes, session.stored
        touch_only = not session.dirty and kept is not None and now - kept.last_seen_at >= TOUCH_EVERY
        is_new = session.dirty and session.session_id is None and bool(session)
        if not (ended or touch_only or (session.dirty and (session.session_id or is_new))):
            return self._set_cookie(response, session, cookie_id, now)
        if is_new:
            session.session_id = secrets.token_urlsafe(32)
        account_id = session.get(ACCOUNT_KEY)
        with components.write_sessions() as db, db.begin():
            store = SqlWebSessionStore(db)
            for id_hash in ended:
                store.delete(id_hash)
            if touch_only:
                assert kept is not None
                store.touch(kept.id_hash, now)
            elif is_new:
                assert session.session_id is not None
                store.add(hash_session_id(session.session_id), account_id, dict(session), now)
                # Each new session sweeps those nobody can use any more.
                store.delete_expired(seen_before=now - self.idle, created_before=now - self.max_age)
            elif session.dirty and session.session_id is not None:
                store.update(hash_session_id(session.session_id), account_id, dict(session), now)
        self._set_cookie(response, session, cookie_id, now)

    def _set_cookie(self, response: Response, session: WebSession, cookie_id: str | None, now: datetime) -> None:
        if session.session_id is not None and session.session_id != cookie_id:
            created = datetime.fromtimestamp(session.created, tz=now.tzinfo)
            remaining = max(0, int((created + self.max_age - now).total_seconds()))
            response.set_cookie(
                COOKIE_NAME,
                self.serializer.dumps(session.session_id).decode(),
                max_age=remaining,
                path="/",
                secure=self.secure,
                httponly=True,
                samesite="Lax",
            )
        elif session.session_id is None and cookie_id is not None:
            response.delete_cookie(COOKIE_NAME, path="/")


def web_account(request: Request) -> Account | None:
    """The account logged in to the pages, or None: active, and with the same password and token generation as when
    it logged in (a disable or a new password ends its sessions)."""
    if request.environ.get("PATH_INFO", "").startswith("/v2"):
        return None  # never from a cookie on the registry API
    session = request.session
    account_id = session.get(ACCOUNT_KEY)
    if not isinstance(account_id, int):
        return None
    account: Account | None = request.lookup_account_store.get(account_id)
    if account is None or not account.is_active or account.token_generation != session.get(GENERATION_KEY):
        session.invalidate()
        return None
    return account


def log_in(request: Request, account: Account) -> None:
    """A fresh session (new id, new CSRF token) for this account: an id planted before the login is worth nothing."""
    session = request.session
    session.invalidate()
    session[ACCOUNT_KEY] = account.id
    session[GENERATION_KEY] = account.token_generation
    session.new_csrf_token()


def log_out(request: Request) -> None:
    request.session.invalidate()
