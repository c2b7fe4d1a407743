"""`workers = N` in [server:main], through a real `pserve` of a real ini: the first process binds the port and
supervises N forked waitress workers. Which worker holds a connection is read from the kernel (the server side of
the connection in /proc/net/tcp, its inode among a worker's /proc/PID/fd), so a request is known to be served by
that worker. No timing is asserted: every wait is a polling loop with a generous bound. Every process a test starts
is killed at its end, whatever happened."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from stevedore.web import workers as workers_module
from tests.integration.services import WaitressProcess, free_port, stevedore_cli, write_ini
from tests.integration.test_server import Client, path_of

pytestmark = pytest.mark.server

WAIT = 30.0  # seconds: a bound for polling loops, never a measurement
USER, PASSWORD = "forked", "two workers one port"


def poll(condition: Callable[[], object], what: str, timeout: float = WAIT) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.05)


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    state, ppid = text.rsplit(")", 1)[1].split()[:2]  # the name in parentheses may hold spaces
    return state, int(ppid)


def alive(pid: int) -> bool:
    """Running: neither gone nor a zombie waiting for whoever adopted it to reap it."""
    found = proc_stat(pid)
    return found is not None and found[0] != "Z"


def signal_mask(pid: int, kind: str) -> set[int]:
    """The signals a process ignores (kind SigIgn) or catches with a handler (SigCgt), from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(f"{kind}:"):
                mask = int(line.split()[1], 16)
                return {number for number in range(1, 65) if mask & (1 << (number - 1))}
    raise AssertionError(f"no {kind} in /proc/{pid}/status")


@contextlib.contextmanager
def sighup_for_children(disposition) -> Iterator[None]:
    """What a child started meanwhile inherits for SIGHUP: ignored with SIG_IGN (as under nohup); with a handler,
    the default (a handler does not survive exec), whatever this process had. SIGINT gets the default too: a test
    run started in the background by a script (as CI may be) ignores it, and its children would inherit that."""
    previous = signal.signal(signal.SIGHUP, disposition)
    previous_int = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGHUP, previous)


def children(pid: int) -> set[int]:
    """The live processes whose parent is `pid`."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = proc_stat(int(entry))
            if info is not None and info[1] == pid and info[0] != "Z":
                found.add(int(entry))
    return found


def server_sockets(port: int) -> dict[int, int]:
    """Established connections to 127.0.0.1:port, server side: client port -> socket inode."""
    found = {}
    with open("/proc/net/tcp") as handle:
        next(handle)
        for line in handle:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
            if state == "01" and int(local.split(":")[1], 16) == port and inode:
                found[int(remote.split(":")[1], 16)] = inode
    return found


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


@dataclass
class Node:
    """One pserve of one ini, and every process it was seen to have, for the cleanup."""

    ini: str
    port: int
    log_path: str
    server: WaitressProcess
    seen: set[int] = field(default_factory=set)

    @property
    def pid(self) -> int:
        assert self.server.process is not None
        return self.server.process.pid

    def workers(self) -> set[int]:
        found = children(self.pid)
        self.seen |= found
        return found

    def two_workers(self) -> set[int]:
        def found() -> set[int] | None:
            pids = self.workers()
            return pids if len(pids) == 2 else None

        return poll(found, "two worker processes")  # type: ignore[return-value]

    def log(self) -> str:
        with open(self.log_path, errors="replace") as handle:
            return handle.read()

    def answers(self) -> bool:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            connection.request("GET", "/v2/")
            status = connection.getresponse().status
            connection.close()
            return status == 401
        except OSError:
            return False

    def owner(self, connection: http.client.HTTPConnection) -> int:
        """The worker that accepted this open connection."""
        assert connection.sock is not None
        client_port = connection.sock.getsockname()[1]

        def find() -> int | None:
            inode = server_sockets(self.port).get(client_port)
            if inode is None:
                return None
            holders = [pid for pid in self.workers() | {self.pid} if inode in socket_inodes(pid)]
            return holders[0] if len(holders) == 1 else None

        return poll(find, f"the process that accepted the connection from port {client_port}")  # type: ignore[return-value]

    def connect(self) -> tuple[http.client.HTTPConnection, int]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        connection.connect()
        return connection, self.owner(connection)

    def connect_to(self, worker: int) -> http.client.HTTPConnection:
        """A fresh connection that `worker` accepted (others are opened and closed until one is)."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            connection, owner = self.connect()
            if owner == worker:
                return connection
            connection.close()
        raise AssertionError(f"worker {worker} accepted no connection within {WAIT:.0f} s")


