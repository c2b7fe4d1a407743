"""A real waitress server over HTTP: uploads that move between processes, clients that vanish, flat memory."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import socket

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
    status, headers, _ = node.request("GET", upload)
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
