"""The state of one run: options, the fleet of servers, one keep-alive client per contestant, the samples."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.race.servers import LABELS, Fleet
from benchmarks.race.targets import Samples
from benchmarks.throughput import BenchError, Client, Server, proc_cpu_seconds

MB = 1_000_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Race:
    args: argparse.Namespace
    fleet: Fleet
    data_dir: Path  # test data (on tmpfs when it fits) and pulled copies
    variants: list[str]
    samples: Samples = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    clients: dict[str, Client] = field(default_factory=dict)

    def server(self, key: str) -> Server:
        server = self.fleet.servers.get(key)
        if server is None:
            log(f"starting {LABELS[key]}...")
            server = self.fleet.start(key)
        if not server.alive():
            raise BenchError(f"{LABELS[key]} is not running any more; its log: {server.log_path}")
        return server

    def client(self, key: str) -> Client:
        server = self.server(key)
        if key not in self.clients:
            self.clients[key] = server.client(self.args.io_timeout)
        return self.clients[key]

    def record(self, metric: str, who: str, value: float) -> None:
        self.samples.setdefault(metric, {}).setdefault(who, []).append(value)

    def close_clients(self) -> None:
        for client in self.clients.values():
            client.close()
        self.clients.clear()


def measured(server: Server, func: Callable[[], object]) -> tuple[float, float]:
    """Runs func after an untimed `sync`; its wall seconds and the server's CPU seconds meanwhile."""
    os.sync()
    cpu0 = proc_cpu_seconds(server.pid)
    t0 = time.perf_counter()
    func()
    elapsed = time.perf_counter() - t0
    return elapsed, proc_cpu_seconds(server.pid) - cpu0