def kill_leftovers(node: Node) -> None:
    process = node.server.process
    if process is not None and process.poll() is None:
        process.kill()
        process.wait(WAIT)
    for pid in node.seen:
        # Only ours: a worker's command line is its first process's, naming this node's ini.
        with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as handle:
            if node.ini.encode() in handle.read() and alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """One schema and one user for every server of this module (each has its own ini and port)."""
    base = tmp_path_factory.mktemp("workers")
    ini = str(base / "setup.ini")
    write_ini(ini, database_url=f"sqlite:///{base}/db.sqlite", storage_dir=str(base / "blobs"), port=free_port())
    assert stevedore_cli(ini, "db", "upgrade").returncode == 0
    created = stevedore_cli(ini, "user", "create", USER, "--password-stdin", stdin=f"{PASSWORD}\n")
    assert created.returncode == 0, created.stderr
    return base


@pytest.fixture
def serve(database, tmp_path) -> Iterator[Callable[..., Node]]:
    nodes: list[Node] = []

    def start(server_extra: str = "workers = 2", sighup=lambda *_: None) -> Node:
        port = free_port()
        ini = str(tmp_path / f"node{len(nodes)}.ini")
        write_ini(
            ini,
            database_url=f"sqlite:///{database}/db.sqlite",
            storage_dir=str(database / "blobs"),
            port=port,
            server_extra=server_extra,
        )
        log_path = str(tmp_path / f"node{len(nodes)}.log")
        node = Node(ini, port, log_path, WaitressProcess(ini, port, log_path))
        nodes.append(node)
        with sighup_for_children(sighup):
            node.server.start()
        node.workers()
        return node

    try:
        yield start
    finally:
        for node in nodes:
            kill_leftovers(node)


