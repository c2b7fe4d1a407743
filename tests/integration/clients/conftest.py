"""Fixtures for the real-client end-to-end tests (docker, podman, buildah, skopeo).

``live_registry`` is the registry under test. By default it is Stevedore
(the ``stevedore_server`` fixture from tests/integration/conftest.py); with
``STEVEDORE_CLIENT_PEER=distribution`` it is CNCF Distribution, which checks
the tests themselves against the reference implementation.

Every client runs with private state in temporary directories (its own
dockerd, containers-storage roots, auth files), so nothing on the machine is
touched and nothing is ever fetched from the internet.

A missing client is a failure, never a skip: run scripts/install-client-tools.sh.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from .images import RegistryHTTP
from .peer_registry import DistributionRegistry, die_with_parent

INSTALL_HINT = "run scripts/install-client-tools.sh (as root) to install the client tools"
DOCKER = "/usr/bin/docker"  # docker.io 20.10 CLI; /usr/local/bin/docker has no engine
DEFAULT_TIMEOUT = 180
log = logging.getLogger("stevedore.clients")


def pytest_configure(config):
    config.addinivalue_line("markers", "clients: end-to-end tests driving real OCI/Docker clients")


# ---------------------------------------------------------------------------
# running commands
# ---------------------------------------------------------------------------


@dataclass
class Result:
    cmd: list[str]
    rc: int
    stdout: bytes
    stderr: bytes
    seconds: float

    @property
    def out(self) -> str:
        return self.stdout.decode(errors="replace")

    @property
    def err(self) -> str:
        return self.stderr.decode(errors="replace")

    def describe(self, limit: int = 6000) -> str:
        def cut(s: str) -> str:
            return s if len(s) <= limit else s[: limit // 2] + "\n[...]\n" + s[-limit // 2 :]

        return (
            f"$ {' '.join(self.cmd)}\n(exit {self.rc} after {self.seconds:.1f}s)\n"
            f"--- stdout ---\n{cut(self.out)}\n--- stderr ---\n{cut(self.err)}"
        )


def run(
    cmd: list[str],
    *,
    env: dict | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
    input: bytes | None = None,
    cwd: str | Path | None = None,
    redact: tuple[str, ...] = (),
) -> Result:
    """Run ``cmd``; on a non-zero exit (with ``check``) or a timeout, fail
    the test with the command's stdout and stderr."""
    cmd = [str(c) for c in cmd]
    shown = [("***" if c in redact else c) for c in cmd]
    t0 = time.monotonic()
    try:
        p = subprocess.run(
            cmd,
            env=env,
            timeout=timeout,
            input=input,
            cwd=cwd,
            capture_output=True,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        res = Result(shown, -1, e.stdout or b"", e.stderr or b"", time.monotonic() - t0)
        pytest.fail(f"command timed out after {timeout}s\n{res.describe()}", pytrace=False)
    except FileNotFoundError as e:
        pytest.fail(f"{cmd[0]} not found ({e}): {INSTALL_HINT}", pytrace=False)
    res = Result(shown, p.returncode, p.stdout, p.stderr, time.monotonic() - t0)
    log.info("exit %s after %.2fs: %s", res.rc, res.seconds, " ".join(shown))
    if check and res.rc != 0:
        pytest.fail(f"command failed\n{res.describe()}", pytrace=False)
    return res


def require_tool(path_or_name: str) -> str:
    found = path_or_name if os.path.isabs(path_or_name) else shutil.which(path_or_name)
    if not found or not os.access(found, os.X_OK):
        pytest.fail(f"required client tool `{path_or_name}` is missing: {INSTALL_HINT}", pytrace=False)
    return found


def unique_repo_name(node_name: str, suffix: str = "") -> str:
    """A repository name unique to one test (a valid distribution name)."""
    base = re.sub(r"[^a-z0-9]+", "-", node_name.lower()).strip("-")
    name = f"clients/{base}{('-' + suffix) if suffix else ''}"
    return name[:200]


@pytest.fixture
def repo_name(request):
    """``repo_name(suffix="")``: a repository name unique to this test, so
    tests sharing the session's registry never collide."""
    return lambda suffix="": unique_repo_name(request.node.name, suffix)


# ---------------------------------------------------------------------------
# the registry under test
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def live_registry(request, tmp_path_factory):
    peer = os.environ.get("STEVEDORE_CLIENT_PEER", "").strip().lower()
    if peer == "distribution":
        reg = DistributionRegistry(tmp_path_factory.mktemp("distribution"))
        try:
            live = reg.start()
        except RuntimeError as e:
            pytest.fail(f"could not start the Distribution peer registry: {e}", pytrace=False)
        try:
            yield live
        finally:
            reg.stop()
    elif peer in ("", "stevedore"):
        yield request.getfixturevalue("stevedore_server")
    else:
        pytest.fail(f"STEVEDORE_CLIENT_PEER={peer!r}: expected 'distribution' or unset", pytrace=False)


@pytest.fixture
def registry_http(live_registry):
    """A urllib client for the registry (Basic or Bearer, as challenged)."""
    return RegistryHTTP(live_registry.url, live_registry.username, live_registry.password)


# ---------------------------------------------------------------------------
# docker: a private dockerd for the session, a fresh DOCKER_CONFIG per test
# ---------------------------------------------------------------------------


class Dockerd:
    def __init__(self, base: Path):
        self.base = base
        # exec-root holds containerd's sockets: keep its path short (108 bytes max)
        self.short = Path(tempfile.mkdtemp(prefix="sdk", dir="/tmp"))
        self.sock = self.short / "d.sock"
        self.data_root = base / "data"
        self.exec_root = self.short / "x"
        self.pidfile = self.short / "d.pid"
        self.log_path = base / "dockerd.log"
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    def start(self, timeout: float = 90.0) -> None:
        dockerd = require_tool(shutil.which("dockerd") or "/usr/sbin/dockerd")
        require_tool(DOCKER)
        self.data_root.mkdir(parents=True, exist_ok=True)
        self.exec_root.mkdir(parents=True, exist_ok=True)
        cfg = self.base / "daemon.json"
        cfg.write_text("{}")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                dockerd,
                "--config-file",
                str(cfg),
                "--storage-driver=vfs",
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--data-root",
                str(self.data_root),
                "--exec-root",
                str(self.exec_root),
                "--pidfile",
                str(self.pidfile),
                "-H",
                self.host,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        env = self.env(self.base / "probe-config")
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                p = subprocess.run(
                    [DOCKER, "info", "--format", "{{.ServerVersion}}"], env=env, capture_output=True, timeout=15
                )
                if p.returncode == 0:
                    return
                last = p.stderr.decode(errors="replace")
            except subprocess.TimeoutExpired:
                last = "docker info timed out"
            time.sleep(0.25)
        self.stop()
        pytest.fail(f"dockerd did not become ready: {last}\n--- dockerd log ---\n{self.log_tail()}", pytrace=False)

    def env(self, config_dir: Path) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_HOST"] = self.host
        env["DOCKER_CONFIG"] = str(config_dir)
        return env

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                # dockerd runs in its own session: the group is ours alone
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.data_root, ignore_errors=True)
        shutil.rmtree(self.short, ignore_errors=True)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory):
    d = Dockerd(tmp_path_factory.mktemp("dockerd"))
    d.start()
    try:
        yield d
    finally:
        d.stop()


