"""Stevedore behind nginx with TLS (deploy/nginx/stevedore.conf): docker and skopeo log in, push and pull over https
with a CA made by the test, the token realm and every Location carry the https public URL, and request bodies stream
through nginx to the node (proxy_request_buffering off) as chunked uploads."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import dxf
import pytest
from dxf import exceptions as dxf_exceptions

from tests.integration.clients import images
from tests.integration.clients.conftest import DockerCLI, Dockerd, require_tool, run
from tests.integration.services import stevedore_cli
from tests.integration.tls.conftest import SITE_TEMPLATE, TlsRegistry

pytestmark = [pytest.mark.clients, pytest.mark.server, pytest.mark.tls]

KIB = 1 << 10
MIB = 1 << 20
UNTRUSTED = re.compile(r"x509|certificate signed by unknown authority|unknown authority|certificate", re.I)


@pytest.fixture(scope="module")
def tls_dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    daemon = Dockerd(tmp_path_factory.mktemp("tls-dockerd"))
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


# --- plain HTTPS requests ------------------------------------------------------------------------------------------


class Https:
    """urllib over TLS, verifying nginx's certificate with the test's CA; redirects are left to the caller."""

    def __init__(self, registry: TlsRegistry) -> None:
        self.registry = registry
        context = registry.ssl_context()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: object, **kwargs: object) -> None:
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), NoRedirect)

    def __call__(
        self, method: str, url: str, data: object = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Message, bytes]:
        if not url.startswith("https://"):
            url = self.registry.url + url
        request = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # type: ignore[arg-type]
        try:
            with self.opener.open(request, timeout=60) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()

    def token(self, realm: str, service: str, scope: str) -> str:
        basic = base64.b64encode(f"{self.registry.username}:{self.registry.password}".encode()).decode()
        query = urllib.parse.urlencode({"service": service, "scope": scope})
        status, _, body = self(method="GET", url=f"{realm}?{query}", headers={"Authorization": f"Basic {basic}"})
        assert status == 200, body
        return str(json.loads(body)["token"])


def challenge_params(header: str) -> dict[str, str]:
    assert header.startswith("Bearer "), header
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def test_the_config_in_the_repo_is_what_registries_need() -> None:
    site = SITE_TEMPLATE.read_text()
    directives = {re.sub(r"\s+", " ", line.split("#")[0].strip()) for line in site.splitlines()}
    for needed in (
        "client_max_body_size 0;",
        "proxy_request_buffering off;",
        "proxy_buffering off;",
        "proxy_http_version 1.1;",
        "proxy_set_header Host $http_host;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "chunked_transfer_encoding on;",
        "ssl_protocols TLSv1.2 TLSv1.3;",
    ):
        assert needed in directives, f"{SITE_TEMPLATE} lacks `{needed}`"


def test_realm_and_locations_carry_the_https_public_url_and_a_chunked_upload_streams_through(
    tls_registry: TlsRegistry,
) -> None:
    https = Https(tls_registry)
    base = tls_registry.url
    status, headers, _ = https("GET", "/v2/")
    assert status == 401
    params = challenge_params(headers["WWW-Authenticate"])
    assert params["realm"] == f"{base}/v2/token", headers["WWW-Authenticate"]
    assert params["service"] == tls_registry.host

    name = "tls/streamed"
    scope = f"repository:{name}:pull,push"
    status, headers, _ = https("POST", f"/v2/{name}/blobs/uploads/", data=b"")
    assert status == 401  # refused by the node at its headers, through nginx
    assert challenge_params(headers["WWW-Authenticate"])["realm"] == f"{base}/v2/token"
    auth = {"Authorization": "Bearer " + https.token(params["realm"], params["service"], scope)}

    status, headers, body = https("POST", f"/v2/{name}/blobs/uploads/", data=b"", headers=auth)
    assert status == 202, body
    location = headers["Location"]
    assert location.startswith(f"{base}/v2/{name}/blobs/uploads/"), location

    # A PATCH with no Content-Length: urllib sends an iterable as Transfer-Encoding: chunked, nginx passes it on
    # unbuffered, and the node receives every byte.
    first = images.payload(3 * MIB + 17, "tls-first")
    second = images.payload(MIB, "tls-second")
    pieces = [first[i : i + 64 * KIB] for i in range(0, len(first), 64 * KIB)]
    status, headers, body = https(
        "PATCH", location, data=iter(pieces), headers={**auth, "Content-Type": "application/octet-stream"}
    )
    assert status == 202, body
    assert headers["Range"] == f"0-{len(first) - 1}"
    location = headers["Location"]
    assert location.startswith(f"{base}/v2/{name}/blobs/uploads/"), location

    digest = "sha256:" + hashlib.sha256(first + second).hexdigest()
    status, headers, body = https(
        "PUT",
        f"{location}{'&' if '?' in location else '?'}digest={digest}",
        data=second,
        headers={**auth, "Content-Type": "application/octet-stream", "Content-Length": str(len(second))},
    )
    assert status == 201, body
    assert headers["Location"] == f"{base}/v2/{name}/blobs/{digest}"

    status, headers, body = https("GET", headers["Location"], headers=auth)
    assert status == 200
    assert body == first + second


def test_nginx_hands_a_request_to_the_node_before_its_body_is_in(tls_registry: TlsRegistry) -> None:
    """proxy_request_buffering off: the node sees the headers of an upload at once, so its refusal (an upload without
    credentials, answered before any body is stored) reaches the client while the body is still being sent. nginx
    buffering the body would wait for all of it first."""
    context = tls_registry.ssl_context()
    with (
        socket.create_connection((tls_registry.address, tls_registry.port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=tls_registry.address) as tls,
    ):
        tls.sendall(
            (
                f"PATCH /v2/tls/unbuffered/blobs/uploads/00000000-0000-0000-0000-000000000000 HTTP/1.1\r\n"
                f"Host: {tls_registry.host}\r\nContent-Type: application/octet-stream\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        tls.sendall(b"10000\r\n" + b"x" * 0x10000 + b"\r\n")  # one 64 KiB chunk of a body that never ends
        tls.settimeout(10)
        started = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer:
            try:
                data = tls.recv(65536)
            except TimeoutError:
                pytest.fail("no answer before the body was complete: nginx buffers request bodies", pytrace=False)
            if not data:
                break
            answer += data
        waited = time.monotonic() - started
    status_line = answer.split(b"\r\n", 1)[0].decode()
    assert status_line.startswith("HTTP/1.1 401"), (status_line, waited)
    assert f'realm="{tls_registry.url}/v2/token"'.encode() in answer


def test_the_node_sees_the_client_address_nginx_saw_and_not_one_the_client_claims(tls_registry: TlsRegistry) -> None:
    """nginx sets X-Forwarded-For to the address it saw (a client's own header is replaced), and waitress, trusting
    127.0.0.1 (trusted_proxy), gives it to the app: the audit log records the client, not the proxy."""
    https = Https(tls_registry)
    wrong = base64.b64encode(f"{tls_registry.username}:not the password".encode()).decode()
    status, _, _ = https("GET", "/v2/", headers={"Authorization": f"Basic {wrong}", "X-Forwarded-For": "203.0.113.9"})
    assert status == 401
    listed = stevedore_cli(str(tls_registry.ini_path), "audit", "list", "--action", "login_failed", "--limit", "5")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert rows and rows[0][4] == tls_registry.address, listed.stdout
    assert "203.0.113.9" not in listed.stdout and "127.0.0.1" not in listed.stdout, listed.stdout


def test_no_tls_below_1_2(tls_registry: TlsRegistry) -> None:
    context = tls_registry.ssl_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    connection = http.client.HTTPSConnection(tls_registry.address, tls_registry.port, context=context, timeout=30)
    try:
        connection.request("GET", "/v2/")
        response = connection.getresponse()
        assert response.status == 401
        assert connection.sock.version() == "TLSv1.2"  # type: ignore[union-attr]
    finally:
        connection.close()


# --- docker ----------------------------------------------------------------------------------------------------------


def test_docker_login_push_and_pull_over_https_with_the_ca_in_certs_d(
    tls_registry: TlsRegistry, tls_dockerd: Dockerd, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    docker = DockerCLI(tls_dockerd, tmp_path / "docker-config", tls_registry)
    # Without the CA, docker (which verifies a registry off the loopback) refuses the certificate.
    refused = docker.login(check=False)
    assert refused.rc != 0 and UNTRUSTED.search(refused.err + refused.out), refused.describe()

    docker_trusts_ca = request.getfixturevalue("docker_trusts_ca")
    assert (docker_trusts_ca / "ca.crt").exists()
    login = docker.login()
    assert "Login Succeeded" in login.out, login.describe()

    ref = f"{tls_registry.host}/tls/docker:v1"
    archive = images.docker_archive(tmp_path / "image.tar", [2 * MIB, 64 * KIB], "tls-docker", [ref])
    docker("load", "-i", str(archive.path), timeout=300)
    docker("push", ref, timeout=300)
    docker("rmi", ref)
    docker("pull", ref, timeout=300)
    assert docker.image_id(ref) == archive.image_id

    # Through nginx, as its access log shows (it logs a request when it is finished, a streamed PATCH sometimes late).
    patched = re.compile(r'"PATCH /v2/tls/docker/blobs/uploads/\S+ HTTP/1\.1" 202')
    pulled = re.compile(r'"GET /v2/tls/docker/blobs/sha256:\w+ HTTP/1\.1" 200')
    access_log = tls_registry.nginx.base / "access.log"
    deadline = time.monotonic() + 15
    while not (patched.search(log := access_log.read_text()) and pulled.search(log)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert patched.search(log) and pulled.search(log), log[-3000:]


# --- skopeo ----------------------------------------------------------------------------------------------------------


def test_skopeo_copies_both_ways_over_https_with_a_cert_dir(tls_registry: TlsRegistry, tmp_path: Path) -> None:
    skopeo = require_tool("skopeo")
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    registries = tmp_path / "registries.conf"
    registries.write_text('unqualified-search-registries = []\nshort-name-mode = "disabled"\n')
    cert_dir = tmp_path / "certs"
    cert_dir.mkdir()
    (cert_dir / "ca.crt").write_bytes(tls_registry.pki.ca_cert.read_bytes())
    creds = f"{tls_registry.username}:{tls_registry.password}"
    env = {"TMPDIR": str(tmp_path), "REGISTRY_AUTH_FILE": str(tmp_path / "no-auth.json"), "PATH": "/usr/bin:/bin"}
    common = [skopeo, "--policy", str(policy), "--registries-conf", str(registries)]

    layout = tmp_path / "layout"
    image = images.oci_layout(layout, [MIB + 5, 4 * KIB], "tls-skopeo", tag="v1")
    remote = f"docker://{tls_registry.host}/tls/skopeo:v1"

    refused = run(
        [*common, "copy", "--dest-creds", creds, f"oci:{layout}:v1", remote], env=env, check=False, redact=(creds,)
    )
    assert refused.rc != 0 and UNTRUSTED.search(refused.err), refused.describe()

    digest_file = tmp_path / "pushed.digest"
    run(
        [
            *common,
            "copy",
            "--digestfile",
            str(digest_file),
            "--dest-cert-dir",
            str(cert_dir),
            "--dest-creds",
            creds,
            f"oci:{layout}:v1",
            remote,
        ],
        env=env,
        redact=(creds,),
        timeout=300,
    )
    assert digest_file.read_text().strip() == image.digest

    raw = run([*common, "inspect", "--raw", "--cert-dir", str(cert_dir), "--creds", creds, remote], env=env)
    assert hashlib.sha256(raw.stdout).hexdigest() == image.digest.split(":", 1)[1]

    back = tmp_path / "back"
    run(
        [*common, "copy", "--src-cert-dir", str(cert_dir), "--src-creds", creds, remote, f"oci:{back}:v1"],
        env=env,
        redact=(creds,),
        timeout=300,
    )
    for digest in image.layer_digests:
        assert images.read_layout_blob(back, digest) == images.read_layout_blob(layout, digest)


# --- python-dxf ------------------------------------------------------------------------------------------------------


def test_python_dxf_which_sends_no_credentials_over_plain_http_works_over_https(
    tls_registry: TlsRegistry, tmp_path: Path
) -> None:
    """python-dxf refuses to authenticate to a registry over plain HTTP (DXFAuthInsecureError); behind nginx with TLS
    it logs in through our token endpoint, pushes a blob and a manifest, and pulls them back, verifying the CA."""

    def login(client: object, response: object) -> None:
        client.authenticate(tls_registry.username, tls_registry.password, response=response)  # type: ignore[attr-defined]

    plain = dxf.DXF(tls_registry.node_url.removeprefix("http://"), "tls/dxf", login, insecure=True)
    with pytest.raises(dxf_exceptions.DXFAuthInsecureError):
        plain.list_aliases()

    client = dxf.DXF(tls_registry.host, "tls/dxf", login, tlsverify=str(tls_registry.pki.ca_cert))
    data = images.payload(MIB + 3, "tls-dxf")
    blob = tmp_path / "blob"
    blob.write_bytes(data)
    digest = client.push_blob(str(blob))
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    client.set_alias("v1", digest)
    assert client.list_aliases() == ["v1"]
    assert client.get_alias("v1") == [digest]
    assert b"".join(client.pull_blob(digest)) == data
