"""PostgreSQL's pooled connections are pinged before use only after they sat idle (engine.py's _ping_when_idle): a
connection in use a moment ago goes out as it is, one idle longer is pinged, and one the server dropped meanwhile is
replaced, with the pool, so the caller never sees it."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from stevedore.adapters.sql import engine as engine_module
from stevedore.adapters.sql.engine import make_engine

pytestmark = pytest.mark.postgres


@pytest.fixture
def pooled(postgres_server):
    engine = make_engine(postgres_server.url())
    pings: list[object] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection):
        pings.append(dbapi_connection)
        return ping(dbapi_connection)

    engine.dialect.do_ping = counted  # type: ignore[method-assign]
    yield engine, pings
    engine.dispose()


def drop(postgres_server, pid: int) -> None:
    """The server ends the connection (a restart, an idle timeout), and it is gone before this returns."""
    admin = make_engine(postgres_server.url())
    try:
        with admin.connect() as connection:
            assert connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with admin.connect() as connection:
                query = sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
                if connection.execute(query, {"pid": pid}).scalar_one() == 0:
                    return
            time.sleep(0.05)
        raise AssertionError(f"backend {pid} still there")
    finally:
        admin.dispose()


def backend_pid(engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def test_a_connection_used_a_moment_ago_is_not_pinged(pooled, monkeypatch):
    engine, pings = pooled
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 3600.0)
    first = backend_pid(engine)  # a fresh connection: never pinged
    assert backend_pid(engine) == first and backend_pid(engine) == first  # the same one, back from the pool
    assert pings == []


def test_an_idle_connection_is_pinged_and_one_the_server_dropped_is_replaced(pooled, postgres_server, monkeypatch):
    engine, pings = pooled
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 0.0)  # every pooled connection counts as idle
    first = backend_pid(engine)
    assert backend_pid(engine) == first and len(pings) == 1  # pinged, alive, reused
    drop(postgres_server, first)
    replaced = backend_pid(engine)  # the ping fails, the pool is invalidated, a new connection serves
    assert replaced != first and len(pings) == 2


def test_without_the_ping_a_dropped_connection_fails_its_statement(pooled, postgres_server, monkeypatch):
    """What the ping prevents, so the test above can fail: the same drop, not pinged, reaches the caller."""
    engine, pings = pooled
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 3600.0)
    first = backend_pid(engine)
    drop(postgres_server, first)
    with pytest.raises(sa.exc.OperationalError):
        backend_pid(engine)
    assert backend_pid(engine) != first  # and the pool recovers at once
    assert pings == []
