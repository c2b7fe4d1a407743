"""Blob pulls through the real server go out with sendfile(2) (web/server.py, PlainHttpChannel._flush_some): the bytes
are right for a fast reader, a slow one, and several responses on one keep-alive connection; a reader that vanishes
mid-blob costs nothing; and the kernel, not Python, moved the bytes (the server's /proc/PID/io)."""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import time

import pytest

from tests.integration.services import WaitressProcess, free_port, stevedore_cli, write_ini
from tests.integration.test_server import Client, path_of

pytestmark = pytest.mark.server

MiB = 1024 * 1024
SIZE = 24 * MiB + 12345  # several socket buffers and sendfile calls, and not a round number
NAME = "pull/sendfile"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("sendfile")
    port = free_port()
    ini = str(base / "node.ini")
    write_ini(ini, database_url=f"sqlite:///{base}/db.sqlite", storage_dir=str(base / "blobs"), port=port)
    assert stevedore_cli(ini, "db", "upgrade").returncode == 0
    created = stevedore_cli(ini, "user", "create", "puller", "--password-stdin", stdin="pull it through\n")
    assert created.returncode == 0, created.stderr
    server = WaitressProcess(ini, port, str(base / "server.log"))
    server.start()
    try:
        client = Client(f"127.0.0.1:{port}", "puller", "pull it through")
        data = os.urandom(SIZE)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        status, headers, _ = client.request("POST", f"/v2/{NAME}/blobs/uploads/")
        assert status == 202
        status, headers, body = client.request(
            "PUT",
            path_of(headers["Location"]) + ("&" if "?" in headers["Location"] else "?") + f"digest={digest}",
            body=data,
        )
        assert status == 201, body
        assert server.process is not None
        yield server.process.pid, client, data, digest
    finally:
        server.stop()


def io_counters(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/io") as handle:
        return {key: int(value) for key, value in (line.split(": ") for line in handle)}


def test_a_pull_is_sent_by_the_kernel_and_arrives_whole(served):
    pid, client, _data, digest = served
    before = io_counters(pid)
    status, received, length = client.stream_get(f"/v2/{NAME}/blobs/{digest}")
    after = io_counters(pid)
    assert (status, length, "sha256:" + received) == (200, SIZE, digest)
    # sendfile(2) counts what it moves as written by the process (wchar); send(2) of bytes read into Python does not,
    # and waitress's own loop read every byte twice (rchar twice the blob).
    assert after["wchar"] - before["wchar"] >= SIZE
    assert after["rchar"] - before["rchar"] < 2 * SIZE


def test_responses_after_a_blob_on_one_keep_alive_connection_are_whole(served):
    _, client, data, digest = served
    connection = http.client.HTTPConnection(client.host, timeout=60)
    try:
        for method in ("GET", "HEAD", "GET", "GET"):
            connection.request(method, f"/v2/{NAME}/blobs/{digest}", headers=client.auth)
            response = connection.getresponse()
            body = response.read()
            assert response.status == 200
            assert int(response.headers["Content-Length"]) == SIZE
            assert body == (data if method == "GET" else b"")
        connection.request("GET", "/v2/", headers=client.auth)
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, b"{}")
    finally:
        connection.close()


def test_a_slow_reader_gets_every_byte(served):
    """The socket fills and sendfile would block: the server waits for room instead of dropping or repeating."""
    _, client, _data, digest = served
    host, port = client.host.split(":")
    with socket.create_connection((host, int(port)), timeout=60) as raw:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        raw.sendall(
            f"GET /v2/{NAME}/blobs/{digest} HTTP/1.1\r\nHost: {client.host}\r\n"
            f"Authorization: {client.auth['Authorization']}\r\nConnection: close\r\n\r\n".encode()
        )
        received = bytearray()
        slow_until = time.monotonic() + 1.5
        while chunk := raw.recv(64 * 1024):
            received += chunk
            if time.monotonic() < slow_until:
                time.sleep(0.02)
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert hashlib.sha256(body).hexdigest() == digest.split(":", 1)[1]


def test_a_reader_that_vanishes_mid_blob_leaves_the_server_serving(served):
    _, client, _data, digest = served
    for _ in range(3):
        host, port = client.host.split(":")
        with socket.create_connection((host, int(port)), timeout=60) as raw:
            raw.sendall(
                f"GET /v2/{NAME}/blobs/{digest} HTTP/1.1\r\nHost: {client.host}\r\n"
                f"Authorization: {client.auth['Authorization']}\r\n\r\n".encode()
            )
            assert raw.recv(MiB)  # some of it came, then the client goes away
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # reset
    status, received, length = client.stream_get(f"/v2/{NAME}/blobs/{digest}")
    assert (status, length, "sha256:" + received) == (200, SIZE, digest)
