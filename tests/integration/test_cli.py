"""The `stevedore` command line, run as an operator would: a real ini, a real database, a subprocess."""

from __future__ import annotations

import email
import email.policy
import os
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import transaction
import webtest
from pyramid.paster import get_appsettings

from stevedore.adapters.sql.accounts import SqlAccountStore
from stevedore.adapters.sql.engine import join_transaction
from stevedore.adapters.sql.tables import accounts, uploads
from stevedore.domain.accounts import AccountService
from stevedore.web.app import build_components, make_app
from stevedore.web.settings import Settings
from tests.integration.protocol.helpers import basic, open_upload, path_of, session_id
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
    created = stevedore_cli(ini, "user", "create", "boss", "--admin", "--password-stdin", stdin="a long password\n")
    assert created.returncode == 0, created.stderr
    assert "administrator boss" in created.stdout
    again = stevedore_cli(ini, "user", "create", "boss", "--password-stdin", stdin="another password\n")
    assert again.returncode != 0
    assert again.stderr.strip().splitlines() == ["stevedore: error: the user 'boss' already exists"]


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


def _fields(output):
    return dict(line.split(": ", 1) for line in output.strip().splitlines() if ": " in line and line[0] != " ")


def test_invite_create_without_a_public_url_prints_a_labelled_local_link_and_mails_nothing(ini, tmp_path):
    result = stevedore_cli(ini, "invite", "create", "--email", "new@example.com")
    assert result.returncode == 0, result.stderr
    lines = _fields(result.stdout)
    assert len(lines["invite code"]) >= 32
    assert lines["sign-up URL"] == f"http://127.0.0.1:5000/users/sign_up?invite={lines['invite code']}"
    assert "a local fallback" in result.stdout and "stevedore.public_url is not set" in result.stdout
    assert "no mail was sent" in result.stdout and "mailed to" not in lines


@pytest.fixture
def mail_ini(tmp_path):
    path = str(tmp_path / "mail.ini")
    extra = f"stevedore.public_url = https://registry.example.com\nstevedore.mail.folder = {tmp_path}/mail\n"
    extra += "stevedore.mail.from = registry@example.com\nstevedore.invite_lifetime_days = 2\n"
    write_ini(
        path,
        database_url=f"sqlite:///{tmp_path}/cli.sqlite",
        storage_dir=str(tmp_path / "blobs"),
        port=free_port(),
        extra=extra,
    )
    assert stevedore_cli(path, "db", "upgrade").returncode == 0
    return path


