"""SQLite's writer gate across processes (engine.py's _WriterGate): after its in-process lock a writer takes a flock
on `<database>-writer.lock`, tried with LOCK_NB every few milliseconds, so a writer of another process (a forked
worker, a command) queues there instead of in SQLite's busy handler. The processes are forked from this one, as
`workers = N` forks its workers. Who waits where is shown by events, never by timing: each process records, when it
issues its BEGIN IMMEDIATE, whether the holder had already let go."""

from __future__ import annotations

import errno
import fcntl
import multiprocessing
import os
import traceback
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from stevedore.adapters.sql import engine as engine_module
from stevedore.adapters.sql.engine import make_engine, make_session_factory, writer_engine

WAIT = 20  # seconds: a bound for waits and joins, never a measurement
fork = multiprocessing.get_context("fork")


@pytest.fixture
def database(tmp_path):
    """A database file with a table, made through the gate (so this process has opened the lock file already)."""
    path = str(tmp_path / "gate.sqlite")
    engine = make_engine(f"sqlite:///{path}")
    with writer_engine(engine).begin() as connection:
        connection.execute(sa.text("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)"))
    engine.dispose()  # no connection of this process goes into a child
    gate = engine_module._writer_gate(path)
    assert gate is not None and gate._lock_file is not None and gate._lock_file_pid == os.getpid()
    assert not gate._lock.locked()
    return path


def notes(path: str) -> list[str]:
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.text("SELECT text FROM notes ORDER BY id")).scalars())
    finally:
        engine.dispose()


def write_note(path: str, text: str) -> None:
    engine = make_engine(f"sqlite:///{path}")
    try:
        with make_session_factory(writer_engine(engine))() as session, session.begin():
            session.execute(sa.text("INSERT INTO notes (text) VALUES (:text)"), {"text": text})
    finally:
        engine.dispose()


def watch_the_queue(waiting, let_go) -> dict[str, object]:
    """In a child: record each refusal of the gate's file lock and, at each BEGIN IMMEDIATE, whether `let_go` was
    set already. `waiting` is set at the first of either, when this writer has reached the gate or gone past it."""
    seen: dict[str, object] = {"refused": 0, "let_go_at_begin": []}
    real_flock = fcntl.flock

    def flock(descriptor, operation):
        try:
            return real_flock(descriptor, operation)
        except BlockingIOError:
            seen["refused"] = int(seen["refused"]) + 1  # type: ignore[call-overload]
            waiting.set()
            raise

    real_exec = sa.Connection.exec_driver_sql

    def exec_driver_sql(self, statement, *args, **kwargs):
        if statement.startswith("BEGIN IMMEDIATE"):
            seen["let_go_at_begin"].append(let_go.is_set())  # type: ignore[attr-defined]
            waiting.set()
        return real_exec(self, statement, *args, **kwargs)

    fcntl.flock = flock  # this child's own modules: the parent's are untouched
    sa.Connection.exec_driver_sql = exec_driver_sql  # type: ignore[method-assign]
    return seen


def in_child(results, name: str, body: Callable[[], dict[str, object]]) -> None:
    try:
        results.put((name, body()))
    except BaseException:
        results.put((name, {"error": traceback.format_exc()}))
        raise


def collect(results, processes) -> dict[str, dict[str, object]]:
    collected = {}
    try:
        for _ in processes:
            name, outcome = results.get(timeout=WAIT)
            assert "error" not in outcome, outcome["error"]
            collected[name] = outcome
        for process in processes:
            process.join(WAIT)
            assert process.exitcode == 0
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
    return collected


def test_a_writer_of_another_process_queues_on_the_file_lock_until_the_first_commits(database):
    held, waiting, committing = fork.Event(), fork.Event(), fork.Event()
    results = fork.Queue()

    def holder() -> dict[str, object]:
        engine = make_engine(f"sqlite:///{database}")
        gate = engine_module._writer_gate(database)
        session = make_session_factory(writer_engine(engine))()
        session.execute(sa.text("INSERT INTO notes (text) VALUES ('first')"))  # BEGIN IMMEDIATE through the gate
        locked = gate._file_locked
        held.set()
        waited = waiting.wait(WAIT)  # the other writer was refused the file lock, or went on to SQLite
        committing.set()
        session.commit()
        session.close()
        engine.dispose()
        return {"file_locked": locked, "other_waiting": waited}

    def queued() -> dict[str, object]:
        assert held.wait(WAIT)
        seen = watch_the_queue(waiting, committing)
        write_note(database, "second")
        return seen

    processes = [
        fork.Process(target=in_child, args=(results, "holder", holder)),
        fork.Process(target=in_child, args=(results, "queued", queued)),
    ]
    for process in processes:
        process.start()
    outcome = collect(results, processes)
    assert outcome["holder"] == {"file_locked": True, "other_waiting": True}
    # The second writer met the file lock (not SQLite's busy handler): refused there at least once, and it issued
    # its BEGIN IMMEDIATE only once the first was committing.
    assert outcome["queued"]["refused"] >= 1  # type: ignore[operator]
    assert outcome["queued"]["let_go_at_begin"] == [True]
    assert notes(database) == ["first", "second"]


