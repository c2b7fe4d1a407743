"""Many clients at once: `processes` forked processes of `threads` threads, each thread with its own keep-alive
connection and its own credentials (a Bearer token fetched as docker does, or Basic). Every thread runs its loop
untimed until `start_at` (the warm-up, which includes fetching the token), then counts what completes until
`stop_at`. Used by the request-rate and the small-push sections."""

from __future__ import annotations

import http.client
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.race.auth import basic, docker_auth


@dataclass
class Tally:
    ok: int = 0
    errors: int = 0
    samples: list[str] = field(default_factory=list)  # the first few errors, for the log

    def add(self, other: Tally) -> None:
        self.ok += other.ok
        self.errors += other.errors
        self.samples.extend(other.samples[: max(0, 5 - len(self.samples))])


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    username: str
    password: str
    timeout: float


class Connection:
    """One keep-alive connection that reconnects after the server closes it or after an error."""

    def __init__(self, target: Target, auth: str) -> None:
        self.target, self.auth = target, auth
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.target.host, self.target.port, timeout=self.target.timeout)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, http.client.HTTPResponse | None, str]:
        """(status, response, error text); status 0 when the request failed without an answer."""
        all_headers = {"Authorization": self.auth, **(headers or {})}
        if body is None and method in ("POST", "PUT", "PATCH"):
            all_headers["Content-Length"] = "0"
        try:
            self.conn.request(method, path, body=body, headers=all_headers)
            response = self.conn.getresponse()
            response.read()
            if response.will_close:
                self.conn.close()
            return response.status, response, ""
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            self.conn = self._connect()
            return 0, None, f"{method} {path}: {exc!r}"


# step(connection, worker id, iteration) -> error text, "" when the unit of work (a request, a push) succeeded
Step = Callable[[Connection, str, int], str]
# setup(target, worker id) -> (Authorization header, step)
Setup = Callable[[Target, str], tuple[str, Step]]


def _thread(target: Target, setup: Setup, worker: str, start_at: float, stop_at: float, tally: Tally) -> None:
    try:
        auth, step = setup(target, worker)
        conn = Connection(target, auth)
    except Exception as exc:
        tally.errors += 1
        tally.samples.append(f"{worker} setup: {exc!r}")
        return
    i = 0
    while time.monotonic() < stop_at:
        error = step(conn, worker, i)
        i += 1
        now = time.monotonic()
        if start_at <= now < stop_at:
            if error:
                tally.errors += 1
                if len(tally.samples) < 5:
                    tally.samples.append(error)
            else:
                tally.ok += 1
    conn.conn.close()


def _process(
    target: Target, setup: Setup, index: int, threads: int, start_at: float, stop_at: float, pipe: Any
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends its children
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    tallies = [Tally() for _ in range(threads)]
    workers = [
        threading.Thread(target=_thread, args=(target, setup, f"p{index}t{t}", start_at, stop_at, tallies[t]))
        for t in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    total = Tally()
    for tally in tallies:
        total.add(tally)
    pipe.send((total.ok, total.errors, total.samples))
    pipe.close()
    os._exit(0)  # no atexit handlers of the parent (its clean-up belongs to it)


def run(target: Target, setup: Setup, processes: int, threads: int, warmup: float, duration: float) -> Tally:
    """Forks the load, waits for it, returns the counts of the timed window (`duration` seconds)."""
    context = multiprocessing.get_context("fork")
    start_at = time.monotonic() + warmup
    stop_at = start_at + duration
    children = []
    try:
        for index in range(processes):
            parent_end, child_end = context.Pipe(duplex=False)
            proc = context.Process(target=_process, args=(target, setup, index, threads, start_at, stop_at, child_end))
            proc.start()
            child_end.close()
            children.append((proc, parent_end))
        total = Tally()
        for _proc, pipe in children:
            if not pipe.poll(warmup + duration + target.timeout + 30):
                raise TimeoutError("a load process did not report")
            ok, errors, samples = pipe.recv()
            total.add(Tally(ok, errors, samples))
        return total
    finally:
        for proc, _pipe in children:
            if proc.is_alive():
                proc.terminate()
            proc.join(10)


def docker_setup(scope_of: Callable[[str], str], step_of: Callable[[str], Step], mode: str) -> Setup:
    """mode "docker": the Authorization docker would use (token for the scope, or Basic); "basic": Basic."""

    def setup(target: Target, worker: str) -> tuple[str, Step]:
        if mode == "basic":
            auth = basic(target.username, target.password)
        else:
            auth = docker_auth(
                target.host, target.port, target.username, target.password, scope_of(worker), target.timeout
            )
        return auth, step_of(worker)

    return setup
