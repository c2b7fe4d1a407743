"""`stevedore robot …`: robots made, listed, disabled, enabled and deleted from the command line (headless setups and
CI bootstrap), with the secret alone on stdout, audited; bad input is a one-line error."""

from __future__ import annotations

from stevedore.adapters.clock import SystemClock
from stevedore.adapters.sql.access_tokens import SqlAccessTokenStore
from stevedore.adapters.sql.engine import make_engine, make_session_factory
from stevedore.domain.access_tokens import AccessTokenService
from stevedore.web.settings import Settings
from tests.integration.test_cli_audit import error, ini, ok, run, run_with_stdin, user  # noqa: F401  (ini: a fixture)


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


def test_disabling_a_user_or_setting_its_password_ends_its_open_reset_links(capsys, ini):  # noqa: F811
    from datetime import UTC, datetime, timedelta

    from pyramid.paster import get_appsettings

    from stevedore.adapters.sql.accounts import SqlAccountStore
    from stevedore.adapters.sql.password_resets import SqlPasswordResetStore
    from stevedore.domain.password_resets import PasswordReset

    user(capsys, ini, "ada")
    engine = make_engine(Settings.from_mapping(get_appsettings(ini, "main")).database_url)

    def open_link(code: str) -> int:
        with make_session_factory(engine)() as session, session.begin():
            account = SqlAccountStore(session).by_username("ada")
            assert account is not None and account.id is not None
            now = datetime.now(UTC)
            reset = PasswordReset(None, account.id, code, now, now + timedelta(hours=1))
            return SqlPasswordResetStore(session).add(reset).id or 0

    def state(reset_id: int) -> str:
        with make_session_factory(engine)() as session:
            found = [r for r in [SqlPasswordResetStore(session).latest_for(1)] if r and r.id == reset_id]
            return found[0].state(datetime.now(UTC)) if found else "gone"

    first = open_link("a" * 64)
    ok(capsys, ini, "user", "disable", "ada")
    assert state(first) == "revoked"
    ok(capsys, ini, "user", "enable", "ada")
    second = open_link("b" * 64)
    code, _out, err = run_with_stdin(
        capsys, ini, "another long password\n", "user", "password", "ada", "--password-stdin"
    )
    assert code == 0, err
    assert state(second) == "revoked"
