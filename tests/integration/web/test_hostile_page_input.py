"""Hostile input to the pages gets a clear 400 page and changes nothing, never a 500: NUL characters (which
PostgreSQL refuses in text) in paths, queries and forms, query strings that are not UTF-8, and digits that are not
ASCII ("²" is a digit to Python's isdigit, but no number to int)."""

from __future__ import annotations

import pytest

from tests.integration.web.helpers import csrf_token, log_in

PASSWORD = "a fine password"


@pytest.fixture
def admin(testapp, make_user):
    make_user("boss", PASSWORD, admin=True, email="boss@example.com")
    log_in(testapp, "boss", PASSWORD)
    return testapp


@pytest.mark.parametrize(
    "path",
    ["/users?q=%00", "/users?after=%00", "/users/%00", "/namespaces?q=%00", "/namespaces/%00", "/repositories?q=%00",
     "/audit?user=%00", "/r/%00", "/users?q=%ff", "/login?next=%ff", "/password/reset?code=%ff",
     "/invites?before=%C2%B2", "/audit?before=%C2%B2"],
)  # fmt: skip
def test_hostile_queries_and_paths_get_a_page_not_a_500(admin, path):
    response = admin.get(path, expect_errors=True)
    assert response.status_int in (400, 404), (path, response.status)
    assert "text/html" in response.content_type


def test_a_nul_in_a_form_is_refused_before_any_view(admin, db):
    token = csrf_token(admin.get("/users/boss"))
    admin.post("/users/boss%00/disable", {"csrf_token": token}, status=400)
    page = admin.post("/password/forgot", {"name": "a\x00@b.c", "csrf_token": token}, status=400)
    assert "NUL" in page.text
    assert admin.get("/users/boss").status_int == 200  # nothing changed, still logged in


@pytest.mark.parametrize("path", ["/tokens", "/namespaces/boss/robots"])
def test_a_non_ascii_digit_in_an_expiry_is_a_clear_error(admin, path):
    token = csrf_token(admin.get(path))
    page = admin.post(path, {"name": "ci", "scope": "push", "expires_in_days": "²", "csrf_token": token}, status=400)
    assert 'role="alert"' in page.text
