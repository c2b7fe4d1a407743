"""Starting and stopping the contestants: Stevedore in each variant, Distribution, the bare app; and their helpers
(PostgreSQL, moto's S3 server). Everything started is registered in a `Fleet`, whose `stop()` ends it all."""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from tests.integration.services import (
    PostgresServer,
    WaitressProcess,
    _pg_bin,
    free_port,
    stevedore_cli,
    write_ini,
)

from benchmarks.throughput import BenchError, Server, start_distribution

USER, PASSWORD = "bench", "bench-password-0123"
LABELS = {
    "sqlite": "Stevedore SQLite",
    "postgres": "Stevedore PostgreSQL",
    "s3": "Stevedore S3",
    "s3-redirect": "Stevedore S3+redirect",
    "distribution": "Distribution",
    "bare": "bare app",
}


def available_variants() -> set[str]:
    found = {"sqlite"}
    if glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        found.add("postgres")
    try:
        from tests.integration.s3.moto_server import _moto_server_command

        _moto_server_command()
        found |= {"s3", "s3-redirect"}
    except (ImportError, RuntimeError):
        pass
    return found


class DurablePostgres(PostgresServer):
    """The integration tests' private cluster, but with fsync on (they turn it off for speed): a push's commit is
    durable here as in production."""

    def start(self) -> None:
        self._run(_pg_bin("initdb"), "-D", self.data, "-A", "trust", "-U", self.user, "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._run(
            _pg_bin("pg_ctl"), "-D", self.data, "-o", options, "-w", "-t", "60", "-l", f"{self.base}/log", "start"
        )


class Fleet:
    """Every process and folder this run started, stopped and removed in reverse order by `stop()`."""

    def __init__(self, workdir: Path, workers: int = 1) -> None:
        self.workdir = workdir
        self.workers = workers  # Stevedore's worker processes
        self.servers: dict[str, Server] = {}  # contestant key -> server
        self._stops: list[tuple[str, Callable[[], None]]] = []
        self._postgres: PostgresServer | None = None
        self._moto: object | None = None

    def _track(self, what: str, stop: Callable[[], None]) -> None:
        self._stops.append((what, stop))

    def stop(self, log: Callable[[str], None]) -> None:
        while self._stops:
            what, stop = self._stops.pop()
            try:
                stop()
            except Exception as exc:  # stop the others anyway
                log(f"stopping {what} failed: {exc!r}")

    # --- helpers -------------------------------------------------------------------------------------------------
    def postgres_url(self, database: str) -> str:
        if self._postgres is None:
            server = DurablePostgres()
            self._track("PostgreSQL", server.stop)
            server.start()
            self._postgres = server
        import sqlalchemy

        engine = sqlalchemy.create_engine(self._postgres.url())
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
        engine.dispose()
        return self._postgres.url(database)

    def moto(self):  # type: ignore[no-untyped-def]
        from tests.integration.s3.moto_server import DUMMY_CREDENTIALS, MotoServer

        if self._moto is None:
            server = MotoServer()
            self._track("moto_server", lambda: (server.stop(), os.unlink(server.log.name)))
            server.start()
            os.environ.update(DUMMY_CREDENTIALS)  # boto3's default chain in the app and its command line
            self._moto = server
        return self._moto

    # --- contestants ---------------------------------------------------------------------------------------------
    def start(self, key: str) -> Server:
        base = self.workdir / key
        if key == "distribution":
            server = start_distribution(base)
        elif key == "bare":
            server = self._start_bare(base)
        else:
            server = self._start_stevedore(base, key)
        self._track(LABELS[key], server.stop)
        server.label = LABELS[key]
        self.servers[key] = server
        return server

    def _start_stevedore(self, base: Path, variant: str) -> Server:
        database = self.postgres_url("stevedore_bench") if variant == "postgres" else None
        extra, storage = "", None
        if variant.startswith("s3"):
            moto = self.moto()
            storage = f"s3://{moto.new_bucket()}/registry"
            extra = (
                f"stevedore.s3_endpoint_url = {moto.endpoint_url}\nstevedore.s3_region = us-east-1\n"
                f"stevedore.s3_addressing = path\n"
                f"stevedore.s3_redirect = {'true' if variant == 's3-redirect' else 'false'}\n"
            )
        return _start_stevedore_with(base, database, storage, extra, self.workers)

    def _start_bare(self, base: Path) -> Server:
        """The bare app under Stevedore's own runner and [server:main] settings (write_ini's), with as many workers."""
        base.mkdir(parents=True)
        port = free_port()
        ini = base / "bare.ini"
        write_ini(
            str(ini),
            database_url="sqlite://",
            storage_dir=str(base / "unused"),
            port=port,
            server_extra=f"workers = {self.workers}",
        )
        text = ini.read_text()
        app_line = "use = egg:stevedore-registry\n"
        if app_line not in text:
            raise RuntimeError("write_ini's [app:main] changed: cannot swap in the bare app")
        ini.write_text(
            text.replace(app_line, f"use = call:benchmarks.bare_app:make_app\nbare.storage = {base}/store\n")
        )
        log_path = str(base / "server.log")
        process = WaitressProcess(str(ini), port, log_path)
        try:
            process.start()
        except BaseException:
            process.stop()
            raise
        assert process.process is not None
        return Server("bare app", "127.0.0.1", port, USER, PASSWORD, process.process.pid, process.stop, log_path)


def _start_stevedore_with(
    base: Path, database_url: str | None, storage_url: str | None, extra: str, workers: int = 1
) -> Server:
    """What benchmarks.throughput.start_stevedore does (the integration fixture's ini, `db upgrade`, one user,
    waitress), with the database and the storage of the variant."""
    base.mkdir(parents=True)
    port = free_port()
    ini = base / "bench.ini"
    storage_dir = str(base / "blobs")
    sqlite_url = f"sqlite:///{base}/stevedore.sqlite"
    write_ini(
        str(ini),
        database_url=sqlite_url,
        storage_dir=storage_dir,
        port=port,
        extra=f"stevedore.blob_fsync = true\n{extra}",
        server_extra=f"workers = {workers}",
    )
    text = ini.read_text()
    if database_url is not None:
        text = text.replace(f"database_url = {sqlite_url}\n", f"database_url = {database_url}\n")
    if storage_url is not None:
        text = text.replace(f"storage_url = file://{storage_dir}\n", f"storage_url = {storage_url}\n")
    ini.write_text(text)
    for args, stdin in ((("db", "upgrade"), None), (("user", "create", USER, "--password-stdin"), f"{PASSWORD}\n")):
        result = stevedore_cli(str(ini), *args, stdin=stdin)
        if result.returncode != 0:
            raise BenchError(f"stevedore {' '.join(args)} failed: {result.stderr}")
    log_path = str(base / "server.log")
    process = WaitressProcess(str(ini), port, log_path)
    try:
        process.start()
    except BaseException:
        process.stop()
        raise
    assert process.process is not None
    return Server("Stevedore", "127.0.0.1", port, USER, PASSWORD, process.process.pid, process.stop, log_path)


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
