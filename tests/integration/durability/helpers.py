"""Helpers for the durability tests: a server process we can kill -9 and start again, an HTTP client that pushes
images, and a consistency checker over the database and the blob folder (a later `stevedore fsck` generalizes it)."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import signal
import socket
import time
from dataclasses import dataclass, field

import sqlalchemy as sa

from stevedore.adapters.sql.engine import make_engine
from stevedore.adapters.sql.tables import blobs, manifest_references, manifests, repositories, tags, uploads
from tests.integration.services import WaitressProcess, free_port, stevedore_cli, write_ini

MiB = 1024 * 1024
USERNAME = "durable"
PASSWORD = "durable pushes survive"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def path_of(location: str) -> str:
    """The path of an absolute Location."""
    return "/" + location.split("://", 1)[1].split("/", 1)[1]


class Client:
    def __init__(self, host: str, username: str = USERNAME, password: str = PASSWORD) -> None:
        self.host = host
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self.auth = {"Authorization": f"Basic {token}"}

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None):
        """(status, headers, body) of one request on a fresh connection."""
        connection = http.client.HTTPConnection(self.host, timeout=120)
        try:
            connection.request(method, path, body=body, headers={**self.auth, **(headers or {})})
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        finally:
            connection.close()

    def start_upload(self, name: str) -> str:
        status, headers, body = self.request("POST", f"/v2/{name}/blobs/uploads/")
        assert status == 202, (status, body)
        return path_of(headers["Location"])

    def push_blob(self, name: str, data: bytes) -> int:
        """POST, one PATCH with the whole body, PUT: as docker pushes a layer. The PUT's status."""
        upload = self.start_upload(name)
        status, _, _ = self.request("PATCH", upload, data, {"Content-Type": "application/octet-stream"})
        if status != 202:
            return status
        status, _, _ = self.request("PUT", f"{upload}?digest={sha256(data)}")
        return status

    def put_manifest(self, name: str, reference: str, manifest: bytes) -> int:
        status, _, _ = self.request(
            "PUT", f"/v2/{name}/manifests/{reference}", manifest, {"Content-Type": MANIFEST_TYPE}
        )
        return status

    def head_blob(self, name: str, digest: str) -> int:
        return self.request("HEAD", f"/v2/{name}/blobs/{digest}")[0]

    def get_blob(self, name: str, digest: str) -> tuple[int, bytes]:
        status, _, body = self.request("GET", f"/v2/{name}/blobs/{digest}")
        return status, body

    def send_slowly(self, method: str, path: str, head_only_length: int, sent: bytes) -> socket.socket:
        """Start a request announcing `head_only_length` body bytes and send only `sent` of them: the caller kills
        the server (or closes the socket) while the body is still coming."""
        host, port = self.host.split(":")
        sock = socket.create_connection((host, int(port)), timeout=30)
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: {self.auth['Authorization']}\r\n"
            f"Content-Length: {head_only_length}\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        sock.sendall(head.encode() + sent)
        return sock


@dataclass
class Image:
    """A small image: a config, layers, and the manifest that names them."""

    config: bytes
    layers: list[bytes]

    @property
    def manifest(self) -> bytes:
        return json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": sha256(self.config),
                    "size": len(self.config),
                },
                "layers": [
                    {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(layer), "size": len(layer)}
                    for layer in self.layers
                ],
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def random(cls, label: str, layer_sizes: tuple[int, ...] = (64 * 1024,)) -> Image:
        return cls(json.dumps({"label": label}).encode(), [os.urandom(size) for size in layer_sizes])


def push_image(client: Client, name: str, tag: str, image: Image) -> list[int]:
    """Push like docker: each blob unless the registry has it, then the manifest. The statuses, in order."""
    statuses = []
    for data in [*image.layers, image.config]:
        if client.head_blob(name, sha256(data)) == 200:
            continue
        statuses.append(client.push_blob(name, data))
    statuses.append(client.put_manifest(name, tag, image.manifest))
    return statuses


