"""Run CNCF Distribution (Debian's ``docker-registry``) as a peer registry.

The client tests are written against a ``live_registry`` object; this module
provides one backed by the reference implementation, so that the tests
themselves can be checked against a registry that is known to work with
docker, podman, buildah and skopeo (``STEVEDORE_CLIENT_PEER=distribution``).

Distribution runs with htpasswd (bcrypt) auth, filesystem storage in a
temporary directory, deletes enabled, on a free 127.0.0.1 port.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

INSTALL_HINT = "run scripts/install-client-tools.sh (as root) to install it"


@dataclass
class LiveRegistry:
    """What the client tests need to know about a running registry."""

    host: str  # "127.0.0.1:PORT"
    url: str  # "http://127.0.0.1:PORT"
    username: str
    password: str
    flavor: str  # "stevedore" or "distribution"
    extra: dict = field(default_factory=dict)


def die_with_parent() -> None:
    """``preexec_fn``: the child gets SIGTERM when the test process dies, so a
    pytest killed before its teardown leaves no daemon behind (Linux only)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONFIG_TEMPLATE = """\
version: 0.1
log:
  level: {log_level}
  accesslog:
    disabled: {accesslog_disabled}
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: stevedore-client-tests-peer-secret
  headers:
    X-Content-Type-Options: [nosniff]
auth:
{auth}
"""

HTPASSWD_AUTH = """\
  htpasswd:
    realm: stevedore-peer
    path: {htpasswd}"""

# Distribution trusting another service's tokens (docker's token auth): `realm` is where clients get tokens, and
# a token is accepted when its `iss` and `aud` match and its signing key is in `rootcertbundle` (looked up by `kid`).
TOKEN_AUTH = """\
  token:
    realm: {realm}
    service: {service}
    issuer: {issuer}
    rootcertbundle: {rootcertbundle}"""


class DistributionRegistry:
    """A ``docker-registry serve`` process with its config and storage."""

    def __init__(
        self,
        workdir: Path,
        username: str = "stevedore-tester",
        password: str = "s3cret-Pa55word",
        log_level: str = "info",
        access_log: bool = True,
        token_auth: dict[str, str] | None = None,
    ):
        self.workdir = Path(workdir)
        self.username = username
        self.password = password
        self.log_level = log_level
        self.access_log = access_log
        self.token_auth = token_auth  # realm, service, issuer, rootcertbundle: trust that token service
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "registry.log"
        self._log_file = None

    # -- lifecycle -------------------------------------------------------
    def start(self, timeout: float = 30.0) -> LiveRegistry:
        for tool in ("docker-registry", "htpasswd"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"`{tool}` not found on PATH: {INSTALL_HINT}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        storage = self.workdir / "storage"
        storage.mkdir(exist_ok=True)
        htpasswd_path = self.workdir / "htpasswd"
        res = subprocess.run(
            ["htpasswd", "-Bbn", self.username, self.password],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if res.returncode != 0:
            raise RuntimeError(f"htpasswd failed: {res.stdout}\n{res.stderr}")
        htpasswd_path.write_text(res.stdout.strip() + "\n")

        last_err = ""
        for _attempt in range(3):  # the free port may be taken in between
            self.port = free_port()
            config = self.workdir / "config.yml"
            config.write_text(
                CONFIG_TEMPLATE.format(
                    log_level=self.log_level,
                    accesslog_disabled="false" if self.access_log else "true",
                    storage=storage,
                    port=self.port,
                    auth=TOKEN_AUTH.format(**self.token_auth)
                    if self.token_auth
                    else HTPASSWD_AUTH.format(htpasswd=htpasswd_path),
                )
            )
            self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
            env = dict(os.environ)
            # Make sure no ambient REGISTRY_* variables override the config.
            for k in list(env):
                if k.startswith("REGISTRY_"):
                    del env[k]
            self.proc = subprocess.Popen(
                ["docker-registry", "serve", str(config)],
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.workdir,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/", timeout=2)
                    # 200 without credentials would mean auth is off
                    raise RuntimeError("peer registry answered /v2/ without auth")
                except urllib.error.HTTPError as e:
                    if e.code == 401:
                        return self.live()
                    last_err = f"unexpected status {e.code} from /v2/"
                except (urllib.error.URLError, ConnectionError, OSError) as e:
                    last_err = str(e)
                time.sleep(0.1)
            self.stop()
        raise RuntimeError(f"docker-registry did not come up: {last_err}\n--- log ---\n{self.log_tail()}")

    def live(self) -> LiveRegistry:
        host = f"127.0.0.1:{self.port}"
        return LiveRegistry(
            host=host,
            url=f"http://{host}",
            username=self.username,
            password=self.password,
            flavor="distribution",
            extra={"log": str(self.log_path)},
        )

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> LiveRegistry:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":  # manual use: python peer_registry.py /tmp/dir
    import sys

    reg = DistributionRegistry(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/peer-registry"))
    live = reg.start()
    print(live, flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        reg.stop()