class DockerCLI:
    """``/usr/bin/docker`` against the private daemon with its own DOCKER_CONFIG."""

    def __init__(self, daemon: Dockerd, config_dir: Path, registry):
        self.daemon = daemon
        self.config_dir = config_dir
        self.registry = registry
        config_dir.mkdir(parents=True, exist_ok=True)

    def __call__(
        self, *args, check: bool = True, timeout: float = DEFAULT_TIMEOUT, input: bytes | None = None
    ) -> Result:
        return run(
            [DOCKER, *args],
            env=self.daemon.env(self.config_dir),
            check=check,
            timeout=timeout,
            input=input,
            redact=(self.registry.password,),
        )

    def fails(self, *args, timeout: float = DEFAULT_TIMEOUT, input: bytes | None = None) -> Result:
        res = self(*args, check=False, timeout=timeout, input=input)
        assert res.rc != 0, f"docker command was expected to fail but succeeded\n{res.describe()}"
        return res

    def login(self, password: str | None = None, check: bool = True) -> Result:
        pw = self.registry.password if password is None else password
        return self(
            "login",
            "--username",
            self.registry.username,
            "--password-stdin",
            self.registry.host,
            input=pw.encode(),
            check=check,
            timeout=60,
        )

    def config(self) -> dict:
        p = self.config_dir / "config.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def image_id(self, ref: str) -> str:
        return self("image", "inspect", "--format", "{{.Id}}", ref).out.strip()


