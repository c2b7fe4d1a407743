"""Stevedore behind Debian's nginx with TLS: a CA and a server certificate made here, one waitress node whose public
URL is the proxy's https address, and nginx running deploy/nginx/stevedore.conf unprivileged, with its own prefix,
pid file, logs and temp folders.

The proxy listens on this machine's non-loopback address, not 127.0.0.1: docker treats every registry on 127.0.0.0/8
as insecure, skipping certificate verification (and never reading /etc/docker/certs.d for it), which would leave the
CA untested.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.integration.services import REPO_ROOT, WaitressProcess, free_port, stevedore_cli, write_ini

NGINX = "/usr/sbin/nginx"
SITE_TEMPLATE = Path(REPO_ROOT) / "deploy" / "nginx" / "stevedore.conf"
DOCKER_CERTS_D = Path("/etc/docker/certs.d")
USERNAME = "shipper"
PASSWORD = "over the wire securely"


def machine_address() -> str:
    """This machine's first global IPv4 address."""
    try:
        shown = subprocess.run(["ip", "-j", "-4", "addr", "show", "scope", "global"], capture_output=True, timeout=10)
        for interface in json.loads(shown.stdout or b"[]"):
            for address in interface.get("addr_info", []):
                if address.get("local") and not ipaddress.ip_address(address["local"]).is_loopback:
                    return str(address["local"])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # no packet is sent
        try:
            probe.connect(("192.0.2.1", 9))
            local = str(probe.getsockname()[0])
        except OSError:
            local = "127.0.0.1"
    if ipaddress.ip_address(local).is_loopback:
        pytest.fail(
            "the TLS tests need a non-loopback IPv4 address on this machine: docker never verifies certificates of "
            "registries on 127.0.0.0/8",
            pytrace=False,
        )
    return local


# --- certificates ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca_cert: Path  # PEM
    server_cert: Path  # PEM: the server certificate, then the CA (the chain nginx sends)
    server_key: Path  # PEM, unencrypted, 0600


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(folder: Path, address: str) -> Pki:
    """A CA made for this test, and a certificate it signs for `address`, 127.0.0.1 and localhost."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("Stevedore test CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    if address != "127.0.0.1":
        names.append(x509.IPAddress(ipaddress.ip_address(address)))
    server = (
        x509.CertificateBuilder()
        .subject_name(_name(address))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    pki = Pki(folder / "ca.crt", folder / "server.crt", folder / "server.key")
    pki.ca_cert.write_bytes(ca.public_bytes(pem))
    pki.server_cert.write_bytes(server.public_bytes(pem) + ca.public_bytes(pem))
    pki.server_key.touch(mode=0o600)
    pki.server_key.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return pki


# --- nginx -----------------------------------------------------------------------------------------------------------


def render_site(*, listen: str, server_name: str, upstreams: list[str], certificate: Path, key: Path) -> str:
    """deploy/nginx/stevedore.conf with its placeholders filled in, as the README's sed command fills them."""
    text = SITE_TEMPLATE.read_text()
    for placeholder, value in {
        "@LISTEN@": listen,
        "@SERVER_NAME@": server_name,
        "@UPSTREAM_SERVERS@": " ".join(f"server {upstream};" for upstream in upstreams),
        "@CERTIFICATE@": str(certificate),
        "@CERTIFICATE_KEY@": str(key),
    }.items():
        assert placeholder in text, f"{placeholder} is missing from {SITE_TEMPLATE}"
        text = text.replace(placeholder, value)
    left = re.findall(r"@[A-Z_]+@", text)
    assert not left, f"placeholders left unfilled: {left}"
    return text


