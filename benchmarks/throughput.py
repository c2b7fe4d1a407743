"""Blob push/pull throughput: Stevedore (waitress, SQLite, blob folder) side by side with CNCF Distribution.

Both servers are driven by the same plain-HTTP client, Python's stdlib ``http.client`` on one keep-alive connection,
with Basic auth on every request, so the numbers compare the servers rather than the clients. Blob bodies are
streamed from a temporary file of random bytes (generated once) and pulls are streamed into a hasher: no blob is
ever held whole in memory.

    python -m benchmarks.throughput [--size-mib 256] [--small 200] [--repeat 3] [--json out.json]

Every large blob is distinct (a window of the random file at a different offset; digests computed once, before any
timing), so no push ever finds its blob already stored. Each repetition runs the servers one after the other, on
the same blobs, and every timed operation starts after an (untimed) `sync`. The run is bounded by --timeout (and
every socket by --io-timeout); both servers are stopped at the end, on errors, on Ctrl-C and on SIGTERM.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import functools
import hashlib
import http.client
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.integration.clients.peer_registry import DistributionRegistry
from tests.integration.services import WaitressProcess, free_port, stevedore_cli, write_ini

MiB = 1024 * 1024
MB = 1_000_000
BLOCK = 1 * MiB  # client read/send block: large enough that the client is never the bottleneck
WINDOW_STEP = 4096  # large blob i is the file's bytes [i * WINDOW_STEP, i * WINDOW_STEP + size)
PUSH_MODES = ("monolithic", "docker", "chunked")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- test data ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Blob:
    path: str
    offset: int
    size: int
    digest: str


class FileSlice:
    """A readable window of a file: what http.client streams as a request body, `BLOCK` bytes at a time."""

    def __init__(self, path: str, offset: int, size: int) -> None:
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        self._file.seek(offset)
        self.remaining = size

    def read(self, amount: int = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        amount = self.remaining if amount is None or amount < 0 else min(amount, self.remaining)
        data = self._file.read(amount)
        if not data:
            raise OSError("the data file is shorter than expected")
        self.remaining -= len(data)
        return data

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> FileSlice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_data(workdir: Path, size: int, count: int) -> list[Blob]:
    """One file of random bytes, and `count` distinct blobs of `size` bytes read from it at different offsets."""
    path = workdir / "random.bin"
    total = size + (count - 1) * WINDOW_STEP
    with open(path, "wb") as handle:
        written = 0
        while written < total:
            chunk = os.urandom(min(BLOCK, total - written))
            handle.write(chunk)
            written += len(chunk)
    blobs = []
    for i in range(count):
        hasher = hashlib.sha256()
        with FileSlice(str(path), i * WINDOW_STEP, size) as body:
            while chunk := body.read(BLOCK):
                hasher.update(chunk)
        blobs.append(Blob(str(path), i * WINDOW_STEP, size, f"sha256:{hasher.hexdigest()}"))
    return blobs


def make_small(count: int, size: int) -> list[tuple[bytes, str]]:
    out = []
    for _ in range(count):
        data = os.urandom(size)
        out.append((data, f"sha256:{hashlib.sha256(data).hexdigest()}"))
    return out


# --- the client --------------------------------------------------------------------------------------------------
class BenchError(RuntimeError):
    pass


class Client:
    """A minimal registry client on one keep-alive http.client connection, with Basic auth on every request."""

    def __init__(self, host: str, port: int, username: str, password: str, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self.auth = f"Basic {token}"
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout, blocksize=BLOCK)

    def close(self) -> None:
        self.conn.close()

    def _send(self, method: str, path: str, body: Any, headers: dict[str, str]) -> http.client.HTTPResponse:
        all_headers = {"Authorization": self.auth, **headers}
        if body is None and method in ("POST", "PUT", "PATCH"):
            all_headers.setdefault("Content-Length", "0")
        try:
            self.conn.request(method, path, body=body, headers=all_headers)
            return self.conn.getresponse()
        except (ConnectionError, http.client.RemoteDisconnected, http.client.CannotSendRequest):
            if body is not None:  # a streamed body cannot be replayed
                raise
            self.conn.close()  # the server closed the idle connection: retry once on a new one
            self.conn = self._connect()
            self.conn.request(method, path, body=body, headers=all_headers)
            return self.conn.getresponse()

    def call(
        self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None, expect: int
    ) -> http.client.HTTPResponse:
        """A request whose (small) answer is read whole; fails unless the status is `expect`."""
        response = self._send(method, path, body, headers or {})
        payload = response.read()
        if response.status != expect:
            raise BenchError(f"{method} {path}: expected {expect}, got {response.status}: {payload[:500]!r}")
        if response.will_close:
            self.conn.close()
        return response

    def pull(self, path: str, expected_digest: str | None = None) -> int:
        """GET a blob, streamed into a hasher; checks the digest. Returns the byte count."""
        response = self._send("GET", path, None, {})
        if response.status != 200:
            raise BenchError(f"GET {path}: expected 200, got {response.status}: {response.read()[:500]!r}")
        hasher = hashlib.sha256()
        buffer = bytearray(BLOCK)
        view = memoryview(buffer)
        total = 0
        while n := response.readinto(view):
            hasher.update(view[:n])
            total += n
        if expected_digest is not None and f"sha256:{hasher.hexdigest()}" != expected_digest:
            raise BenchError(f"GET {path}: digest mismatch")
        if response.will_close:
            self.conn.close()
        return total


def _location(response: http.client.HTTPResponse) -> str:
    """The upload URL's path and query: Stevedore answers absolute URLs, Distribution may answer relative ones."""
    location = response.getheader("Location")
    if not location:
        raise BenchError("no Location header")
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _with_digest(location: str, digest: str) -> str:
    return f"{location}{'&' if '?' in location else '?'}digest={digest}"


