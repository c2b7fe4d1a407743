"""Upload bodies handed to the app as they arrive (web/server.py, web/streaming_body.py), through a real server."""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass

import pytest

from tests.integration.services import WaitressProcess, free_port, stevedore_cli, write_ini
from tests.integration.test_server import Client, RawConnection, _peak_rss_mib, _spooled_bytes, path_of

pytestmark = pytest.mark.server

MiB = 1024 * 1024


@dataclass
class Server:
    host: str
    pid: int
    tmpdir: str
    storage: str
    client: Client
    log: str


def _serving(base, edit=lambda text: text):
    """A server on a fresh SQLite database and blob folder under `base`, its ini passed through `edit` first."""
    tmpdir = base / "tmp"
    tmpdir.mkdir()
    port = free_port()
    ini = str(base / "streamed.ini")
    write_ini(ini, database_url=f"sqlite:///{base}/db.sqlite", storage_dir=str(base / "blobs"), port=port)
    with open(ini) as file:
        text = edit(file.read())
    with open(ini, "w") as file:
        file.write(text)
    assert stevedore_cli(ini, "db", "upgrade").returncode == 0
    created = stevedore_cli(ini, "user", "create", "streamer", "--password-stdin", stdin="streamed bodies pw\n")
    assert created.returncode == 0, created.stderr
    process = WaitressProcess(ini, port, str(base / "server.log"), env={"TMPDIR": str(tmpdir)})
    process.start()
    try:
        assert process.process is not None
        host = f"127.0.0.1:{port}"
        yield Server(
            host,
            process.process.pid,
            str(tmpdir),
            str(base / "blobs"),
            Client(host, "streamer", "streamed bodies pw"),
            str(base / "server.log"),
        )
    finally:
        process.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from _serving(tmp_path_factory.mktemp("streamed"))


def _stored_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, files in os.walk(folder) for name in files)


def _new_upload(server: Server, repo: str) -> str:
    status, headers, _ = server.client.request("POST", f"/v2/{repo}/blobs/uploads/")
    assert status == 202
    return path_of(headers["Location"])


def _head(server: Server, method: str, path: str, extra: str = "") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: {server.host}\r\nAuthorization: {server.client.auth['Authorization']}\r\n"
        f"Content-Type: application/octet-stream\r\n{extra}\r\n"
    ).encode()


def _chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _finish(server: Server, upload: str, digest: str) -> None:
    status, _, payload = server.client.request("PUT", f"{upload}?digest={digest}")
    assert status == 201, payload
    status, _, _ = server.client.request("HEAD", f"/v2/{upload.split('/blobs/')[0][4:]}/blobs/{digest}")
    assert status == 200