class Nginx:
    """nginx in the foreground with a private prefix: its own nginx.conf wrapping the site file."""

    def __init__(self, base: Path, site: str) -> None:
        self.base = base
        self.log_path = base / "error.log"
        self.process: subprocess.Popen[bytes] | None = None
        base.mkdir(parents=True, exist_ok=True)
        (base / "stevedore.conf").write_text(site)
        temp = {name: base / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
        for folder in temp.values():
            folder.mkdir(exist_ok=True)
        # As root the workers would switch to nobody, who cannot reach pytest's 0700 temp folders.
        user = "user root root;\n" if os.geteuid() == 0 else ""
        (base / "nginx.conf").write_text(
            f"""{user}worker_processes 1;
pid {base}/nginx.pid;
error_log {self.log_path} info;
events {{ worker_connections 256; }}
http {{
    access_log {base}/access.log;
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    default_type application/octet-stream;
    include {base}/stevedore.conf;
}}
"""
        )

    def command(self, *extra: str) -> list[str]:
        if not os.access(NGINX, os.X_OK):
            pytest.fail(f"{NGINX} is missing: run scripts/install-client-tools.sh (as root)", pytrace=False)
        return [NGINX, "-p", str(self.base), "-c", str(self.base / "nginx.conf"), *extra]

    def check_config(self) -> None:
        tested = subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30)
        assert tested.returncode == 0, f"nginx -t refused the config:\n{tested.stderr}"

    def start(self, address: str, port: int) -> None:
        self.check_config()
        log = open(self.base / "stdout.log", "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            self.command("-g", "daemon off;"), stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited:\n{self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=1):
                return
            time.sleep(0.1)
        raise RuntimeError(f"nginx did not listen on {address}:{port}:\n{self.log_tail()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGQUIT)  # graceful: the master stops its workers
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # its own session: the group is nginx's alone
            process.wait(timeout=20)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# --- the registry behind the proxy -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsRegistry:
    """What DockerCLI needs (host, username, password), and the rest of the setup."""

    host: str  # ADDRESS:PORT of nginx
    url: str  # https://ADDRESS:PORT, the node's STEVEDORE_PUBLIC_URL
    address: str
    port: int
    username: str
    password: str
    pki: Pki
    node_url: str  # http://127.0.0.1:PORT of the waitress node, behind nginx
    nginx: Nginx
    node_log: Path
    ini_path: str

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRegistry]:
    base = tmp_path_factory.mktemp("tls")
    address = machine_address()
    proxy_port, node_port = free_port(), free_port()
    public_url = f"https://{address}:{proxy_port}"
    pki = make_pki(base / "pki", address)

    ini = str(base / "node.ini")
    write_ini(
        ini,
        database_url=f"sqlite:///{base}/stevedore.sqlite",
        storage_dir=str(base / "blobs"),
        port=node_port,
        # Waitress takes the client's address and scheme from nginx, and from nobody else.
        server_extra="trusted_proxy = 127.0.0.1\ntrusted_proxy_headers = x-forwarded-for x-forwarded-proto\n",
    )
    for args, stdin in (
        (("db", "upgrade"), None),
        (("user", "create", USERNAME, "--password-stdin"), f"{PASSWORD}\n"),
    ):
        result = stevedore_cli(ini, *args, stdin=stdin)
        assert result.returncode == 0, result.stderr
    node_log = base / "node.log"
    node = WaitressProcess(ini, node_port, str(node_log), env={"STEVEDORE_PUBLIC_URL": public_url})
    node.start()
    nginx = Nginx(
        base / "nginx",
        render_site(
            listen=f"{address}:{proxy_port}",
            server_name=address,
            upstreams=[f"127.0.0.1:{node_port}"],
            certificate=pki.server_cert,
            key=pki.server_key,
        ),
    )
    try:
        nginx.start(address, proxy_port)
        yield TlsRegistry(
            host=f"{address}:{proxy_port}",
            url=public_url,
            address=address,
            port=proxy_port,
            username=USERNAME,
            password=PASSWORD,
            pki=pki,
            node_url=f"http://127.0.0.1:{node_port}",
            nginx=nginx,
            node_log=node_log,
            ini_path=ini,
        )
    finally:
        nginx.stop()
        node.stop()


@pytest.fixture
def docker_trusts_ca(tls_registry: TlsRegistry) -> Iterator[Path]:
    """The test's CA in /etc/docker/certs.d/HOST:PORT/ca.crt (read by dockerd at each connection), removed after."""
    if os.geteuid() != 0:
        pytest.fail(f"writing {DOCKER_CERTS_D} needs root, as the private dockerd of the client tests", pytrace=False)
    folder = DOCKER_CERTS_D / tls_registry.host
    created_parent = not DOCKER_CERTS_D.exists()
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tls_registry.pki.ca_cert, folder / "ca.crt")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if created_parent:
            with contextlib.suppress(OSError):
                DOCKER_CERTS_D.rmdir()  # only if nothing else was put there meanwhile