def test_invite_create_with_an_email_mails_the_link_built_from_the_public_url(mail_ini, tmp_path):
    result = stevedore_cli(mail_ini, "invite", "create", "--email", "new@example.com")
    assert result.returncode == 0, result.stderr
    lines = _fields(result.stdout)
    link = f"https://registry.example.com/users/sign_up?invite={lines['invite code']}"
    assert lines["sign-up URL"] == link
    assert lines["mailed to"] == f"new@example.com (written to {tmp_path}/mail)"
    expires = datetime.strptime(lines["expires"].split(" UTC")[0], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    assert timedelta(days=1, hours=23) < expires - datetime.now(UTC) <= timedelta(days=2)
    [mail] = (tmp_path / "mail").iterdir()
    message = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
    assert message["To"] == "new@example.com" and message["From"] == "registry@example.com"
    assert link in message.get_content()


def test_invite_list_shows_each_invite_and_revoke_ends_one(mail_ini):
    for email_address in ("one@example.com", "two@example.com"):
        assert stevedore_cli(mail_ini, "invite", "create", "--email", email_address).returncode == 0
    revoked = stevedore_cli(mail_ini, "invite", "revoke", "1")
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.strip() == "revoked invite 1: its link no longer works"
    listed = stevedore_cli(mail_ini, "invite", "list")
    assert listed.returncode == 0, listed.stderr
    header, newest, oldest = listed.stdout.strip().splitlines()
    assert header.split() == ["ID", "CREATED", "(UTC)", "EXPIRES", "(UTC)", "E-MAIL", "INVITED", "BY", "STATE", "BY"]
    assert newest.split()[0] == "2" and newest.split()[5:] == ["two@example.com", "-", "open", "-"]
    assert oldest.split()[0] == "1" and oldest.split()[5:] == ["one@example.com", "-", "revoked", "-"]
    paged = stevedore_cli(mail_ini, "invite", "list", "--limit", "1")
    assert paged.stdout.strip().splitlines()[-1] == "older invites: stevedore invite list --before 2"
    unknown = stevedore_cli(mail_ini, "invite", "revoke", "99")
    assert unknown.returncode != 0 and unknown.stderr.strip() == "stevedore: error: no invite 99"


def test_an_invite_whose_mail_cannot_be_sent_is_not_kept(tmp_path):
    path = str(tmp_path / "smtp.ini")
    extra = "stevedore.public_url = https://registry.example.com\n"
    extra += f"stevedore.mail.smtp_host = 127.0.0.1\nstevedore.mail.smtp_port = {free_port()}\n"
    extra += "stevedore.mail.smtp_security = none\n"
    write_ini(path, database_url=f"sqlite:///{tmp_path}/c.sqlite", storage_dir=str(tmp_path / "b"), port=1, extra=extra)
    assert stevedore_cli(path, "db", "upgrade").returncode == 0
    failed = stevedore_cli(path, "invite", "create", "--email", "new@example.com")
    assert failed.returncode != 0 and "did not take the mail" in failed.stderr
    assert stevedore_cli(path, "invite", "list").stdout.strip() == "no invites"


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


@pytest.fixture
def registry(ini):
    """The app over the ini's database and blob folder, in this process (to open uploads for the CLI to see)."""
    components = build_components(Settings.from_mapping(get_appsettings(ini, "main")))
    yield components, webtest.TestApp(make_app(components))
    components.engine.dispose()


def make_user(components, name: str) -> dict[str, str]:
    """An account made in this process (quicker than one more `user create`); its Basic credentials."""
    session = components.write_sessions()
    with transaction.manager:
        join_transaction(session)
        AccountService(SqlAccountStore(session), components.hasher, components.clock).create_account(
            name, f"{name}'s long password"
        )
    session.close()
    return basic(name, f"{name}'s long password")


def upload_folders(components) -> set[str]:
    folder = os.path.join(components.settings.storage_path, "uploads")
    return set(os.listdir(folder)) if os.path.isdir(folder) else set()


def test_upload_list_and_abort_an_account_s_open_uploads(ini, registry):
    components, app = registry
    dave, erin = make_user(components, "dave"), make_user(components, "erin")
    started = [open_upload(app, dave, f"team/{repo}") for repo in ("old", "new")]
    old_url, new_url = (path_of(location) for location in started)
    old, new = (session_id(location) for location in started)  # the rows' ids, which the command lists
    app.patch(old_url, params=b"12345", headers=dave, status=202)
    erins_url = path_of(open_upload(app, erin, "erin/old"))
    erins = session_id(erins_url)
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    with components.engine.begin() as connection:
        connection.execute(sa.update(uploads).where(uploads.c.id == old).values(created_at=two_hours_ago))

    listed = stevedore_cli(ini, "upload", "list", "dave")
    assert listed.returncode == 0, listed.stderr
    header, *rows = [line.split() for line in listed.stdout.splitlines()]
    assert header == ["ID", "REPOSITORY", "STARTED", "(UTC)", "BYTES"]
    assert [(row[0], row[1], row[4]) for row in rows] == [
        (old, "team/old", "5"),
        (new, "team/new", "0"),
    ]  # oldest first
    assert " ".join(rows[0][2:4]) == f"{two_hours_ago:%Y-%m-%d %H:%M:%S}"

    aborted = stevedore_cli(ini, "upload", "abort", "dave", "--older-than", "3600")
    assert aborted.returncode == 0, aborted.stderr
    assert aborted.stdout == "aborted 1 open upload of user dave\n"
    assert upload_folders(components) == {new, erins}
    app.get(old_url, headers=dave, status=404)
    app.get(new_url, headers=dave, status=204)

    assert stevedore_cli(ini, "upload", "abort", "dave").stdout == "aborted 1 open upload of user dave\n"
    assert upload_folders(components) == {erins}
    assert stevedore_cli(ini, "upload", "list", "dave").stdout == "user dave has no open uploads\n"
    app.get(erins_url, headers=erin, status=204)  # another account's are untouched


def test_upload_commands_name_an_existing_user_and_a_real_age(ini):
    missing = stevedore_cli(ini, "upload", "list", "nobody")
    assert missing.returncode != 0
    assert missing.stderr.strip().splitlines() == ["stevedore: error: no user 'nobody'"]
    negative = stevedore_cli(ini, "upload", "abort", "nobody", "--older-than", "-5")
    assert negative.returncode != 0 and "not a number of seconds: '-5'" in negative.stderr


def test_user_delete_removes_the_account_s_upload_rows_and_bytes(ini, registry):
    components, app = registry
    frank = make_user(components, "frank")
    for _ in range(3):
        open_upload(app, frank, "team/app")
    assert len(upload_folders(components)) == 3
    deleted = stevedore_cli(ini, "user", "delete", "frank")
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.splitlines() == ["aborted 3 open uploads", "deleted user frank"]
    assert upload_folders(components) == set()
    with components.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(uploads)).scalar_one() == 0