def test_a_64_mib_patch_reaches_the_store_while_it_arrives_and_is_hashed_right(server):
    data = os.urandom(64 * MiB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    upload = _new_upload(server, "streamed/fixed")
    stored_before = _stored_bytes(server.storage)
    connection = RawConnection(server.host, timeout=60)
    try:
        connection.sock.sendall(_head(server, "PATCH", upload, f"Content-Length: {len(data)}\r\n"))
        connection.sock.sendall(data[: 16 * MiB])
        deadline = time.monotonic() + 10
        while _stored_bytes(server.storage) - stored_before < 8 * MiB and time.monotonic() < deadline:
            time.sleep(0.05)
        # The app writes the blob while the rest of the body is still to come, and nothing went to a spool file.
        assert _stored_bytes(server.storage) - stored_before >= 8 * MiB
        assert _spooled_bytes(server.pid, server.tmpdir) == 0
        for start in range(16 * MiB, len(data), 8 * MiB):
            connection.sock.sendall(data[start : start + 8 * MiB])
            time.sleep(0.05)
        response = connection.response(timeout=60)
        assert response is not None
        status, headers, _ = response
        assert status == 202 and headers["range"] == f"0-{len(data) - 1}"
    finally:
        connection.close()
    _finish(server, upload, digest)


def test_a_chunked_patch_arriving_in_pieces_with_pauses_is_hashed_right(server):
    data = os.urandom(64 * MiB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    upload = _new_upload(server, "streamed/chunked")
    connection = RawConnection(server.host, timeout=60)
    try:
        connection.sock.sendall(_head(server, "PATCH", upload, "Transfer-Encoding: chunked\r\n"))
        sizes = [1, 1000, 65536, 3 * MiB + 7, 5 * MiB]
        start, turn = 0, 0
        while start < len(data):
            piece = data[start : start + sizes[turn % len(sizes)]]
            wire = _chunked(piece)
            # Split the chunk's framing across sends too.
            connection.sock.sendall(wire[:3])
            connection.sock.sendall(wire[3:])
            start += len(piece)
            turn += 1
            if turn % 7 == 0:
                time.sleep(0.2)
        connection.sock.sendall(b"0\r\n\r\n")
        response = connection.response(timeout=60)
        assert response is not None
        status, headers, _ = response
        assert status == 202 and headers["range"] == f"0-{len(data) - 1}"
    finally:
        connection.close()
    _finish(server, upload, digest)


def test_a_client_that_disconnects_mid_body_stores_no_blob_and_the_server_keeps_serving(server):
    data = os.urandom(8 * MiB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    upload = _new_upload(server, "streamed/vanishing")
    connection = RawConnection(server.host, timeout=30)
    connection.sock.sendall(_head(server, "PATCH", upload, f"Content-Length: {64 * MiB}\r\n") + data)
    time.sleep(0.5)
    connection.close()

    status, _, _ = server.client.request("HEAD", f"/v2/streamed/vanishing/blobs/{digest}")
    assert status == 404
    status, _, _ = server.client.request("GET", "/v2/")
    assert status == 200
    # The upload is still usable: what came is kept (a PATCH cut short keeps its bytes), and it can be cancelled.
    deadline = time.monotonic() + 10
    while True:
        status, headers, _ = server.client.request("GET", upload)
        if status == 204 or time.monotonic() > deadline:
            break
        time.sleep(0.1)  # the app may still hold the upload's lock while it notices the disconnect
    assert status == 204
    assert int(headers["Range"].split("-")[1]) < 64 * MiB - 1
    # An expected event, told once at INFO level: no traceback, no "unexpected error" (errors.body_interrupted).
    with open(server.log) as log:
        logged = log.read()
    assert "unexpected error" not in logged and "Traceback" not in logged, logged[-3000:]
    fresh = os.urandom(2 * MiB)
    fresh_digest = "sha256:" + hashlib.sha256(fresh).hexdigest()
    other = _new_upload(server, "streamed/vanishing")
    status, _, _ = server.client.request("PATCH", other, fresh)
    assert status == 202
    _finish(server, other, fresh_digest)


@pytest.mark.parametrize(
    ("target", "extra", "expected"),
    [
        ("unknown", "", 404),  # an upload id nobody started
        ("known", "Content-Range: 5-16777220\r\n", 416),  # a chunk that does not continue the upload
    ],
)
def test_an_app_refusal_before_the_body_ends_is_answered_and_the_connection_stays_sane(server, target, extra, expected):
    body = os.urandom(16 * MiB)
    if target == "unknown":
        upload = "/v2/streamed/refused/blobs/uploads/00000000-0000-4000-8000-000000000000"
    else:
        upload = _new_upload(server, "streamed/refused")
    connection = RawConnection(server.host, timeout=30)
    try:
        connection.sock.sendall(_head(server, "PATCH", upload, f"Content-Length: {len(body)}\r\n{extra}"))
        connection.sock.sendall(body[: 4 * MiB])
        response = connection.response(timeout=15)
        assert response is not None, "no answer before the end of the body"
        assert response[0] == expected
        # The rest of the body is read and dropped, never taken for a request; the next request is answered.
        connection.sock.sendall(body[4 * MiB :])
        connection.sock.sendall(f"GET /v2/ HTTP/1.1\r\nHost: {server.host}\r\n\r\n".encode())
        following = connection.response(timeout=15)
        assert following is not None and following[0] == 401  # /v2/ without credentials: the challenge
        assert _nothing_more(connection)
    finally:
        connection.close()
    if target == "known":
        status, headers, _ = server.client.request("GET", upload)
        assert status == 204 and headers["Range"] == "0-0"


def _read_response_body(connection: RawConnection, response) -> None:
    """The app's empty 202 goes out chunked (WebOb drops its Content-Length 0): read its terminator."""
    if response[1].get("transfer-encoding") == "chunked":
        while b"0\r\n\r\n" not in connection.buffer:
            assert connection._fill(10)
        connection.buffer = connection.buffer.split(b"0\r\n\r\n", 1)[1]


def _nothing_more(connection: RawConnection) -> bool:
    """No further response (the server may end the connection: an answer without Content-Length, as a 204)."""
    try:
        return connection.response(timeout=1) is None
    except EOFError:
        return connection.buffer == b""


@pytest.mark.parametrize("answer", ["accepted", "refused"])
def test_a_request_pipelined_after_a_streamed_body_is_answered_in_order(server, answer):
    data = os.urandom(4 * MiB)
    upload = _new_upload(server, "streamed/pipelined")
    auth = server.client.auth["Authorization"]
    extra = "" if answer == "accepted" else f"Content-Range: 7-{len(data) + 6}\r\n"
    connection = RawConnection(server.host, timeout=30)
    try:
        connection.sock.sendall(
            _head(server, "PATCH", upload, f"Content-Length: {len(data)}\r\n{extra}")
            + data
            + f"GET {upload} HTTP/1.1\r\nHost: {server.host}\r\nAuthorization: {auth}\r\n\r\n".encode()
        )
        first = connection.response(timeout=30)
        assert first is not None
        size = len(data) if answer == "accepted" else 0
        if answer == "accepted":
            assert first[0] == 202 and first[1]["range"] == f"0-{size - 1}"
        else:
            assert first[0] == 416
        _read_response_body(connection, first)
        if first[1].get("connection") == "close":
            # The app's 202 carries no Content-Length, so waitress ends the connection after it: nothing more.
            assert connection.closed_by_server(timeout=10)
            status, headers, _ = server.client.request("GET", upload)
            second = (status, {"range": headers["Range"]}, b"")
        else:
            second = connection.response(timeout=30)
            assert _nothing_more(connection)
        assert second is not None
        assert second[0] == 204 and second[1]["range"] == f"0-{max(size - 1, 0)}"
    finally:
        connection.close()


def test_a_body_that_expects_100_continue_gets_it_and_streams(server):
    data = os.urandom(3 * MiB)
    upload = _new_upload(server, "streamed/continue")
    connection = RawConnection(server.host, timeout=30)
    try:
        connection.sock.sendall(
            _head(server, "PATCH", upload, f"Content-Length: {len(data)}\r\nExpect: 100-continue\r\n")
        )
        interim = connection.response(timeout=10)
        assert interim is not None and interim[0] == 100
        connection.sock.sendall(data)
        response = connection.response(timeout=30)
        assert response is not None and response[0] == 202
    finally:
        connection.close()


def test_a_512_mib_patch_keeps_the_server_memory_flat(server):
    """Backpressure: the body is read from the socket no faster than the app stores it."""
    size = 512 * MiB
    block = os.urandom(MiB)
    hasher = hashlib.sha256()
    for _ in range(size // MiB):
        hasher.update(block)
    digest = "sha256:" + hasher.hexdigest()
    server.client.request("GET", "/v2/")
    before = _peak_rss_mib(server.pid)
    upload = _new_upload(server, "streamed/large")
    connection = RawConnection(server.host, timeout=120)
    try:
        connection.sock.sendall(_head(server, "PATCH", upload, f"Content-Length: {size}\r\n"))
        for _ in range(size // MiB):
            connection.sock.sendall(block)
        response = connection.response(timeout=120)
        assert response is not None and response[0] == 202
    finally:
        connection.close()
    _finish(server, upload, digest)
    growth = _peak_rss_mib(server.pid) - before
    assert growth < 64, f"server peak memory grew by {growth:.0f} MiB for a 512 MiB body"


def test_a_64_mib_monolithic_put_streams_to_the_store_and_is_hashed_right(server):
    data = os.urandom(64 * MiB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    upload = _new_upload(server, "streamed/monolithic")
    stored_before = _stored_bytes(server.storage)
    connection = RawConnection(server.host, timeout=60)
    try:
        target = f"{upload}{'&' if '?' in upload else '?'}digest={digest}"
        connection.sock.sendall(_head(server, "PUT", target, f"Content-Length: {len(data)}\r\n"))
        connection.sock.sendall(data[: 16 * MiB])
        deadline = time.monotonic() + 10
        while _stored_bytes(server.storage) - stored_before < 8 * MiB and time.monotonic() < deadline:
            time.sleep(0.05)
        # Written while the rest is still to come, and nothing spooled: each byte is written once.
        assert _stored_bytes(server.storage) - stored_before >= 8 * MiB
        assert _spooled_bytes(server.pid, server.tmpdir) == 0
        connection.sock.sendall(data[16 * MiB :])
        response = connection.response(timeout=60)
        assert response is not None
        status, headers, _ = response
        assert status == 201 and headers["docker-content-digest"] == digest
    finally:
        connection.close()
    status, received, length = server.client.stream_get(f"/v2/streamed/monolithic/blobs/{digest}")
    assert (status, length, "sha256:" + received) == (200, len(data), digest)


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    """A server that accepts request bodies up to 4 MiB (waitress's max_request_body_size), logging at INFO."""

    def small(text: str) -> str:
        assert "max_request_body_size = 1099511627776\n" in text
        text = text.replace("max_request_body_size = 1099511627776\n", f"max_request_body_size = {4 * MiB}\n")
        assert "[logger_root]\nlevel = WARN\n" in text
        return text.replace("[logger_root]\nlevel = WARN\n", "[logger_root]\nlevel = INFO\n")  # the request log too

    yield from _serving(tmp_path_factory.mktemp("streamed-small"), small)


def test_a_chunked_body_past_the_size_limit_is_413_size_invalid_and_stores_nothing(small_server):
    """A chunked body has no Content-Length for waitress to refuse up front: the app reads it as it arrives and is
    told once it passes the limit (BodyInterrupted.too_large)."""
    server = small_server
    data = os.urandom(5 * MiB)  # past the 4 MiB limit; the client then waits for the answer
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    upload = _new_upload(server, "streamed/toolarge")
    connection = RawConnection(server.host, timeout=30)
    try:
        connection.sock.sendall(_head(server, "PUT", f"{upload}?digest={digest}", "Transfer-Encoding: chunked\r\n"))
        response = None
        try:
            for start in range(0, len(data), MiB):
                connection.sock.sendall(_chunked(data[start : start + MiB]))
            response = connection.response(timeout=30)
        except (OSError, EOFError):
            pass  # waitress closes at once after its answer, and the client, still sending, may see a reset
        if response is not None:
            status, _, payload = response
            assert status == 413 and b'"SIZE_INVALID"' in payload
    finally:
        connection.close()
    status, _, _ = server.client.request("HEAD", f"/v2/streamed/toolarge/blobs/{digest}")
    assert status == 404
    # Whatever the client saw, the app read the body until the limit and answered 413 (the request log's line). A
    # client reset by the server's close may get here before the app has finished: wait for its line.
    answered = re.compile(r"PUT /v2/streamed/toolarge/blobs/uploads/\S+ 413 ")
    deadline = time.monotonic() + 30
    while True:
        with open(server.log) as log:
            logged = log.read()
        if answered.search(logged) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert "unexpected error" not in logged and "Traceback" not in logged, logged[-3000:]
    assert "the request body did not arrive whole" in logged, logged[-3000:]
    assert answered.search(logged), logged[-3000:]
    small = os.urandom(MiB)  # a body under the limit still goes through
    small_digest = "sha256:" + hashlib.sha256(small).hexdigest()
    status, _, _ = server.client.request(
        "PUT", f"{_new_upload(server, 'streamed/toolarge')}?digest={small_digest}", small
    )
    assert status == 201
