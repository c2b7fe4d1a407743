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


PUBLIC_URL = "http://registry.example"  # http: the tests speak plain HTTP, where https would make cookies Secure


def mailing_settings(database_url, tmp_path, mail_folder, **extra: str):
    """The shared fixture's settings with a public URL and the embedded default's .eml folder, for pages that mail
    (invites, password resets). `extra`: more ini keys, without the `stevedore.` prefix."""
    from stevedore.web.settings import Settings
    from tests.integration.conftest import SECRET, TOKEN_SIGNING_KEY

    return Settings.from_mapping(
        {
            "stevedore.database_url": database_url,
            "stevedore.storage_url": f"file://{tmp_path}/blobs",
            "stevedore.bcrypt_rounds": "4",
            "stevedore.blob_fsync": "false",
            "stevedore.public_url": PUBLIC_URL,
            "stevedore.mail.folder": str(mail_folder),
            **{f"stevedore.{key}": value for key, value in extra.items()},
        },
        environ={"STEVEDORE_SECRET_KEY": SECRET, "STEVEDORE_TOKEN_SIGNING_KEYS": TOKEN_SIGNING_KEY},
    )
