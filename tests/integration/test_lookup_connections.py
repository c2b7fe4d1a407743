"""Look-up connections (components.lookup_connections, request.lookup_connection): reads outside any transaction, so
a pull pays for no BEGIN and no COMMIT, on SQLite and PostgreSQL; and a write through one is refused, never
committed."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from stevedore.adapters.sql.engine import LookupWriteRefused
from stevedore.adapters.sql.tables import accounts


def statements_of(engine: sa.Engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2].split(None, 1)[0].upper()))
    return seen


def test_a_look_up_runs_its_statements_alone_with_no_begin_or_commit(components, user):
    seen = statements_of(components.engine)
    with components.lookup_connections() as lookup:
        assert lookup.execute(sa.select(accounts.c.username)).scalars().all() == ["alice"]
        assert lookup.execute(sa.text("SELECT count(*) FROM accounts")).scalar_one() == 1
        if components.engine.dialect.name == "postgresql":  # psycopg sends no BEGIN of its own either
            assert lookup.connection.dbapi_connection.autocommit is True
    assert seen == ["SELECT", "SELECT"]
    # The request's transaction, for comparison, begins (and on SQLite says so itself).
    seen.clear()
    with components.read_sessions() as session:
        session.execute(sa.select(accounts.c.username)).all()
    if components.engine.dialect.name == "sqlite":
        assert seen == ["BEGIN", "SELECT"]


def test_a_look_up_sees_what_another_session_committed_a_moment_ago(components, user):
    with components.lookup_connections() as lookup:
        assert lookup.execute(sa.select(sa.func.count()).select_from(accounts)).scalar_one() == 1
        with components.write_sessions() as writer, writer.begin():
            writer.execute(accounts.update().values(email="alice@example.org"))
        # No snapshot held between statements: the next read sees the commit.
        assert lookup.execute(sa.select(accounts.c.email)).scalar_one() == "alice@example.org"


@pytest.mark.parametrize(
    "statement",
    [
        accounts.update().values(email="mallory@example.org"),
        accounts.delete(),
        sa.text("UPDATE accounts SET email = 'mallory@example.org'"),
        sa.text("  delete from accounts"),
    ],
    ids=["update", "delete", "text-update", "text-delete"],
)
def test_a_write_through_a_look_up_connection_is_refused_and_changes_nothing(components, user, statement):
    with components.lookup_connections() as lookup, pytest.raises(LookupWriteRefused):
        lookup.execute(statement)
    with components.read_sessions() as session:
        assert session.execute(sa.select(accounts.c.email)).scalar_one() is None