def _check_created(response: http.client.HTTPResponse, digest: str) -> None:
    got = response.getheader("Docker-Content-Digest")
    if got is not None and got != digest:
        raise BenchError(f"server stored {got}, expected {digest}")


OCTETS = {"Content-Type": "application/octet-stream"}


def push_monolithic(client: Client, name: str, blob: Blob) -> None:
    """POST, then PUT <location>?digest= with the whole body."""
    location = _location(client.call("POST", f"/v2/{name}/blobs/uploads/", expect=202))
    with FileSlice(blob.path, blob.offset, blob.size) as body:
        headers = {**OCTETS, "Content-Length": str(blob.size)}
        created = client.call("PUT", _with_digest(location, blob.digest), body=body, headers=headers, expect=201)
    _check_created(created, blob.digest)


def push_docker(client: Client, name: str, blob: Blob) -> None:
    """docker's way: POST, one PATCH with the whole body and no Content-Range, then PUT ?digest= with no body."""
    location = _location(client.call("POST", f"/v2/{name}/blobs/uploads/", expect=202))
    with FileSlice(blob.path, blob.offset, blob.size) as body:
        headers = {**OCTETS, "Content-Length": str(blob.size)}
        location = _location(client.call("PATCH", location, body=body, headers=headers, expect=202))
    created = client.call("PUT", _with_digest(location, blob.digest), expect=201)
    _check_created(created, blob.digest)


def push_chunked(client: Client, name: str, blob: Blob, chunk: int) -> None:
    """POST, PATCHes of `chunk` bytes with Content-Range, then PUT ?digest= with no body."""
    location = _location(client.call("POST", f"/v2/{name}/blobs/uploads/", expect=202))
    start = 0
    while start < blob.size:
        length = min(chunk, blob.size - start)
        with FileSlice(blob.path, blob.offset + start, length) as body:
            headers = {
                **OCTETS,
                "Content-Length": str(length),
                "Content-Range": f"{start}-{start + length - 1}",
            }
            location = _location(client.call("PATCH", location, body=body, headers=headers, expect=202))
        start += length
    created = client.call("PUT", _with_digest(location, blob.digest), expect=201)
    _check_created(created, blob.digest)