def cli_ok(ini, *args):
    result = stevedore_cli(ini, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def cli_error(ini, *args, stdin=None):
    """The one-line error of a refused command."""
    result = stevedore_cli(ini, *args, stdin=stdin)
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0].removeprefix("stevedore: error: ")


def test_namespace_create_list_and_members_decide_who_pushes(ini, registry):
    components, app = registry
    dave, erin = make_user(components, "dave"), make_user(components, "erin")
    assert cli_ok(ini, "namespace", "list") == (
        "no namespaces yet (every user owns the namespace of its user name without one)\n"
    )
    assert (
        cli_ok(ini, "namespace", "create", "team", "--owner", "dave")
        == "created namespace team with dave as its admin\n"
    )
    assert cli_ok(ini, "namespace", "create", "library") == "created namespace library\n"  # reserved: admins may
    app.post("/v2/team/app/blobs/uploads/", headers=erin, status=403)
    app.post("/v2/team/app/blobs/uploads/", headers=dave, status=202)

    assert cli_ok(ini, "namespace", "member", "add", "team", "erin", "push") == "erin has push on team\n"
    app.post("/v2/team/app/blobs/uploads/", headers=erin, status=202)
    assert cli_ok(ini, "namespace", "list").splitlines() == ["library: no members", "team: dave (admin), erin (push)"]

    assert cli_ok(ini, "namespace", "member", "add", "team", "erin", "pull") == "erin has pull on team\n"  # replaces
    app.post("/v2/team/app/blobs/uploads/", headers=erin, status=403)
    assert cli_ok(ini, "namespace", "member", "remove", "team", "erin") == "erin is no longer a member of team\n"
    assert cli_ok(ini, "namespace", "list").splitlines() == ["library: no members", "team: dave (admin)"]

    # A user's own namespace gets its row when someone else is first added to it.
    assert cli_ok(ini, "namespace", "member", "add", "dave", "erin", "push") == "erin has push on dave\n"
    app.post("/v2/dave/tool/blobs/uploads/", headers=erin, status=202)
    assert "dave: erin (push)" in cli_ok(ini, "namespace", "list").splitlines()


def test_namespace_commands_refuse_with_one_line_and_change_nothing(ini, registry):
    components, _ = registry
    make_user(components, "dave")
    make_user(components, "erin")
    cli_ok(ini, "namespace", "create", "team", "--owner", "dave")
    assert cli_error(ini, "namespace", "create", "team") == "the namespace team exists already"
    assert cli_error(ini, "namespace", "create", "dave") == "dave is the namespace of the user dave: it exists already"
    assert cli_error(ini, "namespace", "create", "Bad!").startswith("invalid namespace 'Bad!'")
    assert cli_error(ini, "namespace", "create", "other", "--owner", "nobody") == "no user nobody"
    assert cli_error(ini, "namespace", "member", "add", "nowhere", "erin", "pull") == (
        "no namespace nowhere: create it with `stevedore namespace create nowhere`"
    )
    assert cli_error(ini, "namespace", "member", "add", "team", "nobody", "pull") == "no user nobody"
    assert cli_error(ini, "namespace", "member", "remove", "team", "erin") == "erin is no member of team"
    assert cli_error(ini, "namespace", "member", "remove", "dave", "dave") == (
        "dave owns the namespace of its user name: that cannot be taken away"
    )
    bad_right = stevedore_cli(ini, "namespace", "member", "add", "team", "erin", "owner")
    assert bad_right.returncode != 0 and "invalid choice: 'owner'" in bad_right.stderr
    assert cli_ok(ini, "namespace", "list").splitlines() == ["team: dave (admin)"]


def test_user_create_refuses_the_name_of_an_existing_namespace(ini, registry):
    """Else the new account would own, by its name, a namespace an administrator made or a push claimed."""
    components, app = registry
    dave = make_user(components, "dave")
    cli_ok(ini, "namespace", "create", "team", "--owner", "dave")
    app.post("/v2/claimed/app/blobs/uploads/", headers=dave, status=202)  # dave's first push claims `claimed`
    for name in ("team", "claimed"):
        message = cli_error(ini, "user", "create", name, "--password-stdin", stdin="a long password\n")
        assert message == f"the name '{name}' is taken by a namespace; choose another user name"
    with components.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(accounts)).scalar_one() == 1