@pytest.fixture
def docker(dockerd, live_registry, tmp_path):
    return DockerCLI(dockerd, tmp_path / "docker-config", live_registry)


# ---------------------------------------------------------------------------
# podman / buildah: containers-storage in tmp dirs, own auth file and configs
# ---------------------------------------------------------------------------


class ContainersTool:
    """podman or buildah with vfs storage under ``base`` and an auth file."""

    def __init__(self, binary: str, base: Path, registry, shared: Path):
        self.binary = require_tool(binary)
        self.name = Path(binary).name
        self.registry = registry
        self.base = base
        self.root = base / "root"
        # podman refuses a runroot longer than 50 characters: keep it short
        self.short = Path(tempfile.mkdtemp(prefix=f"s{self.name[0]}", dir="/tmp"))
        self.runroot = self.short / "run"
        self.tmpdir = self.short / "tmp"
        for d in (self.root, self.runroot, self.tmpdir):
            d.mkdir(parents=True, exist_ok=True)
        self.authfile = base / "auth.json"
        self.policy = shared / "policy.json"
        self.registries_conf = shared / "registries.conf"

    def cleanup(self) -> None:
        shutil.rmtree(self.short, ignore_errors=True)

    def global_args(self) -> list[str]:
        args = ["--root", str(self.root), "--runroot", str(self.runroot), "--storage-driver=vfs"]
        if self.name == "podman":
            args += ["--cgroup-manager=cgroupfs", "--events-backend=none", "--tmpdir", str(self.tmpdir)]
        return args

    def env(self) -> dict:
        env = dict(os.environ)
        env["REGISTRY_AUTH_FILE"] = str(self.authfile)
        env["CONTAINERS_REGISTRIES_CONF"] = str(self.registries_conf)
        env["TMPDIR"] = str(self.tmpdir)
        env.pop("CONTAINERS_STORAGE_CONF", None)
        return env

    def __call__(
        self, *args, check: bool = True, timeout: float = DEFAULT_TIMEOUT, input: bytes | None = None
    ) -> Result:
        return run(
            [self.binary, *self.global_args(), *args],
            env=self.env(),
            check=check,
            timeout=timeout,
            input=input,
            redact=(self.registry.password,),
        )

    def fails(self, *args, timeout: float = DEFAULT_TIMEOUT) -> Result:
        res = self(*args, check=False, timeout=timeout)
        assert res.rc != 0, f"{self.name} command was expected to fail but succeeded\n{res.describe()}"
        return res

    def remote_args(self) -> list[str]:
        """Flags for push/pull against the (plain HTTP) registry."""
        return ["--tls-verify=false", "--authfile", str(self.authfile), "--signature-policy", str(self.policy)]

    def login(self, password: str | None = None, check: bool = True) -> Result:
        pw = self.registry.password if password is None else password
        return self(
            "login",
            "--tls-verify=false",
            "--authfile",
            str(self.authfile),
            "--username",
            self.registry.username,
            "--password-stdin",
            self.registry.host,
            input=pw.encode(),
            check=check,
            timeout=60,
        )

    def push(self, local: str, remote: str, *extra: str) -> Result:
        return self("push", *self.remote_args(), *extra, local, f"docker://{remote}")

    def pull(self, remote: str, *extra: str, check: bool = True) -> Result:
        return self("pull", *self.remote_args(), *extra, remote, check=check)


