"""`stevedore robot …`: robots made, listed, disabled, enabled and deleted from the command line (headless setups and
CI bootstrap), with the secret alone on stdout, audited; bad input is a one-line error."""

from __future__ import annotations

from stevedore.adapters.clock import SystemClock
from stevedore.adapters.sql.access_tokens import SqlAccessTokenStore
from stevedore.adapters.sql.engine import make_engine, make_session_factory
from stevedore.domain.access_tokens import AccessTokenService
from stevedore.web.settings import Settings
from tests.integration.test_cli_audit import error, ini, ok, run, user  # noqa: F401  (ini: a fixture)


def secret_works(ini_path: str, secret: str) -> bool:
    from pyramid.paster import get_appsettings

    settings = Settings.from_mapping(get_appsettings(ini_path, "main"))
    with make_session_factory(make_engine(settings.database_url))() as session:
        return AccessTokenService(SqlAccessTokenStore(session), SystemClock()).authenticate(secret) is not None


def test_a_robot_is_made_with_its_secret_alone_on_stdout_and_managed(capsys, ini):  # noqa: F811
    user(capsys, ini, "ada")
    code, out, err = run(capsys, ini, "robot", "create", "ada", "ci", "--scope", "pull", "--expires-days", "30")
    assert code == 0, err
    secret = out.strip()
    assert secret.startswith("stv_") and "\n" not in secret and "ada+ci" in err
    assert secret_works(ini, secret)
    (line,) = ok(capsys, ini, "robot", "list", "ada")
    assert line.startswith("ada+ci: active (pull, expires ")
    assert ok(capsys, ini, "robot", "disable", "ada", "ci") == ["robot ada+ci: disabled"]
    assert ok(capsys, ini, "robot", "list", "ada")[0].startswith("ada+ci: disabled")
    ok(capsys, ini, "robot", "enable", "ada", "ci")
    ok(capsys, ini, "robot", "delete", "ada", "ci")
    assert ok(capsys, ini, "robot", "list", "ada") == ["ada has no robots"]
    assert not secret_works(ini, secret)
    actions = " ".join(ok(capsys, ini, "audit", "list", "--namespace", "ada"))
    for action in ("robot_created", "robot_disabled", "robot_enabled", "robot_revoked"):
        assert action in actions


def test_bad_robot_commands_are_one_line_errors(capsys, ini):  # noqa: F811
    user(capsys, ini, "ada")
    assert "no namespace" in error(capsys, ini, "robot", "create", "nowhere", "ci")
    assert "robot's name" in error(capsys, ini, "robot", "create", "ada", "Bad Name")
    assert "between 1 and" in error(capsys, ini, "robot", "create", "ada", "ci", "--expires-days", "0")
    assert "no robot ada+ghost" in error(capsys, ini, "robot", "disable", "ada", "ghost")
    ok(capsys, ini, "robot", "create", "ada", "ci")
    assert "exists already" in error(capsys, ini, "robot", "create", "ada", "ci")
