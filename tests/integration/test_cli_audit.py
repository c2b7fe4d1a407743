"""`stevedore audit list` and the audit events of `stevedore namespace …`: the newest events first, filtered by user,
namespace and action, paged with --before; every field escaped, so nothing stored forges a line; bad options are a
one-line error. Run in this process (`cli.main`) for speed, and once as the real command."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import transaction

from stevedore import cli
from stevedore.adapters.sql.audit import SqlAuditLog
from stevedore.adapters.sql.engine import join_transaction, make_engine, make_session_factory
from stevedore.domain.audit import AuditAction, AuditEvent
from tests.integration.services import free_port, stevedore_cli, write_ini


@pytest.fixture
def ini(tmp_path):
    path = str(tmp_path / "cli.ini")
    database = f"sqlite:///{tmp_path}/cli.sqlite"
    write_ini(path, database_url=database, storage_dir=str(tmp_path / "blobs"), port=free_port())
    assert cli.main(["--config", path, "db", "upgrade"]) == 0
    return path


def run(capsys, ini, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(["--config", ini, *args])
    out, err = capsys.readouterr()
    return code, out, err


def ok(capsys, ini, *args) -> list[str]:
    code, out, err = run(capsys, ini, *args)
    assert code == 0, err
    return out.splitlines()


def error(capsys, ini, *args) -> str:
    code, out, err = run(capsys, ini, *args)
    assert code != 0, out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0].removeprefix("stevedore: error: ")


def user(capsys, ini, name):
    code, _out, err = run_with_stdin(
        capsys, ini, "a long enough password\n", "user", "create", name, "--password-stdin"
    )
    assert code == 0, err


def run_with_stdin(capsys, ini, stdin, *args):
    import io
    import sys

    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        return run(capsys, ini, *args)
    finally:
        sys.stdin = saved


def record(ini, *events: AuditEvent) -> None:
    with open(ini) as handle:
        database = handle.read().split("stevedore.database_url = ")[1].split("\n")[0]
    engine = make_engine(database)
    session = make_session_factory(engine)()
    with transaction.manager:
        join_transaction(session)
        for event in events:
            SqlAuditLog(session).record(event)
    session.close()
    engine.dispose()


def columns(line: str) -> list[str]:
    return line.split()


def test_namespace_commands_are_audited_and_listed_newest_first(capsys, ini):
    for name in ("dave", "erin"):
        user(capsys, ini, name)
    assert ok(capsys, ini, "audit", "list") == ["no events"]
    ok(capsys, ini, "namespace", "create", "team", "--owner", "dave")
    ok(capsys, ini, "namespace", "member", "add", "team", "erin", "push")
    ok(capsys, ini, "namespace", "member", "remove", "team", "erin")
    error(capsys, ini, "namespace", "member", "remove", "team", "erin")  # refused: nothing recorded
    lines = ok(capsys, ini, "audit", "list")
    assert columns(lines[0]) == ["ID", "AT", "(UTC)", "USER", "ADDRESS", "ACTION", "NAMESPACE", "TARGET", "DETAIL"]
    events = [columns(line) for line in lines[1:]]
    assert [e[3:] for e in events] == [
        ["-", "-", "member_removed", "team", "erin", "command", "line"],
        ["-", "-", "member_added", "team", "erin", "push", "(command", "line)"],
        ["-", "-", "member_added", "team", "dave", "admin", "(command", "line)"],
        ["-", "-", "namespace_created", "team", "team", "admin", "dave", "(command", "line)"],
    ]
    assert [e[0] for e in events] == ["4", "3", "2", "1"]
    assert datetime.strptime(f"{events[0][1]} {events[0][2]}", "%Y-%m-%d %H:%M:%S").year == datetime.now(UTC).year


def test_filters_and_pages(capsys, ini):
    at = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)
    record(
        ini,
        AuditEvent(at=at, action=AuditAction.PUSH, actor_name="alice", namespace="team", target="team/a"),
        AuditEvent(at=at, action=AuditAction.PUSH, actor_name="bob", namespace="team", target="team/b"),
        AuditEvent(at=at, action=AuditAction.DELETE_TAG, actor_name="bob", namespace="team", target="team/b:1"),
        AuditEvent(at=at, action=AuditAction.PUSH, actor_name="bob", namespace="bob", target="bob/c"),
    )

    def targets(*args):
        return [
            columns(line)[7] for line in ok(capsys, ini, "audit", "list", *args)[1:] if not line.startswith("older")
        ]

    assert targets("--user", "bob") == ["bob/c", "team/b:1", "team/b"]
    assert targets("--namespace", "team", "--action", "push") == ["team/b", "team/a"]
    assert targets("--user", "bob", "--namespace", "team", "--action", "delete_tag") == ["team/b:1"]
    assert ok(capsys, ini, "audit", "list", "--user", "nobody") == ["no events match the filter"]
    first = ok(capsys, ini, "audit", "list", "--limit", "2")
    assert [columns(line)[7] for line in first[1:3]] == ["bob/c", "team/b:1"]
    assert first[3] == "older events: stevedore audit list --before 3 (with the same filters)"
    assert targets("--limit", "2", "--before", "3") == ["team/b", "team/a"]


def test_nothing_stored_forges_a_line_or_moves_the_cursor(capsys, ini):
    at = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)
    record(
        ini,
        AuditEvent(
            at=at,
            action=AuditAction.LOGIN_FAILED,
            actor_name="eve\n1  2026-01-01 00:00:00  admin  -  delete_repository",
            target="x\x1b[2J\u202e",
            detail="back\\slash",
        ),
    )
    lines = ok(capsys, ini, "audit", "list")
    assert len(lines) == 2
    assert "eve\\x0a1" in lines[1] and "x\\x1b[2J\\u202e" in lines[1] and "back\\x5cslash" in lines[1]
    assert "\x1b" not in lines[1] and "\u202e" not in lines[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--action", "drop_tables"), "'drop_tables' is not an action of the audit log"),
        (("--limit", "0"), "--limit is from 1 to 1000"),
        (("--limit", "1001"), "--limit is from 1 to 1000"),
    ],
)
def test_bad_options_are_a_one_line_error(capsys, ini, args, message):
    assert error(capsys, ini, "audit", "list", *args) == message


@pytest.mark.server
def test_the_real_command_lists_the_audit_log(ini):
    created = stevedore_cli(ini, "namespace", "create", "library")
    assert created.returncode == 0, created.stderr
    listed = stevedore_cli(ini, "audit", "list", "--action", "namespace_created")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 2 and columns(lines[1])[3:8] == ["-", "-", "namespace_created", "library", "library"]
