"""SQL adapter: engines and sessions for SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from stevedore.domain.errors import StorageFull

_BEGIN_OPTION = "stevedore_sqlite_begin"

# What the SQL stores run their Core statements on: a Session (the request's unit of work, a command's transaction)
# or a look-up connection (reads outside any transaction).
Database = Session | sa.Connection


def dialect_name(database: Database) -> str:
    """ "sqlite" or "postgresql", for the statements that differ."""
    return database.dialect.name if isinstance(database, sa.Connection) else database.get_bind().dialect.name


def normalize_database_url(url: str) -> URL:
    """A plain `postgresql://` or `sqlite:///` URL with the driver this app uses filled in."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str, **kwargs: Any) -> sa.Engine:
    parsed = normalize_database_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _make_sqlite_engine(parsed, **kwargs)
    else:
        engine = sa.create_engine(parsed, **kwargs)
        _ping_when_idle(engine)
    event.listen(engine, "handle_error", _disk_full_is_storage_full)
    return engine


_POSTGRES_DISK_FULL = "53100"  # SQLSTATE disk_full

# A pooled connection idle longer than this is pinged before it is handed out (see _ping_when_idle).
PING_AFTER_IDLE_SECONDS = 5.0
_IDLE_SINCE = "stevedore_idle_since"


def _ping_when_idle(engine: sa.Engine) -> None:
    """Make sure a pooled connection still works before handing it out, as SQLAlchemy's pool_pre_ping does, but only
    for one that sat idle in the pool longer than PING_AFTER_IDLE_SECONDS: pre_ping pinged at every checkout, a
    round trip of its own before each request's first statement (17 % of the request threads' time under 8 pushing
    workers on PostgreSQL). A busy pool's connections were in use a moment ago; a server restart or an idle
    timeout shows on the long-idle ones, and a failed ping invalidates the whole pool, as pre_ping does. A connection
    that died within the last seconds fails its statement instead, which invalidates the pool just the same."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop(_IDLE_SINCE, None)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return  # fresh, or in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise sa.exc.InvalidatePoolError(f"a pooled connection failed its ping: {exc}") from exc


def _disk_full_is_storage_full(context: sa.engine.ExceptionContext) -> BaseException | None:
    """The database's disk is full (SQLite's SQLITE_FULL, "database or disk is full"; PostgreSQL's disk_full): the
    domain's StorageFull, answered like a full blob folder, instead of an unexpected error. The transaction is rolled
    back as for any failed statement or commit."""
    original = context.original_exception
    if isinstance(original, sqlite3.OperationalError):
        full = getattr(original, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(original)
    else:
        full = getattr(original, "sqlstate", None) == _POSTGRES_DISK_FULL
    if not full:
        return None
    return StorageFull("the registry's database disk is full: nothing was stored; retry once space has been freed")


_SQLITE_BUSY_SECONDS = 30
# How often at most a writer waiting for another process's write transaction tries the gate's file lock again.
WRITER_FILE_POLL_SECONDS = 0.002


class _WriterGate:
    """This machine's queue for one SQLite database's write lock.

    SQLite's own wait for its lock (busy_timeout) polls: a writer that finds the database locked sleeps 1, 2, 5, 10,
    ... up to 100 ms between tries, so under concurrent pushes most of a write transaction's time was spent asleep
    after the lock had long been freed (8 workers pushing small images: 56 % of the server threads' time in BEGIN
    IMMEDIATE). Writers of one process queue here first, on a lock that wakes the next one as soon as the holder
    commits or rolls back. The one that has it then takes a file lock (flock) beside the database, which the
    writers of other processes on this machine (`workers = N`, a command) take the same way: it is tried every
    WRITER_FILE_POLL_SECONDS at most, instead of SQLite's 100 ms. SQLite's lock still decides; the gate only orders
    the queue. A thread that already holds the gate (a second writer opened inside its own transaction) does not
    queue again: it meets SQLite's lock as before."""

    def __init__(self, lock_path: str | None = None) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._lock_path = lock_path
        self._lock_file: int | None = None  # this process's descriptor of the lock file (flock is per open file)
        self._lock_file_pid = 0
        self._file_locked = False

    def enter(self) -> bool:
        """Queue for the gate; True when this call took it (then `leave` must follow), False when the thread holds
        it already or waited longer than SQLite itself would (it then waits on SQLite's lock alone)."""
        me = threading.get_ident()
        if self._owner == me or not self._lock.acquire(timeout=_SQLITE_BUSY_SECONDS):
            return False
        self._owner = me
        try:
            self._file_locked = self._lock_across_processes()
        except BaseException:  # interrupted while waiting (KeyboardInterrupt in a command): leave the queue
            self._owner = None
            self._lock.release()
            raise
        return True

    def leave(self) -> None:
        if self._file_locked and self._lock_file is not None:
            self._file_locked = False
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._owner = None
        self._lock.release()

    def _lock_across_processes(self) -> bool:
        """Take the file lock, waiting at most as long as SQLite would; False (go on to SQLite's lock alone) when
        there is no lock file or it could not be had in time."""
        descriptor = self._descriptor()
        if descriptor is None:
            return False
        deadline = time.monotonic() + _SQLITE_BUSY_SECONDS
        pause = 0.0002
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(pause)
                pause = min(pause * 2, WRITER_FILE_POLL_SECONDS)
            except OSError:
                return False

    def _descriptor(self) -> int | None:
        """The lock file, opened once per process: a forked worker must not share its parent's open file, whose
        flock they would hold together."""
        if self._lock_path is None:
            return None
        if self._lock_file is not None and self._lock_file_pid == os.getpid():
            return self._lock_file
        try:
            self._lock_file = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno in _LOCK_FILE_IMPOSSIBLE:  # a read-only folder: SQLite's lock alone orders the processes
                self._lock_path = None
            return None  # else (too many open files...) this time only
        self._lock_file_pid = os.getpid()
        return self._lock_file


