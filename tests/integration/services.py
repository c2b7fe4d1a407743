"""Real services for the integration tests: a private PostgreSQL cluster and a waitress server running the app."""

from __future__ import annotations

import glob
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run `make test` (scripts/install-system-deps.sh)")
    return found[-1]


class PostgresServer:
    """initdb + pg_ctl on a private port and socket folder; as the `postgres` user when we are root."""

    def __init__(self) -> None:
        self.base = tempfile.mkdtemp(prefix="stevedore-pg-")
        self.data = os.path.join(self.base, "data")
        self.sockets = os.path.join(self.base, "sock")
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        os.makedirs(self.sockets)
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres")
            shutil.chown(self.sockets, "postgres")
            os.chmod(self.base, 0o755)

    def _run(self, *args: str) -> None:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._run(_pg_bin("initdb"), "-D", self.data, "-A", "trust", "-U", self.user, "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(
            _pg_bin("pg_ctl"), "-D", self.data, "-o", options, "-w", "-t", "60", "-l", f"{self.base}/log", "start"
        )

    def stop(self) -> None:
        try:
            self._run(_pg_bin("pg_ctl"), "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"


@dataclass
class LiveRegistry:
    """A Stevedore served by waitress in its own process, with one user, for real clients."""

    host: str
    url: str
    username: str
    password: str
    ini_path: str
    flavor: str = "stevedore"


def write_ini(
    path: str,
    *,
    database_url: str,
    storage_dir: str,
    port: int,
    extra: str = "",
    server_extra: str = "",
    bcrypt_rounds: int = 4,
) -> None:
    with open(path, "w") as handle:
        handle.write(
            f"""[app:main]
use = egg:stevedore-registry
stevedore.database_url = {database_url}
stevedore.storage_url = file://{storage_dir}
stevedore.secret_key_file = {os.path.dirname(path)}/secret_key
stevedore.token_signing_key_files = {os.path.dirname(path)}/token_signing_key.pem
stevedore.create_token_signing_key = true
stevedore.create_secret_key = true
stevedore.bcrypt_rounds = {bcrypt_rounds}
{extra}

[alembic]
script_location = {REPO_ROOT}/alembic

[server:main]
use = egg:stevedore-registry#waitress
listen = 127.0.0.1:{port}
threads = 8
max_request_body_size = 1099511627776
recv_bytes = 262144
{server_extra}

[loggers]
keys = root

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARN
handlers = console

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(asctime)s %(levelname)-5.5s [%(name)s] %(message)s
"""
        )


def stevedore_cli(ini_path: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stevedore.cli", "--config", ini_path, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


class WaitressProcess:
    def __init__(self, ini_path: str, port: int, log_path: str, env: dict[str, str] | None = None) -> None:
        self.ini_path = ini_path
        self.port = port
        self.log_path = log_path
        self.env = env  # added to the server's environment (TMPDIR, say)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pyramid.scripts.pserve", self.ini_path],
            stdout=log,
            stderr=log,
            env={**os.environ, **self.env} if self.env else None,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"waitress exited: {pathlib.Path(self.log_path).read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/", timeout=2)
            except urllib.error.HTTPError:
                return  # 401: it is up
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("waitress did not start in 60 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