@pytest.fixture(scope="session")
def containers_conf_dir(tmp_path_factory, live_registry) -> Path:
    """registries.conf marking the registry insecure (plain HTTP), and a
    permissive signature policy, shared by podman, buildah and skopeo."""
    d = tmp_path_factory.mktemp("containers-conf")
    (d / "registries.conf").write_text(
        "unqualified-search-registries = []\n"
        'short-name-mode = "disabled"\n\n'
        "[[registry]]\n"
        f'location = "{live_registry.host}"\n'
        "insecure = true\n"
    )
    (d / "policy.json").write_text(
        json.dumps(
            {
                "default": [{"type": "insecureAcceptAnything"}],
                "transports": {"docker-daemon": {"": [{"type": "insecureAcceptAnything"}]}},
            }
        )
    )
    return d


@pytest.fixture
def podman(tmp_path, live_registry, containers_conf_dir):
    tool = ContainersTool("podman", tmp_path / "podman", live_registry, containers_conf_dir)
    yield tool
    tool.cleanup()


@pytest.fixture
def buildah(tmp_path, live_registry, containers_conf_dir):
    tool = ContainersTool("buildah", tmp_path / "buildah", live_registry, containers_conf_dir)
    yield tool
    tool.cleanup()


# ---------------------------------------------------------------------------
# skopeo
# ---------------------------------------------------------------------------


class Skopeo:
    def __init__(self, registry, conf_dir: Path, tmp: Path):
        self.binary = require_tool("skopeo")
        self.registry = registry
        self.conf_dir = conf_dir
        self.tmp = tmp
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.creds = f"{registry.username}:{registry.password}"

    def __call__(self, *args, check: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Result:
        env = dict(os.environ)
        env["TMPDIR"] = str(self.tmp)
        # an empty auth file: only the explicit --creds count
        env["REGISTRY_AUTH_FILE"] = str(self.tmp / "no-auth.json")
        return run(
            [
                self.binary,
                "--policy",
                str(self.conf_dir / "policy.json"),
                "--registries-conf",
                str(self.conf_dir / "registries.conf"),
                *args,
            ],
            env=env,
            check=check,
            timeout=timeout,
            redact=(self.creds,),
        )

    def fails(self, *args, timeout: float = DEFAULT_TIMEOUT) -> Result:
        res = self(*args, check=False, timeout=timeout)
        assert res.rc != 0, f"skopeo command was expected to fail but succeeded\n{res.describe()}"
        return res

    def ref(self, name_and_ref: str) -> str:
        return f"docker://{self.registry.host}/{name_and_ref}"

    def src(self) -> list[str]:
        return ["--src-tls-verify=false", "--src-creds", self.creds]

    def dest(self) -> list[str]:
        return ["--dest-tls-verify=false", "--dest-creds", self.creds]

    def remote(self) -> list[str]:
        """For single-image commands (inspect, list-tags, delete)."""
        return ["--tls-verify=false", "--creds", self.creds]

    def inspect_raw(self, name_and_ref: str) -> bytes:
        return self("inspect", *self.remote(), "--raw", self.ref(name_and_ref)).stdout

    def inspect(self, name_and_ref: str, *extra: str) -> dict:
        return json.loads(self("inspect", *self.remote(), *extra, self.ref(name_and_ref)).out)


@pytest.fixture
def skopeo(tmp_path, live_registry, containers_conf_dir) -> Skopeo:
    return Skopeo(live_registry, containers_conf_dir, tmp_path / "skopeo")
