"""Several Stevedore nodes: one PostgreSQL database (Debian's packages, started by the tests), one bucket on moto's S3
server (a real HTTP endpoint), two waitress nodes sharing both and the same secret and token signing keys, and
Debian's nginx round-robin in front of them, running deploy/nginx/stevedore.conf over plain HTTP on loopback (docker
treats registries on 127.0.0.0/8 as insecure, so no TLS is needed here; tests/integration/tls covers TLS).

No node has a public URL: each builds its URLs (the token realm, Location headers) from the Host the client used,
which nginx passes on, so the same nodes answer through the proxy and directly.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stevedore.adapters.sql.engine import make_engine
from stevedore.adapters.token_keys import generate_signing_key_pem
from tests.integration.s3.moto_server import DUMMY_CREDENTIALS, MotoServer, moto_server  # noqa: F401 - a fixture
from tests.integration.services import WaitressProcess, free_port, write_ini
from tests.integration.tls.conftest import Nginx, render_site

USERNAME = "fleet"
PASSWORD = "many nodes one registry"
PREFIX = "registry"
# The directives registries need from a proxy (the list): the rendered site must keep every one.
REGISTRY_DIRECTIVES = (
    "client_max_body_size 0;",
    "proxy_request_buffering off;",
    "proxy_http_version 1.1;",
    "proxy_set_header Host $http_host;",
)


def http_site(*, listen: str, upstreams: list[str]) -> str:
    """deploy/nginx/stevedore.conf rendered as the README says, then with TLS taken out (the `ssl` listen flag and
    the ssl_* lines): every other directive is the deployed file's."""
    rendered = render_site(
        listen=listen, server_name="localhost", upstreams=upstreams, certificate=Path("unused"), key=Path("unused")
    )
    site = re.sub(r"^\s*ssl_\S+ .*;\n", "", rendered, flags=re.M)
    site = site.replace(f"listen {listen} ssl;", f"listen {listen};")
    assert "ssl" not in re.sub(r"#.*", "", site).replace("stevedore_tls", ""), site
    for directive in REGISTRY_DIRECTIVES:
        assert directive in site, directive
    return site


@dataclass(frozen=True)
class Endpoint:
    """What DockerCLI and Skopeo need of a registry: a host, a username and a password."""

    host: str
    username: str = USERNAME
    password: str = PASSWORD

    @property
    def url(self) -> str:
        return f"http://{self.host}"


@dataclass(frozen=True)
class Fleet:
    proxy: Endpoint  # nginx, round-robin over the nodes
    nodes: tuple[Endpoint, Endpoint]
    database_url: str
    bucket: str
    prefix: str
    moto: MotoServer
    env: dict[str, str]  # the nodes' shared environment (keys, storage, credentials)
    ini_path: str
    nginx: Nginx
    node_logs: tuple[Path, Path]
    processes: tuple[WaitressProcess, WaitressProcess]

    def store(self):
        """An S3BlobStore on the fleet's bucket and prefix, for checks."""
        return self.moto.store(self.bucket, prefix=self.prefix)

    def kill(self, index: int) -> None:
        """kill -9 of node `index`: no cleanup of any kind runs. `restart(index)` brings it back."""
        process = self.processes[index].process
        assert process is not None and process.poll() is None
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def restart(self, index: int) -> None:
        """Start node `index` again on the same settings, port and log (after `kill`)."""
        process = self.processes[index].process
        assert process is None or process.poll() is not None, "the node is still running"
        self.processes[index].start()


def log_requests(ini: str) -> None:
    """Each node logs its requests (stevedore.requests at INFO), so a test can tell which node served what."""
    text = Path(ini).read_text().replace("[loggers]\nkeys = root\n", "[loggers]\nkeys = root, requests\n")
    text += "\n[logger_requests]\nlevel = INFO\nhandlers =\nqualname = stevedore.requests\n"
    Path(ini).write_text(text)


def served(log: Path, pattern: str) -> int:
    """How many requests a node's log shows whose line matches `pattern` (a regular expression)."""
    return sum(
        1
        for line in log.read_text(errors="replace").splitlines()
        if "[stevedore.requests]" in line and re.search(pattern, line)
    )


def cli(ini: str, env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stevedore.cli", "--config", ini, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


@pytest.fixture(scope="module")
def fleet(postgres_server, moto_server, tmp_path_factory) -> Iterator[Fleet]:  # noqa: F811
    base = tmp_path_factory.mktemp("scaleout")
    name = f"scaleout_{os.getpid()}_{base.name.replace('-', '_')}"
    admin = make_engine(postgres_server.url())
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE stevedore_template")
    database_url = postgres_server.url(name)
    bucket = moto_server.new_bucket()
    env = {
        **DUMMY_CREDENTIALS,
        "AWS_DEFAULT_REGION": "us-east-1",
        "STEVEDORE_DATABASE_URL": database_url,
        "STEVEDORE_STORAGE_URL": f"s3://{bucket}/{PREFIX}",
        "STEVEDORE_S3_ENDPOINT_URL": moto_server.endpoint_url,
        # Every node of one installation shares these: tokens and page sessions signed by one node verify on all.
        "STEVEDORE_SECRET_KEY": "scaleout-shared-secret-" + os.urandom(16).hex(),
        "STEVEDORE_TOKEN_SIGNING_KEYS": generate_signing_key_pem().decode(),
    }
    ports = (free_port(), free_port())
    processes: list[WaitressProcess] = []
    logs = []
    ini = ""
    for index, port in enumerate(ports):
        folder = base / f"node{index}"
        folder.mkdir()
        ini = str(folder / "node.ini")
        write_ini(
            ini,
            database_url=database_url,
            storage_dir=str(folder / "unused-blobs"),  # STEVEDORE_STORAGE_URL (s3://) wins
            port=port,
            extra="stevedore.s3_region = us-east-1\nstevedore.s3_addressing = path\nstevedore.s3_part_size_mib = 5\n",
            server_extra="trusted_proxy = 127.0.0.1\ntrusted_proxy_headers = x-forwarded-for x-forwarded-proto\n",
        )
        log_requests(ini)
        logs.append(folder / "server.log")
        processes.append(WaitressProcess(ini, port, str(logs[-1]), env=env))
    created = cli(ini, env, "user", "create", USERNAME, "--password-stdin", stdin=f"{PASSWORD}\n")
    assert created.returncode == 0, created.stderr
    proxy_port = free_port()
    nginx = Nginx(
        base / "nginx",
        http_site(listen=f"127.0.0.1:{proxy_port}", upstreams=[f"127.0.0.1:{port}" for port in ports]),
    )
    try:
        for process in processes:
            process.start()
        nginx.start("127.0.0.1", proxy_port)
        yield Fleet(
            proxy=Endpoint(f"127.0.0.1:{proxy_port}"),
            nodes=(Endpoint(f"127.0.0.1:{ports[0]}"), Endpoint(f"127.0.0.1:{ports[1]}")),
            database_url=database_url,
            bucket=bucket,
            prefix=PREFIX,
            moto=moto_server,
            env=env,
            ini_path=ini,
            nginx=nginx,
            node_logs=(logs[0], logs[1]),
            processes=(processes[0], processes[1]),
        )
    finally:
        nginx.stop()
        for process in processes:
            process.stop()
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()