# The gate's lock file can never be made here: stop trying.
_LOCK_FILE_IMPOSSIBLE = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP}
)

_writer_gates: dict[str, _WriterGate] = {}
_writer_gates_lock = threading.Lock()


def _writer_gate(database: str) -> _WriterGate | None:
    """One gate per database file in this process, shared by every engine on it (the app's, a command's); none for
    a private in-memory database."""
    if database in ("", ":memory:"):
        return None
    if database.startswith("file:"):
        key, lock_path = database, None  # a URI: its file is SQLite's to find; processes meet at SQLite's lock
    else:
        key = os.path.abspath(database)
        lock_path = f"{key}-writer.lock"
    with _writer_gates_lock:
        return _writer_gates.setdefault(key, _WriterGate(lock_path))


class _GatedSqliteConnection(sqlite3.Connection):
    """A DBAPI connection that leaves its writer gate once its transaction has ended: after the COMMIT or ROLLBACK
    (not before, as SQLAlchemy's commit event would), or when it is closed."""

    held_gate: _WriterGate | None = None

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.leave_gate_if_done()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.leave_gate_if_done()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.leave_gate_if_done(closed=True)

    def leave_gate_if_done(self, closed: bool = False) -> None:
        gate = self.held_gate
        if gate is not None and (closed or not self.in_transaction):
            self.held_gate = None
            gate.leave()


