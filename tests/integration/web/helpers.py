"""Helpers for page tests: CSRF tokens out of forms, logging in, the setup code."""

from __future__ import annotations

import re

import transaction

from stevedore.adapters.sql.engine import join_transaction
from stevedore.web.ui.session import COOKIE_NAME
from stevedore.web.ui.setup import setup_service_for

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(page) -> str:
    found = _CSRF.search(page.text)
    assert found, "the page has no CSRF token"
    return found.group(1)


def page_csrf_token(app) -> str:
    """The session's CSRF token: from the log-out button when logged in, else from the login form."""
    home = app.get("/")
    return csrf_token(home) if _CSRF.search(home.text) else csrf_token(app.get("/login"))


def log_in(app, username, password, *, next_path=None, status=303):
    token = csrf_token(app.get("/login"))
    form = {"username": username, "password": password, "csrf_token": token}
    if next_path is not None:
        form["next"] = next_path
    return app.post("/login", form, status=status)


def session_cookie(app) -> str | None:
    return app.cookies.get(COOKIE_NAME)


def setup_code(components) -> str | None:
    """What the server prints on start: the code of the setup URL."""
    session = components.write_sessions()
    with transaction.manager:
        join_transaction(session)
        code = setup_service_for(session, components).setup_code()
    session.close()
    return code