def port_is_free(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return False
    except ConnectionRefusedError:
        pass
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def request(connection: http.client.HTTPConnection, method: str, path: str, body=None, headers=None):
    auth = Client("", USER, PASSWORD).auth
    connection.request(method, path, body=body, headers={**auth, **(headers or {})})
    response = connection.getresponse()
    return response.status, response.headers, response.read()


def test_two_workers_serve_one_port_and_share_an_upload(serve):
    node = serve()
    workers = node.two_workers()
    assert len(workers) == 2 and node.pid not in workers
    assert f"Serving on http://127.0.0.1:{node.port} with 2 worker processes" in node.log()
    assert node.answers()  # /v2/ without credentials: 401

    # One upload, each of its requests on a fresh connection taken by the worker named.
    first, second = sorted(workers)
    data = os.urandom(3 * 65536 + 17)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    connection = node.connect_to(first)
    status, headers, _ = request(connection, "POST", "/v2/workers/shared/blobs/uploads/")
    connection.close()
    assert status == 202
    upload = path_of(headers["Location"])

    connection = node.connect_to(second)
    status, headers, _ = request(
        connection,
        "PATCH",
        upload,
        data[:65536],
        {"Content-Range": "0-65535", "Content-Type": "application/octet-stream"},
    )
    connection.close()
    assert status == 202 and headers["Range"] == "0-65535"
    upload = path_of(headers["Location"])

    connection = node.connect_to(first)
    status, headers, _ = request(connection, "PATCH", upload, data[65536 : 2 * 65536])
    connection.close()
    assert status == 202 and headers["Range"] == f"0-{2 * 65536 - 1}"
    upload = path_of(headers["Location"])

    connection = node.connect_to(second)
    separator = "&" if "?" in upload else "?"
    status, headers, body = request(connection, "PUT", f"{upload}{separator}digest={digest}", data[2 * 65536 :])
    connection.close()
    assert status == 201, body
    assert headers["Docker-Content-Digest"] == digest

    for worker in (first, second):
        connection = node.connect_to(worker)
        status, _, body = request(connection, "GET", f"/v2/workers/shared/blobs/{digest}")
        connection.close()
        assert (status, hashlib.sha256(body).hexdigest()) == (200, digest.split(":", 1)[1])
    assert node.workers() == workers  # nobody died on the way


def test_fresh_connections_are_spread_over_both_workers(serve):
    node = serve()
    workers = node.two_workers()
    served: dict[int, int] = {}
    deadline = time.monotonic() + WAIT
    while set(served) != workers and time.monotonic() < deadline:
        batch = []
        try:
            for _ in range(8):  # opened together: a worker busy accepting one leaves the next to the other
                connection = http.client.HTTPConnection("127.0.0.1", node.port, timeout=60)
                connection.connect()
                batch.append(connection)
            for connection in batch:
                owner = node.owner(connection)
                connection.request("GET", "/v2/")
                response = connection.getresponse()
                response.read()
                assert response.status == 401
                served[owner] = served.get(owner, 0) + 1
        finally:
            for connection in batch:
                connection.close()
    assert set(served) == workers, f"served by {served}, workers {workers}"  # and never by the first process


def test_a_killed_worker_is_replaced_and_the_server_keeps_answering(serve):
    node = serve()
    workers = node.two_workers()
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    poll(lambda: proc_stat(victim) is None, "the killed worker reaped by its supervisor")
    replaced = node.two_workers()
    assert victim not in replaced and workers - {victim} <= replaced
    assert "was killed by SIGKILL: starting another" in node.log()
    for _ in range(10):
        assert node.answers()
    (newcomer,) = replaced - workers
    connection = node.connect_to(newcomer)  # the new worker serves too
    status, _, _ = request(connection, "GET", "/v2/")
    connection.close()
    assert status == 200


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stop_signal_to_the_first_process_stops_every_worker(serve, number):
    node = serve()
    workers = node.two_workers()
    assert node.server.process is not None
    node.server.process.send_signal(number)
    assert node.server.process.wait(WAIT) == 0
    poll(lambda: not any(alive(pid) for pid in workers), "every worker gone")
    assert port_is_free(node.port)


def test_the_first_process_catches_the_stop_signals_and_its_workers_do_not(serve):
    node = serve()
    workers = node.two_workers()
    stops = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    assert stops <= signal_mask(node.pid, "SigCgt")
    for worker in workers:
        assert not {signal.SIGTERM, signal.SIGHUP} & (signal_mask(worker, "SigIgn") | signal_mask(worker, "SigCgt"))
        assert signal.SIGINT in signal_mask(worker, "SigCgt")  # KeyboardInterrupt, to end waitress's loop


def test_a_sighup_ignored_when_started_stays_ignored_by_every_process(serve):
    """As under `nohup`: closing the terminal must not stop the server."""
    node = serve(sighup=signal.SIG_IGN)
    workers = node.two_workers()
    for pid in (node.pid, *workers):
        assert signal.SIGHUP in signal_mask(pid, "SigIgn")
    assert node.server.process is not None
    node.server.process.send_signal(signal.SIGHUP)  # an ignored signal is dropped when sent: nothing can follow
    assert node.answers() and node.server.process.poll() is None
    assert node.workers() == workers
    node.server.process.terminate()  # while SIGTERM still stops it all
    assert node.server.process.wait(WAIT) == 0
    poll(lambda: not any(alive(pid) for pid in workers), "every worker gone")


def test_workers_end_by_themselves_when_the_first_process_is_killed(serve):
    node = serve()
    workers = node.two_workers()
    assert node.server.process is not None
    node.server.process.kill()
    assert node.server.process.wait(WAIT) == -signal.SIGKILL
    poll(lambda: not any(alive(pid) for pid in workers), "the orphaned workers ending (PR_SET_PDEATHSIG)")
    poll(lambda: port_is_free(node.port), "the port free again")


def pserve_until_it_exits(database, ini: os.PathLike[str], port: int, server_extra: str) -> tuple[int, str]:
    """`pserve` of an ini that should not start: its exit status and output (killed after 60 s)."""
    write_ini(
        str(ini),
        database_url=f"sqlite:///{database}/db.sqlite",
        storage_dir=str(database / "blobs"),
        port=port,
        server_extra=server_extra,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "pyramid.scripts.pserve", str(ini)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, output


def test_a_port_in_use_is_a_clear_error_and_starts_no_worker(database, tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        status, output = pserve_until_it_exits(database, tmp_path / "busy.ini", port, "workers = 2")
    finally:
        holder.close()
    assert status == 1, output
    assert "cannot listen on 127.0.0.1:" in output and "Address already in use" in output
    assert "worker processes" not in output  # no "Serving on ... with 2 worker processes"


@pytest.mark.parametrize("server_extra", ["workers = 1", ""])
def test_one_worker_is_the_first_process_itself(serve, server_extra):
    node = serve(server_extra)
    assert node.answers()
    connection, owner = node.connect()
    status, _, _ = request(connection, "GET", "/v2/")
    connection.close()
    assert (owner, status) == (node.pid, 200)
    assert node.workers() == set()
    assert "worker processes" not in node.log()


def test_workers_that_die_at_once_stop_the_supervisor_with_status_1(tmp_path):
    """Supervisor.run itself, forked from this process: a serve() that fails at once is a crash loop."""
    started = tmp_path / "started"

    def serve() -> None:
        with open(started, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        raise RuntimeError("cannot serve")

    supervisor = workers_module.Supervisor(2, serve)
    assert supervisor.run() == 1
    pids = {int(line) for line in started.read_text().split()}
    assert len(pids) >= workers_module.MAX_QUICK_DEATHS
    assert supervisor.workers == {}
    assert not any(alive(pid) for pid in pids)


@pytest.mark.parametrize(
    ("server_extra", "said"),
    [
        ("workers = many", "workers = 'many': a positive number"),
        ("workers = 2\nheader_timeout = soon", "could not convert string to float: 'soon'"),
        ("workers = 2\nbacklog = lots", "invalid literal for int()"),
        ("header_timeout = soon", "could not convert string to float: 'soon'"),
    ],
)
def test_a_bad_server_setting_is_a_clear_error_before_any_worker_starts(database, tmp_path, server_extra, said):
    status, output = pserve_until_it_exits(database, tmp_path / "bad.ini", free_port(), server_extra)
    assert status == 1, output
    assert "[server:main]: " in output and said in output, output
    assert "Serving on" not in output and "Traceback" not in output