def push_small(client: Client, name: str, data: bytes, digest: str) -> None:
    location = _location(client.call("POST", f"/v2/{name}/blobs/uploads/", expect=202))
    headers = {**OCTETS, "Content-Length": str(len(data))}
    _check_created(client.call("PUT", _with_digest(location, digest), body=data, headers=headers, expect=201), digest)


# --- the servers -------------------------------------------------------------------------------------------------
def proc_status(pid: int, key: str) -> int:
    """A `VmHWM`-style field of /proc/<pid>/status, in bytes."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
    raise BenchError(f"{key} not in /proc/{pid}/status")


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat from its fourth field (the state) on: the name before it may hold spaces."""
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()


def server_pids(pid: int) -> list[int]:
    """The server's process and its children (a Stevedore with `workers = N` serves from N forked workers)."""
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != pid:
            try:
                if int(_stat_fields(int(entry))[1]) == pid:
                    pids.append(int(entry))
            except (OSError, IndexError, ValueError):  # gone meanwhile
                continue
    return pids


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of the server so far: its process (all threads), its live children and the children it
    has reaped."""
    total = 0
    for one in server_pids(pid):
        try:
            fields = _stat_fields(one)
        except OSError:  # a child gone meanwhile: its time is in the parent's reaped-children fields
            continue
        total += int(fields[11]) + int(fields[12])
        if one == pid:
            total += int(fields[13]) + int(fields[14])
    return total / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    label: str
    host: str
    port: int
    username: str
    password: str
    pid: int
    stop: Callable[[], None]
    log_path: str
    samples: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    rss_idle: int = 0

    def client(self, timeout: float) -> Client:
        return Client(self.host, self.port, self.username, self.password, timeout)

    def alive(self) -> bool:
        return os.path.exists(f"/proc/{self.pid}") and _state(self.pid) != "Z"


def _state(pid: int) -> str:
    return _stat_fields(pid)[0]


def start_stevedore(base: Path, fsync: bool, threads: int | None) -> Server:
    """What the `stevedore_server` fixture does: an ini on SQLite + a blob folder, `db upgrade`, one user, waitress."""
    base.mkdir(parents=True)
    port = free_port()
    ini = str(base / "bench.ini")
    extra = f"stevedore.blob_fsync = {'true' if fsync else 'false'}"
    write_ini(
        ini, database_url=f"sqlite:///{base}/stevedore.sqlite", storage_dir=str(base / "blobs"), port=port, extra=extra
    )
    if threads is not None:
        text = Path(ini).read_text().replace("threads = 8", f"threads = {threads}")
        Path(ini).write_text(text)
    username, password = "bench", "bench-password-0123"
    for args, stdin in (
        (("db", "upgrade"), None),
        (("user", "create", username, "--password-stdin"), f"{password}\n"),
    ):
        result = stevedore_cli(ini, *args, stdin=stdin)
        if result.returncode != 0:
            raise BenchError(f"stevedore {' '.join(args)} failed: {result.stderr}")
    log_path = str(base / "server.log")
    server = WaitressProcess(ini, port, log_path)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    assert server.process is not None
    return Server("Stevedore", "127.0.0.1", port, username, password, server.process.pid, server.stop, log_path)


def start_distribution(base: Path) -> Server:
    registry = DistributionRegistry(
        base, username="bench", password="bench-password-0123", log_level="warn", access_log=False
    )
    try:
        live = registry.start()
    except BaseException:
        registry.stop()
        raise
    assert registry.proc is not None and registry.port is not None
    return Server(
        "Distribution",
        "127.0.0.1",
        registry.port,
        live.username,
        live.password,
        registry.proc.pid,
        registry.stop,
        str(registry.log_path),
    )


def distribution_version() -> str:
    try:
        out = subprocess.run(["docker-registry", "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip().split()[-1]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


# --- the measurements --------------------------------------------------------------------------------------------
OPERATIONS: list[tuple[str, str, str]] = [
    # key, label, unit
    ("push_monolithic", "push monolithic (POST + PUT)", "MB/s"),
    ("push_docker", "push docker-style (POST + PATCH + PUT)", "MB/s"),
    ("push_chunked", "push chunked ({chunk} MiB PATCHes)", "MB/s"),
    ("pull", "pull (GET)", "MB/s"),
    ("small_push", "small push, {small_kib} KiB (POST + PUT)", "req/s"),
    ("small_head", "small HEAD", "req/s"),
    ("small_get", "small GET", "req/s"),
    ("small_all", "small push + HEAD + GET, overall", "req/s"),
]


def timed(server: Server, key: str, func: Callable[[], None], amount: float) -> float:
    """Runs func; records amount / seconds under `key`, and the server's CPU seconds."""
    if not server.alive():
        raise BenchError(f"{server.label} is not running any more; its log: {server.log_path}")
    os.sync()  # untimed: every measurement starts without the previous one's dirty pages still being written back
    cpu0 = proc_cpu_seconds(server.pid)
    t0 = time.perf_counter()
    func()
    elapsed = time.perf_counter() - t0
    server.cpu.setdefault(key, []).append(proc_cpu_seconds(server.pid) - cpu0)
    rate = amount / elapsed
    server.samples.setdefault(key, []).append(rate)
    return rate


