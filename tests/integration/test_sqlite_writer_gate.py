"""SQLite's writers queue in the process for the write lock (engine.py's _WriterGate) instead of polling SQLite's
busy handler: a writer waits on the gate while another holds it, is let in when that one commits, rolls back, fails
or is closed, and the gate is never left taken. No timing is asserted: only who waits where, with generous joins."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from stevedore.adapters.sql import engine as engine_module
from stevedore.adapters.sql.engine import make_engine, make_session_factory, writer_engine

WAIT = 20  # seconds: a bound for joins, never a measurement


@pytest.fixture
def database(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/gate.sqlite")
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)"))
    writers = make_session_factory(writer_engine(engine))
    gate = engine_module._writer_gate(str(tmp_path / "gate.sqlite"))
    assert gate is not None
    yield writers, gate, engine
    engine.dispose()


def note(session, text: str, id: int | None = None) -> None:
    session.execute(sa.text("INSERT INTO notes (id, text) VALUES (:id, :text)"), {"id": id, "text": text})


def notes(engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(sa.text("SELECT text FROM notes ORDER BY id")).scalars())


def test_a_second_writer_waits_on_the_gate_until_the_first_commits(database):
    writers, gate, engine = database
    first = writers()
    note(first, "first")  # BEGIN IMMEDIATE: the gate and SQLite's lock are taken
    assert gate._lock.locked()
    entered, done = threading.Event(), threading.Event()
    real_enter = gate.enter

    def watched_enter() -> bool:
        entered.set()
        return real_enter()

    gate.enter = watched_enter  # type: ignore[method-assign]

    def second() -> None:
        with writers() as session, session.begin():
            note(session, "second")
        done.set()

    thread = threading.Thread(target=second)
    thread.start()
    assert entered.wait(WAIT)
    assert not done.wait(0.3)  # queued on the gate, not in SQLite
    first.commit()
    first.close()
    thread.join(WAIT)
    assert done.is_set() and notes(engine) == ["first", "second"]
    assert not gate._lock.locked()


@pytest.mark.parametrize("ending", ["commit", "rollback", "close", "failed statement"])
def test_the_gate_is_free_again_however_the_transaction_ends(database, ending):
    writers, gate, engine = database
    session = writers()
    note(session, "kept", id=1)
    assert gate._lock.locked()
    if ending == "commit":
        session.commit()
    elif ending == "rollback":
        session.rollback()
    elif ending == "close":
        session.close()
    else:
        with pytest.raises(sa.exc.IntegrityError):
            note(session, "a duplicate key", id=1)
        session.rollback()
    assert not gate._lock.locked()
    session.close()
    with writers() as again, again.begin():  # and the next writer gets in
        note(again, "next", id=2)
    assert not gate._lock.locked()
    assert notes(engine) == (["kept", "next"] if ending == "commit" else ["next"])


def test_an_invalidated_connection_frees_the_gate(database):
    writers, gate, _engine = database
    session = writers()
    note(session, "lost")
    session.connection().invalidate()
    assert not gate._lock.locked()
    session.close()


def test_a_begin_that_fails_frees_the_gate(database, monkeypatch):
    writers, gate, _engine = database

    def refuse(self, statement, *args, **kwargs):
        if statement.startswith("BEGIN"):
            raise sa.exc.OperationalError(statement, {}, Exception("database is locked"))
        return real(self, statement, *args, **kwargs)

    real = sa.Connection.exec_driver_sql
    monkeypatch.setattr(sa.Connection, "exec_driver_sql", refuse)
    session = writers()
    with pytest.raises(sa.exc.OperationalError):
        note(session, "never")
    assert not gate._lock.locked()
    session.close()


def test_readers_and_deferred_transactions_never_take_the_gate(database):
    _writers, gate, engine = database
    readers = make_session_factory(engine)  # BEGIN DEFERRED
    with readers() as session:
        session.execute(sa.text("SELECT 1"))
        assert not gate._lock.locked()


def test_engines_on_one_file_share_one_gate_and_in_memory_databases_have_none(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    assert engine_module._writer_gate(path) is engine_module._writer_gate(f"{tmp_path}/./shared.sqlite")
    assert engine_module._writer_gate(":memory:") is None
    assert engine_module._writer_gate("") is None
