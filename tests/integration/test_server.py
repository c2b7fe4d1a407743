"""A real waitress server over HTTP: uploads that move between processes, clients that vanish, flat memory."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import socket
import time
from dataclasses import dataclass

import pytest

from tests.integration.services import LiveRegistry, WaitressProcess, free_port, stevedore_cli, write_ini

pytestmark = pytest.mark.server

MiB = 1024 * 1024


class Client:
    def __init__(self, host: str, username: str, password: str) -> None:
        self.host = host
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self.auth = {"Authorization": f"Basic {token}"}

    def request(self, method, path, body=None, headers=None):
        connection = http.client.HTTPConnection(self.host, timeout=120)
        try:
            connection.request(method, path, body=body, headers={**self.auth, **(headers or {})})
            response = connection.getresponse()
            return response.status, response.headers, response.read()  # case-insensitive, like HTTP
        finally:
            connection.close()

    def stream_get(self, path):
        """Read a body in chunks, returning (status, sha256 hex, length) without holding it."""
        connection = http.client.HTTPConnection(self.host, timeout=300)
        try:
            connection.request("GET", path, headers=self.auth)
            response = connection.getresponse()
            hasher, length = hashlib.sha256(), 0
            while chunk := response.read(MiB):
                hasher.update(chunk)
                length += len(chunk)
            return response.status, hasher.hexdigest(), length
        finally:
            connection.close()


def path_of(location: str) -> str:
    """The path of an absolute Location."""
    return "/" + location.split("://", 1)[1].split("/", 1)[1]


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """Two app processes on one database and one blob folder, like two hosts behind a load balancer."""
    base = tmp_path_factory.mktemp("nodes")
    database = f"sqlite:///{base}/shared.sqlite"
    servers = []
    try:
        for index in range(2):
            port = free_port()
            ini = str(base / f"node{index}.ini")
            write_ini(ini, database_url=database, storage_dir=str(base / "blobs"), port=port)
            if index == 0:
                assert stevedore_cli(ini, "db", "upgrade").returncode == 0
                created = stevedore_cli(
                    ini, "user", "create", "nodeuser", "--password-stdin", stdin="two nodes one db\n"
                )
                assert created.returncode == 0, created.stderr
            server = WaitressProcess(ini, port, str(base / f"node{index}.log"))
            server.start()
            servers.append(server)
        yield [Client(f"127.0.0.1:{s.port}", "nodeuser", "two nodes one db") for s in servers]
    finally:
        for server in servers:
            server.stop()


def test_upload_begun_on_one_process_is_finished_on_another(two_nodes):
    first, second = two_nodes
    data = os.urandom(3 * MiB + 17)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    status, headers, _ = first.request("POST", "/v2/scale/out/blobs/uploads/")
    assert status == 202
    upload = path_of(headers["Location"])
    status, headers, _ = first.request(
        "PATCH",
        upload,
        data[: 2 * MiB],
        {"Content-Range": f"0-{2 * MiB - 1}", "Content-Type": "application/octet-stream"},
    )
    assert status == 202 and headers["Range"] == f"0-{2 * MiB - 1}"

    # The second process has never seen this upload: its state lives in the database and the folder.
    status, headers, _ = second.request("GET", upload)
    assert status == 204 and headers["Range"] == f"0-{2 * MiB - 1}"
    status, headers, _ = second.request(
        "PATCH", upload, data[2 * MiB : 3 * MiB], {"Content-Range": f"{2 * MiB}-{3 * MiB - 1}"}
    )
    assert status == 202
    status, headers, _ = first.request("PUT", f"{upload}?digest={digest}", data[3 * MiB :])
    assert status == 201, headers
    assert headers["Docker-Content-Digest"] == digest

    for node in (first, second):
        status, received, length = node.stream_get(f"/v2/scale/out/blobs/{digest}")
        assert (status, "sha256:" + received, length) == (200, digest, len(data))


def test_client_that_disconnects_mid_upload_leaves_nothing(two_nodes):
    node = two_nodes[0]
    data = os.urandom(4 * MiB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status, headers, _ = node.request("POST", "/v2/vanishing/client/blobs/uploads/")
    upload = path_of(headers["Location"])

    # Promise 4 MiB, send 1 MiB, hang up.
    host, port = node.host.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = (
            f"PUT {upload}?digest={digest} HTTP/1.1\r\nHost: {node.host}\r\n"
            f"Authorization: {node.auth['Authorization']}\r\nContent-Length: {len(data)}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        sock.sendall(head.encode() + data[:MiB])

    status, headers, _ = node.request("HEAD", f"/v2/vanishing/client/blobs/{digest}")
    assert status == 404
    # The body streams to the app, which may still be noticing the hang-up (and putting the upload back as it was).
    deadline = time.monotonic() + 10
    while True:
        status, headers, _ = node.request("GET", upload)
        if (status, headers.get("Range")) == (204, "0-0") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status == 204 and headers["Range"] == "0-0"  # the upload is intact and still usable
    status, headers, _ = node.request("PUT", f"{upload}?digest={digest}", data)
    assert status == 201


def test_oversized_manifest_is_refused_from_its_content_length_with_the_registry_error(two_nodes):
    node = two_nodes[0]
    body = b"{" + b" " * (5 * MiB) + b"}"
    status, headers, payload = node.request(
        "PUT", "/v2/big/manifest/manifests/latest", body, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    )
    assert status == 413
    assert headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert json.loads(payload)["errors"][0]["code"] == "SIZE_INVALID"


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_large_layer_pushes_and_pulls_with_flat_server_memory(tmp_path_factory):
    """256 MiB through a streamed PATCH and back: the server's peak memory grows by far less than the layer."""
    base = tmp_path_factory.mktemp("memory")
    port = free_port()
    ini = str(base / "memory.ini")
    write_ini(ini, database_url=f"sqlite:///{base}/db.sqlite", storage_dir=str(base / "blobs"), port=port)
    assert stevedore_cli(ini, "db", "upgrade").returncode == 0
    assert stevedore_cli(ini, "user", "create", "big", "--password-stdin", stdin="big layers here\n").returncode == 0
    server = WaitressProcess(ini, port, str(base / "server.log"))
    server.start()
    try:
        registry = LiveRegistry(f"127.0.0.1:{port}", f"http://127.0.0.1:{port}", "big", "big layers here", ini)
        client = Client(registry.host, registry.username, registry.password)
        assert server.process is not None
        client.request("GET", "/v2/")
        before = _peak_rss_mib(server.process.pid)

        size = 256 * MiB
        block = os.urandom(MiB)
        hasher = hashlib.sha256()
        for _ in range(size // MiB):
            hasher.update(block)
        digest = "sha256:" + hasher.hexdigest()

        status, headers, _ = client.request("POST", "/v2/big/layer/blobs/uploads/")
        upload = path_of(headers["Location"])
        connection = http.client.HTTPConnection(registry.host, timeout=300)
        connection.putrequest("PATCH", upload)
        connection.putheader("Authorization", client.auth["Authorization"])
        connection.putheader("Content-Length", str(size))
        connection.putheader("Content-Type", "application/octet-stream")
        connection.endheaders()
        for _ in range(size // MiB):
            connection.send(block)
        response = connection.getresponse()
        response.read()
        connection.close()
        assert response.status == 202
        status, headers, _ = client.request("PUT", f"{upload}?digest={digest}")
        assert status == 201, headers

        status, received, length = client.stream_get(f"/v2/big/layer/blobs/{digest}")
        assert (status, "sha256:" + received, length) == (200, digest, size)
        growth = _peak_rss_mib(server.process.pid) - before
        assert growth < 64, f"server peak memory grew by {growth:.0f} MiB for a 256 MiB layer"
    finally:
        server.stop()


def test_a_tls_handshake_on_the_plain_port_is_refused_at_once(two_nodes):
    """docker tries HTTPS first even on 127.0.0.1; a refusal (not a silent wait) lets it fall back to HTTP."""
    import ssl

    host, port = two_nodes[0].host.split(":")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    # A hang would end in TimeoutError, not SSLError.
    with socket.create_connection((host, int(port)), timeout=5) as sock, pytest.raises(ssl.SSLError):
        context.wrap_socket(sock, server_hostname=host)
    status, _, _ = two_nodes[0].request("GET", "/v2/")
    assert status == 200


def test_parallel_pushes_on_sqlite_never_see_a_locked_database(two_nodes):
    """docker pushes up to five layers at once; here 8 clients over two processes push blobs and tag manifests
    on one SQLite file at the same time. Writers take the lock up front and wait for it: no 'database is locked'."""
    from concurrent.futures import ThreadPoolExecutor

    def push(worker: int) -> list[int]:
        node = two_nodes[worker % 2]
        statuses = []
        layers = []
        for index in range(4):
            data = os.urandom(64 * 1024) + f"{worker}-{index}".encode()
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            status, headers, _ = node.request("POST", "/v2/parallel/app/blobs/uploads/")
            statuses.append(status)
            upload = path_of(headers["Location"])
            status, _, _ = node.request("PATCH", upload, data[:1000], {"Content-Range": "0-999"})
            statuses.append(status)
            status, _, _ = node.request("PUT", f"{upload}?digest={digest}", data[1000:])
            statuses.append(status)
            layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": len(data)})
        config = f'{{"worker":{worker}}}'.encode()
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        status, _, _ = node.request("POST", f"/v2/parallel/app/blobs/uploads/?digest={config_digest}", config)
        statuses.append(status)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_digest,
                    "size": len(config),
                },
                "layers": layers,
            }
        ).encode()
        status, _, _ = node.request(
            "PUT",
            f"/v2/parallel/app/manifests/w{worker}",
            manifest,
            {"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        statuses.append(status)
        return statuses

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(push, range(8)))
    for statuses in results:
        assert statuses == [202, 202, 201] * 4 + [201, 201], statuses
    status, _, body = two_nodes[1].request("GET", "/v2/parallel/app/tags/list")
    assert status == 200 and json.loads(body)["tags"] == [f"w{i}" for i in range(8)]


# --- what the runner refuses before the app runs, and slow clients ------------------------------------------------
class RawConnection:
    """One socket, HTTP responses read by hand: to see exactly what the server sends, and when."""

    def __init__(self, host: str, timeout: float = 30) -> None:
        address, port = host.split(":")
        self.sock = socket.create_connection((address, int(port)), timeout=timeout)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def _fill(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        if not chunk:
            raise EOFError
        self.buffer += chunk
        return True

    def response(self, timeout: float = 15):
        """(status, lower-cased headers, body) of the next response, or None if none starts within `timeout`."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buffer:
            if time.monotonic() > deadline or not self._fill(max(0.01, deadline - time.monotonic())):
                return None
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            if not self._fill(max(0.01, deadline - time.monotonic())):
                return None
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(lines[0].split()[1]), headers, body

    def closed_by_server(self, timeout: float = 15) -> bool:
        """True when the server ends the connection (end of stream or reset) within `timeout`, sending nothing more."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self._fill(max(0.01, deadline - time.monotonic())):
                    return False
        except (EOFError, ConnectionResetError):
            return True
        return False


def _spooled_bytes(pid: int, folder: str) -> int:
    """Bytes in files under `folder`, counting files the process holds open and unlinked (TemporaryFile)."""
    total = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(folder):
                total += os.stat(f"/proc/{pid}/fd/{fd}").st_size
        except OSError:
            pass
    for root, _, files in os.walk(folder):
        total += sum(os.path.getsize(os.path.join(root, name)) for name in files)
    return total


@dataclass
class GuardedServer:
    host: str
    pid: int
    tmpdir: str
    client: Client
    signing_key_file: str  # the key the server signs its tokens with (made by the app on start)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A server with a small connection limit and a 2 s header timeout, spooling bodies to its own TMPDIR."""
    base = tmp_path_factory.mktemp("guarded")
    tmpdir = base / "tmp"
    tmpdir.mkdir()
    port = free_port()
    ini = str(base / "guarded.ini")
    write_ini(
        ini,
        database_url=f"sqlite:///{base}/db.sqlite",
        storage_dir=str(base / "blobs"),
        port=port,
        server_extra="connection_limit = 20\nheader_timeout = 2",
    )
    assert stevedore_cli(ini, "db", "upgrade").returncode == 0
    created = stevedore_cli(ini, "user", "create", "guard", "--password-stdin", stdin="guarded server pw\n")
    assert created.returncode == 0, created.stderr
    server = WaitressProcess(ini, port, str(base / "server.log"), env={"TMPDIR": str(tmpdir)})
    server.start()
    try:
        assert server.process is not None
        host = f"127.0.0.1:{port}"
        client = Client(host, "guard", "guarded server pw")
        yield GuardedServer(host, server.process.pid, str(tmpdir), client, str(base / "token_signing_key.pem"))
    finally:
        server.stop()


def _refused_before_its_body(guarded: GuardedServer, head: str, sent: bytes):
    """Send `head` and the start of the body it announces; the response, and the bytes the server stored."""
    connection = RawConnection(guarded.host)
    try:
        connection.sock.sendall(head.encode() + sent)
        response = connection.response(timeout=15)
        spooled = _spooled_bytes(guarded.pid, guarded.tmpdir)
        closed = response is not None and connection.closed_by_server(timeout=15)
        return response, spooled, closed
    finally:
        connection.close()


def test_an_anonymous_upload_body_is_refused_at_its_headers_and_never_stored(guarded):
    # 768 KiB of the 300 MiB promised: more than waitress keeps in memory (512 KiB), so it used to reach the disk.
    head = (
        f"PATCH /v2/some/repo/blobs/uploads/0123abcd HTTP/1.1\r\nHost: {guarded.host}\r\n"
        f"Content-Length: {300 * MiB}\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    response, spooled, closed = _refused_before_its_body(guarded, head, os.urandom(768 * 1024))
    assert spooled == 0
    assert response is not None, "no answer until the whole body is in"
    status, headers, body = response
    assert status == 401
    assert json.loads(body) == {
        "errors": [
            {"code": "UNAUTHORIZED", "message": "authentication required: log in to this registry", "detail": {}}
        ]
    }
    assert headers["content-type"] == "application/json"
    assert headers["docker-distribution-api-version"] == "registry/2.0"
    assert headers["www-authenticate"] == (
        f'Bearer realm="http://{guarded.host}/v2/token",service="{guarded.host}"'
    )  # as the app's own challenge
    assert headers["connection"] == "close" and closed


def test_a_big_token_form_is_refused_at_its_headers_and_never_stored(guarded):
    head = (
        f"POST /v2/token HTTP/1.1\r\nHost: {guarded.host}\r\nContent-Length: {100 * MiB}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
    )
    response, spooled, closed = _refused_before_its_body(guarded, head, b"a" * (768 * 1024))
    assert spooled == 0
    assert response is not None, "no answer until the whole body is in"
    status, headers, body = response
    assert status == 413
    assert json.loads(body)["errors"][0]["code"] == "SIZE_INVALID"
    assert headers["connection"] == "close" and closed


def test_a_chunked_token_form_is_refused_at_its_headers(guarded):
    head = (
        f"POST /v2/token HTTP/1.1\r\nHost: {guarded.host}\r\nTransfer-Encoding: chunked\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
    )
    response, spooled, _ = _refused_before_its_body(guarded, head, b"10\r\ngrant_type=passw\r\n")
    assert response is not None and response[0] == 413 and spooled == 0


def test_an_anonymous_body_that_expects_100_continue_gets_the_401_instead(guarded):
    connection = RawConnection(guarded.host)
    try:
        connection.sock.sendall(
            f"PUT /v2/some/repo/manifests/latest HTTP/1.1\r\nHost: {guarded.host}\r\nContent-Length: 1000\r\n"
            "Content-Type: application/vnd.oci.image.manifest.v1+json\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        response = connection.response(timeout=15)
        assert response is not None and response[0] == 401  # not "100 Continue": the body is not wanted
    finally:
        connection.close()


def test_authenticated_and_anonymous_bodyless_requests_pass_in_order_on_one_connection(guarded):
    """Pipelined: an authenticated GET, an anonymous GET (the app's 401), then an anonymous body: answered in order."""
    auth = guarded.client.auth["Authorization"]
    connection = RawConnection(guarded.host)
    try:
        connection.sock.sendall(
            (
                f"GET /v2/ HTTP/1.1\r\nHost: {guarded.host}\r\nAuthorization: {auth}\r\n\r\n"
                f"GET /v2/_catalog HTTP/1.1\r\nHost: {guarded.host}\r\n\r\n"
                f"POST /v2/a/b/blobs/uploads/ HTTP/1.1\r\nHost: {guarded.host}\r\nContent-Length: 5\r\n\r\nhello"
            ).encode()
        )
        statuses = [response[0] for response in (connection.response(), connection.response(), connection.response())]
        assert statuses == [200, 401, 401]
        assert connection.closed_by_server()
    finally:
        connection.close()


def test_authenticated_uploads_and_small_token_forms_still_work(guarded):
    client = guarded.client
    status, headers, _ = client.request("POST", "/v2/still/works/blobs/uploads/")
    assert status == 202
    upload = path_of(headers["Location"])
    # With Expect: 100-continue, as curl sends it for big bodies: 100 first, then the answer.
    data = os.urandom(600 * 1024)
    connection = RawConnection(guarded.host)
    try:
        connection.sock.sendall(
            f"PATCH {upload} HTTP/1.1\r\nHost: {guarded.host}\r\nAuthorization: {client.auth['Authorization']}\r\n"
            f"Content-Length: {len(data)}\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        response = connection.response()
        assert response is not None and response[0] == 100
        connection.sock.sendall(data)
        response = connection.response()
        assert response is not None and response[0] == 202
    finally:
        connection.close()

    form = "grant_type=password&username=guard&password=guarded+server+pw"
    connection = http.client.HTTPConnection(guarded.host, timeout=30)
    try:
        connection.request("POST", "/v2/token", form, {"Content-Type": "application/x-www-form-urlencoded"})
        response = connection.getresponse()
        assert response.status == 200 and "access_token" in json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.parametrize("target", ["//v2/token", "/%2Fv2/token", "/v2/%74oken", "http://{host}//v2/token"])
def test_a_big_token_form_under_another_spelling_of_its_path_is_refused_at_its_headers(guarded, target):
    """waitress collapses the leading slashes and decodes the path before the app routes it: all these are the token
    endpoint, and none may get a big form stored."""
    head = (
        f"POST {target.format(host=guarded.host)} HTTP/1.1\r\nHost: {guarded.host}\r\nContent-Length: {100 * MiB}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
    )
    response, spooled, closed = _refused_before_its_body(guarded, head, b"a" * (768 * 1024))
    assert spooled == 0
    assert response is not None, "no answer until the whole body is in"
    status, headers, body = response
    assert status == 413 and json.loads(body)["errors"][0]["code"] == "SIZE_INVALID"
    assert headers["connection"] == "close" and closed


def test_a_body_outside_the_registry_api_is_capped_at_its_headers(guarded):
    for target, framing in (("/login", f"Content-Length: {100 * MiB}"), ("/", "Transfer-Encoding: chunked")):
        head = f"POST {target} HTTP/1.1\r\nHost: {guarded.host}\r\n{framing}\r\nContent-Type: text/plain\r\n\r\n"
        response, spooled, closed = _refused_before_its_body(guarded, head, b"a" * (768 * 1024))
        assert spooled == 0
        assert response is not None, f"{target}: no answer until the whole body is in"
        status, headers, body = response
        assert status == 413 and headers["content-type"].startswith("text/plain"), response
        assert b"65536" in body
        assert headers["connection"] == "close" and closed
    # 64 KiB is still let through, to the app.
    status, _, _ = Client(guarded.host, "guard", "x").request("POST", "/-/health", b"a" * (64 * 1024))
    assert status != 413


def _signed_like_the_server(guarded: GuardedServer, **changes) -> str:
    """A real token of the server's, re-signed by its own key with some claims changed."""
    import jwt

    from stevedore.adapters.token_keys import load_signing_key
    from stevedore.adapters.tokens import JwtTokenSigner

    status, _, body = guarded.client.request("GET", f"/v2/token?service={guarded.host}&scope=repository:b/c:pull,push")
    assert status == 200
    claims = jwt.decode(json.loads(body)["token"], options={"verify_signature": False})
    with open(guarded.signing_key_file, "rb") as handle:
        signer = JwtTokenSigner([load_signing_key(handle.read(), issuer=claims["iss"])])
    return signer.sign({**claims, **changes})


def test_an_upload_with_credentials_that_cannot_be_valid_is_refused_at_its_headers(guarded):
    from stevedore.adapters.token_keys import generate_signing_key_pem, load_signing_key
    from stevedore.adapters.tokens import JwtTokenSigner

    status, headers, _ = guarded.client.request("POST", "/v2/b/c/blobs/uploads/")
    assert status == 202
    upload = path_of(headers["Location"])
    valid = _signed_like_the_server(guarded)
    foreign = JwtTokenSigner([load_signing_key(generate_signing_key_pem(), issuer="stevedore")])
    refused = {
        "forged": "Bearer " + valid[: valid.rindex(".") + 1] + "AAAA" + valid[valid.rindex(".") + 5 :],
        "foreign key": "Bearer " + foreign.sign({"sub": "guard", "exp": time.time() + 300}),
        "expired": "Bearer " + _signed_like_the_server(guarded, exp=int(time.time()) - 120),
        "not base64": "Basic !!!" + base64.b64encode(b"guard:guarded server pw").decode(),
        "no colon": "Basic " + base64.b64encode(b"guard").decode(),
        "other scheme": "Negotiate YIIGhgYJKoZIhvcSAQICAQBuggZ1MIIGcaADAgEFoQMCAQ6iBwMFACAAAACjggS",
    }
    for name, authorization in refused.items():
        head = (
            f"PATCH {upload} HTTP/1.1\r\nHost: {guarded.host}\r\nAuthorization: {authorization}\r\n"
            f"Content-Length: {300 * MiB}\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        response, spooled, closed = _refused_before_its_body(guarded, head, os.urandom(768 * 1024))
        assert spooled == 0, name
        assert response is not None, f"{name}: no answer until the whole body is in"
        status, headers, body = response
        assert status == 401, name
        assert json.loads(body)["errors"][0]["code"] == "UNAUTHORIZED"
        assert headers["www-authenticate"] == f'Bearer realm="http://{guarded.host}/v2/token",service="{guarded.host}"'
        assert headers["connection"] == "close" and closed, name

    # The same token, unexpired and signed by the server's key: received, and the upload takes it.
    client = Client(guarded.host, "guard", "-")
    client.auth = {"Authorization": "Bearer " + valid}
    status, headers, _ = client.request("PATCH", upload, os.urandom(600 * 1024))
    assert status == 202 and headers["Range"] == f"0-{600 * 1024 - 1}"
    # Well-formed Basic credentials are received: only the app (bcrypt) can tell a wrong password.
    status, _, body = Client(guarded.host, "guard", "wrong password").request("PATCH", upload, b"x" * 1000)
    assert status == 401 and json.loads(body)["errors"][0]["code"] == "UNAUTHORIZED"


def test_an_idle_keep_alive_connection_outlives_the_header_timeout_but_a_started_request_does_not(guarded):
    """Between requests a connection may idle (channel_timeout governs it), so a client or proxy reusing it after
    the header timeout (2 s) is served; but a request begun on it must still complete its headers in time."""
    import threading

    auth = guarded.client.auth["Authorization"]
    request = f"GET /v2/ HTTP/1.1\r\nHost: {guarded.host}\r\nAuthorization: {auth}\r\n\r\n".encode()
    outcomes: dict[str, object] = {}

    def reused_after_idling() -> None:
        connection = RawConnection(guarded.host)
        try:
            connection.sock.sendall(request)
            first = connection.response()
            time.sleep(4.5)
            connection.sock.sendall(request)
            second = connection.response()
            outcomes["idle"] = (first and first[0], second and second[0])
        except (OSError, EOFError) as exc:
            outcomes["idle"] = f"closed: {exc!r}"
        finally:
            connection.close()

    def trickled_after_a_response(start: bytes, dribble: bytes) -> str:
        """`start` goes with the first request (pipelined); the clock of a request begun there runs from then."""
        connection = RawConnection(guarded.host)
        started = time.monotonic()
        try:
            connection.sock.sendall(request + start)
            response = connection.response()
            if response is None or response[0] != 200:
                return f"first request: {response}"
            started = time.monotonic()
            if not start:
                time.sleep(3)  # idle first: the deadline starts with the next request's first byte, not now
                started = time.monotonic()
            for byte in dribble:
                connection.sock.sendall(bytes([byte]))
                if connection.closed_by_server(timeout=0.3):
                    return f"closed after {time.monotonic() - started:.1f} s"
            return "not closed"
        except (OSError, EOFError):
            return f"closed after {time.monotonic() - started:.1f} s"
        finally:
            connection.close()

    slow_head = f"GET /v2/ HTTP/1.1\r\nHost: {guarded.host}\r\nUser-Agent: {'x' * 200}\r\n\r\n".encode()
    scenarios = {
        "trickled headers": (b"", slow_head),
        "blank lines": (b"", b"\r\n" * 100),
        "pipelined and unfinished": (b"GET /v2/ HTTP/1.1\r\n", slow_head[len(b"GET /v2/ HTTP/1.1\r\n") :]),
    }

    def run(name: str, start: bytes, dribble: bytes) -> None:
        outcomes[name] = trickled_after_a_response(start, dribble)

    threads = [threading.Thread(target=reused_after_idling)]
    threads += [threading.Thread(target=run, args=(name, *args)) for name, args in scenarios.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert outcomes.pop("idle") == (200, 200)
    for name, outcome in outcomes.items():
        assert isinstance(outcome, str) and outcome.startswith("closed after "), (name, outcome)
        assert 1.5 < float(outcome.split()[2]) < 5, (name, outcome)  # 2 s, checked about every second


def _trickle(host: str, prefix: bytes, dribble: bytes, interval: float, until: float, results: list[str]) -> None:
    """Send `prefix`, then `dribble` a byte every `interval` s; record whether the server closed the connection."""
    connection = RawConnection(host)
    try:
        connection.sock.sendall(prefix)
        for byte in dribble:
            connection.sock.sendall(bytes([byte]))
            if connection.closed_by_server(timeout=interval):
                results.append("closed")
                return
            if time.monotonic() > until:
                break
        results.append("answered" if connection.response(timeout=10) else "no answer")
    except OSError:
        results.append("closed")
    finally:
        connection.close()


def test_idle_and_trickling_connections_do_not_lock_everyone_out(guarded):
    """More silent or dribbling connections than the limit (20): the header timeout (2 s) closes them, and a real
    request is served."""
    import threading

    idle = [RawConnection(guarded.host) for _ in range(12)]
    results: list[str] = []
    head = f"GET /v2/ HTTP/1.1\r\nHost: {guarded.host}\r\nUser-Agent: {'x' * 200}\r\n\r\n".encode()
    until = time.monotonic() + 60
    tricklers = [
        threading.Thread(target=_trickle, args=(guarded.host, b"", head, 0.3, until, results)) for _ in range(12)
    ]
    try:
        for thread in tricklers:
            thread.start()
        time.sleep(0.5)  # all connected and holding their slots
        connection = http.client.HTTPConnection(guarded.host, timeout=40)
        try:
            connection.request("GET", "/v2/", headers=guarded.client.auth)
            assert connection.getresponse().status == 200
        finally:
            connection.close()
        for thread in tricklers:
            thread.join(timeout=70)
        assert results == ["closed"] * 12  # a byte every 0.3 s keeps no connection open past its header timeout
        assert all(connection.closed_by_server(timeout=20) for connection in idle)
    finally:
        for connection in idle:
            connection.close()


def test_a_slow_token_form_is_closed_but_a_slow_authenticated_upload_is_not(guarded):
    """A token form is due within the header timeout (2 s) too; other bodies may be slow, if they keep moving."""
    import threading

    results: list[str] = []
    form = b"grant_type=password&username=guard&password=wrong&service=x"
    head = (
        f"POST /v2/token HTTP/1.1\r\nHost: {guarded.host}\r\nContent-Length: {len(form)}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
    ).encode()
    trickler = threading.Thread(target=_trickle, args=(guarded.host, head, form, 0.3, time.monotonic() + 60, results))
    trickler.start()

    client = guarded.client
    _, headers, _ = client.request("POST", "/v2/slow/upload/blobs/uploads/")
    upload = path_of(headers["Location"])
    connection = RawConnection(guarded.host)
    try:
        connection.sock.sendall(
            f"PATCH {upload} HTTP/1.1\r\nHost: {guarded.host}\r\n"
            f"Authorization: {client.auth['Authorization']}\r\nContent-Length: 8192\r\n\r\n".encode()
        )
        for _ in range(8):  # 4 s, twice the header timeout
            connection.sock.sendall(os.urandom(1024))
            time.sleep(0.5)
        response = connection.response()
        assert response is not None and response[0] == 202
    finally:
        connection.close()
    trickler.join(timeout=70)
    assert results == ["closed"]


def test_a_flood_of_failing_logins_does_not_starve_a_caller_with_cached_credentials(tmp_path_factory):
    """24 clients fail Basic logins as fast as they can against 8 threads at bcrypt cost 12 (~0.3 s each). Password
    checks run a few at a time and the surplus is refused with 429, so a caller whose login is cached is served."""
    import statistics
    import threading

    base = tmp_path_factory.mktemp("logins")
    port = free_port()
    ini = str(base / "logins.ini")
    write_ini(
        ini, database_url=f"sqlite:///{base}/db.sqlite", storage_dir=str(base / "blobs"), port=port, bcrypt_rounds=12
    )
    assert stevedore_cli(ini, "db", "upgrade").returncode == 0
    created = stevedore_cli(ini, "user", "create", "victim", "--password-stdin", stdin="the right password\n")
    assert created.returncode == 0, created.stderr
    server = WaitressProcess(ini, port, str(base / "server.log"))
    server.start()
    host = f"127.0.0.1:{port}"
    legit = Client(host, "victim", "the right password")
    stop = threading.Event()
    statuses: list[int] = []
    codes: set[str] = set()

    def attack(index: int) -> None:
        attacker = Client(host, "victim", f"wrong password {index}")
        while not stop.is_set():
            try:
                status, _, body = attacker.request("GET", "/v2/")
            except OSError:
                continue
            statuses.append(status)
            if status == 429:
                codes.add(json.loads(body)["errors"][0]["code"])

    attackers = [threading.Thread(target=attack, args=(index,)) for index in range(24)]
    try:
        assert legit.request("GET", "/v2/")[0] == 200  # verified once, then cached
        for thread in attackers:
            thread.start()
        time.sleep(1)  # the flood is on
        latencies = []
        for _ in range(10):
            started = time.monotonic()
            assert legit.request("GET", "/v2/")[0] == 200
            latencies.append(time.monotonic() - started)
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in attackers:
            thread.join(timeout=150)
        server.stop()
    assert statistics.median(latencies) < 1.0, latencies
    assert set(statuses) <= {401, 429} and 401 in statuses  # never a 500; some checks ran and failed
    assert codes <= {"TOOMANYREQUESTS"}
