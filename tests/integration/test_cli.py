"""The `stevedore` command line, run as an operator would: a real ini, a real database, a subprocess."""

from __future__ import annotations

import pytest

from tests.integration.services import free_port, stevedore_cli, write_ini

pytestmark = pytest.mark.server


@pytest.fixture
def ini(tmp_path):
    path = str(tmp_path / "cli.ini")
    write_ini(
        path, database_url=f"sqlite:///{tmp_path}/cli.sqlite", storage_dir=str(tmp_path / "blobs"), port=free_port()
    )
    upgraded = stevedore_cli(path, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    return path


def test_user_create_then_duplicate_is_a_one_line_error(ini):
    created = stevedore_cli(ini, "user", "create", "admin", "--admin", "--password-stdin", stdin="a long password\n")
    assert created.returncode == 0, created.stderr
    assert "administrator admin" in created.stdout
    again = stevedore_cli(ini, "user", "create", "admin", "--password-stdin", stdin="another password\n")
    assert again.returncode != 0
    assert again.stderr.strip().splitlines() == ["stevedore: error: the user 'admin' already exists"]


@pytest.mark.parametrize("password", ["\n", "short\n", "aaaaaaaaaaaa\n"])
def test_empty_or_weak_password_is_refused(ini, password):
    result = stevedore_cli(ini, "user", "create", "bob", "--password-stdin", stdin=password)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1
    assert "password" in result.stderr


def test_missing_ini_is_a_clear_error(tmp_path):
    result = stevedore_cli(str(tmp_path / "nope.ini"), "db", "upgrade")
    assert result.returncode != 0
    assert result.stderr.strip() == f"stevedore: error: no such configuration file: {tmp_path / 'nope.ini'}"


def test_invite_create_prints_the_code_and_the_sign_up_url(ini):
    result = stevedore_cli(ini, "invite", "create", "--email", "new@example.com")
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.strip().splitlines() if ": " in line)
    assert len(lines["invite code"]) >= 24
    assert lines["sign-up URL"].endswith("/signup/" + lines["invite code"])


def test_db_upgrade_is_idempotent(ini):
    assert stevedore_cli(ini, "db", "upgrade").returncode == 0
