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

from sqlalchemy.orm import Session

from stevedore.adapters.blobs_fs import FolderBlobStore
from stevedore.adapters.sql.engine import make_engine
from stevedore.adapters.sql.fsck import read_database_view
from stevedore.adapters.storage_inventory import hash_stored, storage_view
from stevedore.domain.fsck import FindingKind, check, digest_of_location
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
    """Compare the database with the blob folder through the product's checker (`stevedore fsck --verify-digests`):
    every blob row has its file with its size and digest; every link, tag and manifest reference points at something
    present; every manifest's bytes have its digest. Unreferenced files are listed apart, and upload leftovers are
    left to `leftover_upload_files`."""
    engine = make_engine(database_url)
    try:
        with Session(engine) as session, session.begin():
            database = read_database_view(session)
    finally:
        engine.dispose()
    store = FolderBlobStore(storage_dir, fsync=False)
    report = check(database, storage_view(store), rehash=lambda row, _: hash_stored(store, row.digest, None))
    apart = (FindingKind.UNREFERENCED_OBJECT, FindingKind.STALE_UPLOAD)
    problems = [f"{f.kind}: {f.subject}: {f.detail}" for f in report.findings if f.kind not in apart]
    orphans = [digest_of_location(f.subject) or f.subject for f in report.of_kind(FindingKind.UNREFERENCED_OBJECT)]
    return Consistency(problems, sorted(orphans), {row.digest for row in database.blobs}, database.upload_ids)


def leftover_upload_files(storage_dir: str) -> list[str]:
    """Files under the folder store's uploads/ (uploads in progress or abandoned)."""
    found = []
    for folder, _, files in os.walk(os.path.join(storage_dir, "uploads")):
        found += [os.path.join(folder, name) for name in files]
    return found