# --- a server we can kill ---------------------------------------------------------------------------------------------
@dataclass
class Node:
    """One Stevedore node (waitress, one process) over `database_url` and a blob folder."""

    base: str
    database_url: str
    storage_dir: str
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: WaitressProcess | None = None

    @classmethod
    def create(cls, base: str, database_url: str | None = None, storage_dir: str | None = None, **kwargs) -> Node:
        node = cls(
            base,
            database_url or f"sqlite:///{base}/stevedore.sqlite",
            storage_dir or os.path.join(base, "blobs"),
            **kwargs,
        )
        write_ini(node.ini, database_url=node.database_url, storage_dir=node.storage_dir, port=node.port)
        for args, stdin in ((("db", "upgrade"), None), (("user", "create", USERNAME, "--password-stdin"), PASSWORD)):
            result = stevedore_cli(node.ini, *args, stdin=stdin and f"{stdin}\n")
            assert result.returncode == 0, result.stderr
        return node

    @property
    def ini(self) -> str:
        return os.path.join(self.base, "node.ini")

    @property
    def log(self) -> str:
        return os.path.join(self.base, "server.log")

    @property
    def client(self) -> Client:
        return Client(f"127.0.0.1:{self.port}")

    @property
    def pid(self) -> int:
        assert self.process is not None and self.process.process is not None
        return self.process.process.pid

    def start(self) -> Node:
        self.process = WaitressProcess(self.ini, self.port, self.log, env=self.env or None)
        self.process.start()
        return self

    def kill(self) -> None:
        """kill -9: no cleanup of any kind runs."""
        assert self.process is not None and self.process.process is not None
        os.kill(self.pid, signal.SIGKILL)
        self.process.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def log_text(self) -> str:
        with open(self.log, errors="replace") as handle:
            return handle.read()


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.001) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


# --- the consistency checker -----------------------------------------------------------------------------------------
@dataclass
class Consistency:
    problems: list[str]  # each an inconsistency a client could see
    orphan_files: list[str]  # blob files no row names: invisible (HEAD and GET ask the database), for a future GC
    blob_rows: set[str]
    upload_rows: set[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def blob_file(storage_dir: str, digest: str) -> str:
    algorithm, hex_ = digest.split(":", 1)
    return os.path.join(storage_dir, "blobs", algorithm, hex_[:2], hex_)


def check_consistency(database_url: str, storage_dir: str) -> Consistency:
    """Compare the database with the blob folder: every blob row has its file with its size and digest; every link,
    tag and manifest reference points at something present; every manifest's bytes have its digest."""
    problems: list[str] = []
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            blob_rows = {row.digest: row.size for row in conn.execute(sa.select(blobs.c.digest, blobs.c.size))}
            for digest, size in sorted(blob_rows.items()):
                path = blob_file(storage_dir, digest)
                if not os.path.isfile(path):
                    problems.append(f"blob {digest}: row without file")
                    continue
                actual = os.path.getsize(path)
                if actual != size:
                    problems.append(f"blob {digest}: size {actual} on disk, {size} in the database")
                    continue
                hasher = hashlib.new(digest.split(":", 1)[0])
                with open(path, "rb") as handle:
                    while chunk := handle.read(MiB):
                        hasher.update(chunk)
                if f"{digest.split(':', 1)[0]}:{hasher.hexdigest()}" != digest:
                    problems.append(f"blob {digest}: the file's bytes have another digest")
            for row in conn.execute(
                sa.select(repositories.c.name, tags.c.name.label("tag"), tags.c.manifest_id)
                .select_from(tags.join(repositories))
                .outerjoin(manifests, manifests.c.id == tags.c.manifest_id)
                .where(manifests.c.id.is_(None))
            ):
                problems.append(f"tag {row.name}:{row.tag} points at missing manifest {row.manifest_id}")
            for row in conn.execute(sa.select(manifests.c.id, manifests.c.digest, manifests.c.content)):
                if sha256(bytes(row.content)) != row.digest:
                    problems.append(f"manifest {row.digest}: content has another digest")
            for row in conn.execute(
                sa.select(manifest_references.c.manifest_id, manifest_references.c.digest).where(
                    manifest_references.c.kind == "blob"
                )
            ):
                if row.digest not in blob_rows:
                    problems.append(f"manifest {row.manifest_id} references missing blob {row.digest}")
            upload_rows = {row.id for row in conn.execute(sa.select(uploads.c.id))}
    finally:
        engine.dispose()
    orphans = []
    blobs_root = os.path.join(storage_dir, "blobs")
    for folder, _, files in os.walk(blobs_root):
        for name in files:
            algorithm = os.path.relpath(folder, blobs_root).split(os.sep)[0]
            if f"{algorithm}:{name}" not in blob_rows:
                orphans.append(f"{algorithm}:{name}")
    return Consistency(problems, sorted(orphans), set(blob_rows), upload_rows)


def leftover_upload_files(storage_dir: str) -> list[str]:
    """Files under the folder store's uploads/ (uploads in progress or abandoned)."""
    found = []
    for folder, _, files in os.walk(os.path.join(storage_dir, "uploads")):
        found += [os.path.join(folder, name) for name in files]
    return found