def _make_sqlite_engine(url: URL, **kwargs: Any) -> sa.Engine:
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        _private_database_file(os.path.abspath(url.database))
    gate = _writer_gate(url.database or "")
    engine = sa.create_engine(
        url,
        connect_args={"timeout": _SQLITE_BUSY_SECONDS, "check_same_thread": False, "factory": _GatedSqliteConnection},
        **kwargs,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself, so writers can take the lock up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_SECONDS * 1000}")  # wait for the lock instead of failing
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable enough under WAL; blobs are fsynced themselves
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # BEGIN IMMEDIATE takes the write lock at once (waiting busy_timeout for it), so a transaction never fails
        # half-way when it upgrades from reader to writer: the cause of "database is locked" under docker's
        # five parallel layer pushes. Look-ups (NONE) begin nothing: each of their statements is its own.
        # Writers queue for the lock in this process first (_WriterGate).
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        if mode == "NONE":
            return
        dbapi_connection = conn.connection.dbapi_connection
        gated = dbapi_connection if isinstance(dbapi_connection, _GatedSqliteConnection) else None
        if gated is not None and gate is not None and mode == "IMMEDIATE" and gate.enter():
            gated.held_gate = gate
        try:
            conn.exec_driver_sql(f"BEGIN {mode}")
        except BaseException:
            if gated is not None:
                gated.leave_gate_if_done(closed=True)
            raise

    return engine


def _private_database_file(path: str) -> None:
    """The database holds the password hashes: its folder (when we create it) is 0700 and the file 0600. SQLite
    gives its -wal and -shm files the main file's mode, so creating that file 0600 before SQLite does covers them;
    files left by an older version are narrowed to their owner."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    # An empty file is an empty database. Already there, or not creatable (SQLite says so when it connects): fine.
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for name in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal", f"{path}-writer.lock"):
        try:
            mode = stat.S_IMODE(os.stat(name).st_mode)
            if mode & 0o077:
                os.chmod(name, mode & 0o700)
        except OSError:
            pass  # absent, or another user's


def writer_engine(engine: sa.Engine) -> sa.Engine:
    """The same engine, but transactions that will write take SQLite's lock when they begin."""
    if engine.dialect.name == "sqlite":
        return engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
    return engine


def lookup_engine(engine: sa.Engine) -> sa.Engine:
    """The same engine for look-ups: every statement commits on its own (SQLite without BEGIN, PostgreSQL in
    autocommit), so a request that only reads pays for no BEGIN and no COMMIT or ROLLBACK, which are round trips of
    their own: a third of the statements of docker's HEAD of a manifest."""
    if engine.dialect.name == "sqlite":
        return engine.execution_options(**{_BEGIN_OPTION: "NONE"})
    return engine.execution_options(isolation_level="AUTOCOMMIT")


class LookupWriteRefused(RuntimeError):
    """A write through a look-up session: a bug, since it would commit at once, outside the request's transaction."""


_READING_WORDS = frozenset({"SELECT", "WITH", "EXPLAIN", "SHOW"})


def _refuse_writes(_connection: sa.Connection, statement: Any, *_args: Any) -> None:
    if isinstance(statement, sa.TextClause):
        words = statement.text.split(None, 1)
        writes = not words or words[0].upper() not in _READING_WORDS
    else:
        writes = not isinstance(statement, sa.Select | sa.CompoundSelect)
    if writes:
        raise LookupWriteRefused(f"a look-up session only reads: refused {type(statement).__name__}")


def make_session_factory(engine: sa.Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def make_lookup_connection_factory(engine: sa.Engine) -> Callable[[], sa.Connection]:
    """Connections for reads outside any transaction (`lookup_engine`). A plain Core connection, not an ORM Session:
    the stores only run Core statements, and a Session's bookkeeping doubled a pull's SQL time (about 100 us of
    200). A write through one raises LookupWriteRefused."""
    lookups = lookup_engine(engine)
    event.listen(lookups, "before_execute", _refuse_writes, retval=False)
    return lookups.connect


def join_transaction(session: Session, transaction_manager: Any = None) -> Session:
    """Tie `session` to a `transaction` manager (pyramid_tm's per request). The stores write with Core
    statements, which zope.sqlalchemy cannot see, so every transaction counts as changed and is committed."""
    import transaction
    import zope.sqlalchemy

    zope.sqlalchemy.register(
        session, transaction_manager=transaction_manager or transaction.manager, initial_state="changed"
    )
    return session
