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


def test_user_password_disable_enable_and_delete(ini):
    assert stevedore_cli(ini, "user", "create", "carol", "--password-stdin", stdin="carol's password\n").returncode == 0
    changed = stevedore_cli(ini, "user", "password", "carol", "--password-stdin", stdin="a new password\n")
    assert changed.returncode == 0, changed.stderr
    assert "changed the password of user carol" in changed.stdout
    weak = stevedore_cli(ini, "user", "password", "carol", "--password-stdin", stdin="short\n")
    assert weak.returncode != 0 and "password" in weak.stderr
    assert "disabled user carol" in stevedore_cli(ini, "user", "disable", "carol").stdout
    assert "enabled user carol" in stevedore_cli(ini, "user", "enable", "carol").stdout
    deleted = stevedore_cli(ini, "user", "delete", "carol")
    assert deleted.returncode == 0, deleted.stderr
    assert "aborted 0 open uploads" in deleted.stdout and "deleted user carol" in deleted.stdout
    missing = stevedore_cli(ini, "user", "delete", "carol")
    assert missing.returncode != 0
    assert missing.stderr.strip().splitlines() == ["stevedore: error: no user 'carol'"]


def test_token_key_create_writes_a_private_key_once(ini, tmp_path):
    import os
    import stat

    path = tmp_path / "keys" / "token.pem"
    created = stevedore_cli(ini, "token-key", "create", str(path))
    assert created.returncode == 0, created.stderr
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    before = path.read_bytes()
    again = stevedore_cli(ini, "token-key", "create", str(path))
    assert again.returncode != 0 and "exists already" in again.stderr
    assert path.read_bytes() == before