def warm_up(server: Server, client: Client) -> None:
    client.call("GET", "/v2/", expect=200)
    data, digest = make_small(1, 1024)[0]
    push_small(client, "bench/warmup", data, digest)
    client.call("HEAD", f"/v2/bench/warmup/blobs/{digest}", expect=200)
    client.pull(f"/v2/bench/warmup/blobs/{digest}", digest)
    server.rss_idle = proc_status(server.pid, "VmHWM")


def run_large(servers: list[Server], clients: dict[str, Client], big: list[Blob], args: argparse.Namespace) -> None:
    repeat = args.repeat
    chunk = args.chunk_mib * MiB
    pushers: dict[str, Callable[[Client, str, Blob], None]] = {
        "monolithic": push_monolithic,
        "docker": push_docker,
        "chunked": functools.partial(push_chunked, chunk=chunk),
    }
    for m, mode in enumerate(PUSH_MODES):
        for rep in range(repeat):
            blob = big[m * repeat + rep]
            for server in servers:
                client = clients[server.label]
                push, repo = pushers[mode], f"bench/{mode}"
                rate = timed(server, f"push_{mode}", functools.partial(push, client, repo, blob), blob.size / MB)
                log(f"  {server.label:12} push {mode:10} #{rep + 1}: {rate:8.1f} MB/s")
    for rep in range(repeat):
        blob = big[rep]  # the monolithic pushes, one distinct blob per repetition
        for server in servers:
            client = clients[server.label]
            path = f"/v2/bench/monolithic/blobs/{blob.digest}"
            pull = functools.partial(_pull_exact, client, path, blob.digest, blob.size)
            rate = timed(server, "pull", pull, blob.size / MB)
            log(f"  {server.label:12} pull            #{rep + 1}: {rate:8.1f} MB/s")


def _pull_exact(client: Client, path: str, digest: str, size: int) -> None:
    got = client.pull(path, digest)
    if got != size:
        raise BenchError(f"GET {path}: {got} bytes, expected {size}")


def run_small(
    servers: list[Server], clients: dict[str, Client], small: list[list[tuple[bytes, str]]], repeat: int
) -> None:
    for rep in range(repeat):
        blobs = small[rep]
        n = len(blobs)
        for server in servers:
            client = clients[server.label]
            name = f"bench/small{rep}"
            t0 = time.perf_counter()

            def push_all(c: Client = client, name: str = name, blobs: list[tuple[bytes, str]] = blobs) -> None:
                for data, digest in blobs:
                    push_small(c, name, data, digest)

            def head_all(c: Client = client, name: str = name, blobs: list[tuple[bytes, str]] = blobs) -> None:
                for data, digest in blobs:
                    response = c.call("HEAD", f"/v2/{name}/blobs/{digest}", expect=200)
                    if response.getheader("Content-Length") != str(len(data)):
                        raise BenchError(f"HEAD {digest}: Content-Length {response.getheader('Content-Length')}")

            def get_all(c: Client = client, name: str = name, blobs: list[tuple[bytes, str]] = blobs) -> None:
                for data, digest in blobs:
                    _pull_exact(c, f"/v2/{name}/blobs/{digest}", digest, len(data))

            push = timed(server, "small_push", push_all, 2 * n)
            head = timed(server, "small_head", head_all, n)
            get = timed(server, "small_get", get_all, n)
            elapsed = time.perf_counter() - t0
            server.samples.setdefault("small_all", []).append(4 * n / elapsed)
            server.cpu.setdefault("small_all", []).append(
                sum(server.cpu[k][-1] for k in ("small_push", "small_head", "small_get"))
            )
            log(
                f"  {server.label:12} small #{rep + 1}: push {push:7.0f} req/s, HEAD {head:7.0f} req/s, "
                f"GET {get:7.0f} req/s"
            )


