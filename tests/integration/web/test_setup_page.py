"""/setup: the holder of the one-time code creates the first administrator; nobody else, and only once."""

import logging

import pytest
import sqlalchemy as sa

from stevedore.adapters.sql.tables import accounts, setup_codes
from stevedore.web.app import _announce_setup
from tests.integration.conftest import count_rows
from tests.integration.web.helpers import csrf_token, page_csrf_token, setup_code

FORM = {
    "username": "ada",
    "email": "ada@example.com",
    "password": "a long password",
    "password_again": "a long password",
}


def post_setup(testapp, code, status, **changes):
    token = page_csrf_token(testapp)
    return testapp.post("/setup", {**FORM, "code": code, "csrf_token": token, **changes}, status=status)


def test_the_setup_url_creates_the_administrator_who_is_then_logged_in(testapp, components, db):
    code = setup_code(components)
    page = testapp.get(f"/setup?code={code}", status=200)
    assert "Create the administrator" in page.text and 'for="username"' in page.text
    form = {**FORM, "code": code, "csrf_token": csrf_token(page)}
    testapp.post("/setup", form, status=303)
    home = testapp.get("/", status=200)
    assert "Welcome, ada" in home.text and "admin</span>" in home.text
    row = db.execute(sa.select(accounts)).one()
    assert (row.username, row.email, row.is_admin) == ("ada", "ada@example.com", True)
    assert count_rows(db, setup_codes) == 0


@pytest.mark.parametrize("query", ["", "?code=", "?code=wrong", "?code=" + "0" * 32])
def test_without_the_right_code_the_setup_page_is_refused(testapp, components, query):
    setup_code(components)
    page = testapp.get(f"/setup{query}", status=403)
    assert "setup code is wrong" in page.text


def test_a_post_with_a_wrong_code_creates_nothing(testapp, components, db):
    setup_code(components)
    post_setup(testapp, "wrong", 403)
    post_setup(testapp, "", 403)
    assert count_rows(db, accounts) == 0 and count_rows(db, setup_codes) == 1


def test_the_code_works_once_and_then_setup_is_gone(testapp, components, db):
    code = setup_code(components)
    post_setup(testapp, code, 303)
    assert testapp.get(f"/setup?code={code}", status=404).text.count("set up already")
    post_setup(testapp, code, 404, username="eve")
    assert count_rows(db, accounts) == 1


def test_once_any_account_exists_there_is_no_setup_and_no_code(testapp, components, make_user):
    code = setup_code(components)
    make_user("cli-admin", admin=True)
    testapp.get(f"/setup?code={code}", status=404)
    assert setup_code(components) is None


def test_bad_input_shows_the_form_again_and_keeps_the_code(testapp, components, db):
    code = setup_code(components)
    page = post_setup(testapp, code, 400, password="short", password_again="short")
    assert "at least 8 characters" in page.text and 'value="ada"' in page.text
    assert "The two passwords differ" in post_setup(testapp, code, 400, password_again="another password").text
    assert "user names are" in post_setup(testapp, code, 400, username="not valid!").text
    assert "e-mail" in post_setup(testapp, code, 400, email="").text
    assert count_rows(db, accounts) == 0 and count_rows(db, setup_codes) == 1
    post_setup(testapp, code, 303)


def test_setup_without_a_csrf_token_changes_nothing(testapp, components, db):
    code = setup_code(components)
    page = testapp.post("/setup", {**FORM, "code": code}, status=400)
    assert "nothing was changed" in page.text
    assert count_rows(db, accounts) == 0 and count_rows(db, setup_codes) == 1


def test_the_server_prints_the_setup_url_and_the_command_line_way(components, caplog):
    with caplog.at_level(logging.WARNING, logger="stevedore.web.app"):
        _announce_setup(components, {"__file__": "development.ini", "http_port": "5000"})
        _announce_setup(components, {"__file__": "development.ini", "http_port": "5000"})
    code = setup_code(components)
    urls = [r.getMessage() for r in caplog.records if "/setup?code=" in r.getMessage()]
    assert len(urls) == 2 and all(f"http://127.0.0.1:5000/setup?code={code}" in u for u in urls)
    assert any("user create NAME --admin" in r.getMessage() for r in caplog.records)