def test_a_forked_child_opens_the_lock_file_again(database):
    """flock belongs to the open file: a child using the descriptor inherited from its parent would share the
    parent's lock (and take it at once while the parent holds it). It opens the file again instead."""
    gate = engine_module._writer_gate(database)
    assert gate is not None and gate._lock_file is not None
    parents = gate._lock_file
    fcntl.flock(parents, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a writer of this process would, in the gate
    waiting, releasing = fork.Event(), fork.Event()
    results = fork.Queue()

    def child() -> dict[str, object]:
        seen = watch_the_queue(waiting, releasing)
        write_note(database, "child")
        return {**seen, "descriptor": gate._lock_file, "descriptor_pid": gate._lock_file_pid, "pid": os.getpid()}

    process = fork.Process(target=in_child, args=(results, "child", child))
    try:
        process.start()
        assert waiting.wait(WAIT)
        releasing.set()
    finally:
        fcntl.flock(parents, fcntl.LOCK_UN)
    outcome = collect(results, [process])["child"]
    assert outcome["descriptor"] != parents and outcome["descriptor_pid"] == outcome["pid"] != os.getpid()
    assert outcome["refused"] >= 1  # type: ignore[operator]
    assert outcome["let_go_at_begin"] == [True]
    assert gate._lock_file == parents and gate._lock_file_pid == os.getpid()  # the parent's stays its own
    assert notes(database) == ["child"]


def writers_and_gate(engine: sa.Engine, path: str) -> tuple[Callable[[], Any], Any]:
    """The engine's writer sessions and the process's gate for its database file."""
    gate = engine_module._writer_gate(path)
    assert gate is not None
    return make_session_factory(writer_engine(engine)), gate


@pytest.mark.parametrize("cause", ["a folder in the way", "permission denied"])
def test_a_lock_file_that_cannot_be_created_leaves_sqlite_alone_to_order_processes(tmp_path, monkeypatch, cause):
    path = str(tmp_path / "locked-out.sqlite")
    lock_path = f"{path}-writer.lock"
    if cause == "a folder in the way":
        os.mkdir(lock_path)  # open(O_RDWR | O_CREAT) fails with EISDIR
    else:  # an unwritable folder (the tests run as root, for whom chmod would not be enough)
        real_open = os.open

        def refuse(name, flags, *args, **kwargs):
            if name == lock_path:
                raise PermissionError(13, "Permission denied", name)
            return real_open(name, flags, *args, **kwargs)

        monkeypatch.setattr(engine_module.os, "open", refuse)
    engine = make_engine(f"sqlite:///{path}")
    try:
        writers, gate = writers_and_gate(engine, path)
        with writers() as session, session.begin():
            session.execute(sa.text("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)"))
            session.execute(sa.text("INSERT INTO notes (text) VALUES ('without a file lock')"))
            assert gate._lock.locked() and not gate._file_locked  # the in-process queue still works
        assert gate._lock_path is None  # not tried again at every write
        assert not gate._lock.locked()
        with writers() as session, session.begin():
            session.execute(sa.text("INSERT INTO notes (text) VALUES ('and again')"))
    finally:
        engine.dispose()
    assert notes(path) == ["without a file lock", "and again"]
    assert os.path.isdir(lock_path) if cause == "a folder in the way" else not os.path.exists(lock_path)


def test_a_lock_file_that_cannot_be_opened_this_time_is_tried_again(tmp_path, monkeypatch):
    """Too many open files is not a read-only folder: that writer goes on without the file lock, the next takes it."""
    path = str(tmp_path / "crowded.sqlite")
    lock_path = f"{path}-writer.lock"
    real_open = os.open
    refusals: list[str] = []

    def crowded(name, flags, *args, **kwargs):
        if name == lock_path and not refusals:
            refusals.append(name)
            raise OSError(errno.EMFILE, "Too many open files", name)
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(engine_module.os, "open", crowded)
    engine = make_engine(f"sqlite:///{path}")
    try:
        writers, gate = writers_and_gate(engine, path)
        with writers() as session, session.begin():
            session.execute(sa.text("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)"))
            assert gate._lock.locked() and not gate._file_locked
        assert refusals == [lock_path] and gate._lock_path == lock_path
        with writers() as session, session.begin():
            session.execute(sa.text("INSERT INTO notes (text) VALUES ('with the file lock')"))
            assert gate._file_locked
    finally:
        engine.dispose()
    assert os.path.isfile(lock_path)
    assert notes(path) == ["with the file lock"]


def test_a_wait_for_the_file_lock_cut_short_leaves_the_queue(tmp_path, monkeypatch):
    """An interrupt (KeyboardInterrupt in a command) while waiting for another process's writer must not leave this
    process's gate taken: its next writer would wait for good."""
    gate = engine_module._WriterGate(str(tmp_path / "db.sqlite-writer.lock"))

    def interrupted() -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(gate, "_lock_across_processes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        gate.enter()
    monkeypatch.undo()
    assert gate._lock.acquire(timeout=5), "the gate stayed taken after the interrupted wait"
    gate._lock.release()
    assert gate.enter() and gate._file_locked
    gate.leave()