# --- the report --------------------------------------------------------------------------------------------------
def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def report(servers: list[Server], args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    by_label = {s.label: s for s in servers}
    ste, dist = by_label.get("Stevedore"), by_label.get("Distribution")
    rows = []
    results: dict[str, Any] = {}
    for key, label, unit in OPERATIONS:
        label = label.format(chunk=args.chunk_mib, small_kib=args.small_kib)
        medians = {}
        for server in servers:
            if key in server.samples:
                medians[server.label] = statistics.median(server.samples[key])
                results.setdefault(server.label, {})[key] = {
                    "unit": unit,
                    "median": medians[server.label],
                    "samples": server.samples[key],
                    "server_cpu_seconds": server.cpu.get(key, []),
                }
        if not medians:
            continue
        s, d = medians.get("Stevedore"), medians.get("Distribution")
        ratio = f"{s / d:.2f}x" if s and d else "-"
        digits = 1 if unit == "MB/s" else 0
        rows.append((f"{label} [{unit}]", _fmt(s, digits), _fmt(d, digits), ratio))
    for server in servers:
        results.setdefault(server.label, {})["rss"] = {
            "unit": "MiB",
            "idle_peak": server.rss_idle / MiB,
            "peak": proc_status(server.pid, "VmHWM") / MiB,
        }
    for key, label in (("idle_peak", "server peak RSS after warm-up"), ("peak", "server peak RSS after the run")):
        s_rss = results["Stevedore"]["rss"][key] if ste else None
        d_rss = results["Distribution"]["rss"][key] if dist else None
        ratio = f"{s_rss / d_rss:.2f}x" if s_rss and d_rss else "-"
        rows.append((f"{label}, VmHWM [MiB]", _fmt(s_rss, 0), _fmt(d_rss, 0), ratio))

    # server CPU seconds per operation (median), to see which side is CPU-bound
    cpu_rows = []
    for key, label, _unit in OPERATIONS:
        label = label.format(chunk=args.chunk_mib, small_kib=args.small_kib)
        values = {s.label: statistics.median(s.cpu[key]) for s in servers if key in s.cpu}
        if values:
            cpu_rows.append((label, _fmt(values.get("Stevedore"), 2), _fmt(values.get("Distribution"), 2), ""))

    header = ("operation", "Stevedore", "Distribution", "ratio")
    table = _table(header, rows)
    cpu_table = _table(("server CPU seconds per run (median)", "Stevedore", "Distribution", ""), cpu_rows)
    return table + "\n\n" + cpu_table, results


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        cells = zip(row, widths, strict=True)
        return " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(cells))

    sep = "-+-".join("-" * w for w in widths)
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


# --- main --------------------------------------------------------------------------------------------------------
class Interrupted(BaseException):
    pass


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(f"signal {signal.Signals(signum).name}")


def _raise_timeout(signum: int, frame: object) -> None:
    raise TimeoutError("the run exceeded --timeout")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256, help="size of each large blob (default 256)")
    parser.add_argument("--small", type=int, default=200, help="number of small blobs per repetition (default 200)")
    parser.add_argument("--small-kib", type=int, default=64, help="size of each small blob (default 64)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of every measurement (default 3)")
    parser.add_argument("--chunk-mib", type=int, default=8, help="PATCH size of the chunked push (default 8)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--only", choices=("stevedore", "distribution"), help="benchmark one server only")
    parser.add_argument("--no-fsync", action="store_true", help="run Stevedore with stevedore.blob_fsync = false")
    parser.add_argument("--threads", type=int, help="waitress threads for Stevedore (default: the ini's 8)")
    parser.add_argument("--workdir", help="parent folder for data and server storage (default: the temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (data, storage, logs)")
    parser.add_argument("--timeout", type=int, default=900, help="abort the whole run after this many seconds")
    parser.add_argument("--io-timeout", type=float, default=120, help="socket timeout of every request (seconds)")
    args = parser.parse_args(argv)
    if args.size_mib < 1 or args.small < 0 or args.repeat < 1 or args.chunk_mib < 1 or args.small_kib < 1:
        parser.error("sizes and counts must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored (`cmd &`)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGALRM, _raise_timeout)
    signal.alarm(args.timeout)
    workdir = Path(tempfile.mkdtemp(prefix="stevedore-bench-", dir=args.workdir))
    servers: list[Server] = []
    clients: dict[str, Client] = {}
    started = time.monotonic()
    try:
        size = args.size_mib * MiB
        log(
            f"work folder {workdir}; generating {args.size_mib} MiB of random data and "
            f"{len(PUSH_MODES) * args.repeat} blob digests..."
        )
        big = make_data(workdir, size, len(PUSH_MODES) * args.repeat)
        small = [make_small(args.small, args.small_kib * 1024) for _ in range(args.repeat)]
        if args.only != "distribution":
            log("starting Stevedore (waitress, SQLite, blob folder)...")
            servers.append(start_stevedore(workdir / "stevedore", fsync=not args.no_fsync, threads=args.threads))
        if args.only != "stevedore":
            log(f"starting Distribution {distribution_version()} (docker-registry, filesystem, htpasswd)...")
            servers.append(start_distribution(workdir / "distribution"))
        for server in servers:
            clients[server.label] = server.client(args.io_timeout)
            warm_up(server, clients[server.label])
        log(f"large blobs: {args.size_mib} MiB, {args.repeat} repetitions")
        run_large(servers, clients, big, args)
        if args.small:
            log(f"small blobs: {args.small} x {args.small_kib} KiB, {args.repeat} repetitions")
            run_small(servers, clients, small, args.repeat)
        table, results = report(servers, args)
        elapsed = time.monotonic() - started
        print(table)
        print(
            f"\n{args.size_mib} MiB blobs, {args.small} x {args.small_kib} KiB small blobs, median of {args.repeat}; "
            f"MB = 10^6 bytes; ratio = Stevedore / Distribution; one client connection, plain HTTP on 127.0.0.1; "
            f"{os.cpu_count()} cores; {elapsed:.0f} s"
        )
        if args.json:
            document = {
                "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                    "distribution": distribution_version(),
                },
                "parameters": {
                    "size_mib": args.size_mib,
                    "small": args.small,
                    "small_kib": args.small_kib,
                    "repeat": args.repeat,
                    "chunk_mib": args.chunk_mib,
                    "stevedore_blob_fsync": not args.no_fsync,
                    "stevedore_threads": args.threads or 8,
                },
                "units": {"MB": MB},
                "elapsed_seconds": elapsed,
                "results": results,
            }
            Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
            log(f"results written to {args.json}")
        return 0
    except (KeyboardInterrupt, Interrupted) as exc:
        log(f"interrupted ({str(exc) or 'Ctrl-C'}); stopping the servers")
        return 130
    except (BenchError, TimeoutError, OSError, http.client.HTTPException) as exc:
        log(f"benchmark failed: {exc!r}")
        for server in servers:
            log(f"--- {server.label} log ({server.log_path}), last lines ---")
            log("\n".join(Path(server.log_path).read_text(errors="replace").splitlines()[-20:]))
        return 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the clean-up
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for client in clients.values():
            client.close()
        for server in servers:
            try:
                server.stop()
            except Exception as exc:  # stop the others anyway
                log(f"stopping {server.label} failed: {exc!r}")
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
