"""Section 2: pulls with curl, one at a time and 8 at once (aggregate MB/s, the server's CPU seconds per GB)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

from benchmarks.race.context import MB, Race, log
from benchmarks.race.stats import rotated
from benchmarks.throughput import BLOCK, BenchError, Blob, Server, proc_cpu_seconds, push_monolithic

CONCURRENT = 8


def contestants(race: Race) -> list[str]:
    return [*race.variants, "distribution", "bare"]


def curl_command(server: Server, path: str, output: str, timeout: float, write_out: bool = True) -> list[str]:
    """-L follows a 307 to S3; curl sends the -u credentials to the registry's host and port only, never to S3.
    With write_out, curl prints "<final status> <bytes> <redirects followed>" on stdout; without, it fails (-f) on
    an error status."""
    report = ["-w", "%{http_code} %{size_download} %{num_redirects}"] if write_out else ["-f"]
    return [
        "curl",
        "-s",
        "-S",
        "-L",
        "-o",
        output,
        "--max-time",
        str(int(timeout)),
        "-u",
        f"{server.username}:{server.password}",
        *report,
        f"http://{server.host}:{server.port}{path}",
    ]


def _check(label: str, out: str, size: int) -> int:
    """curl's -w line: the final status must be 200 with `size` bytes. Returns the number of redirects followed."""
    try:
        status, got, redirects = out.split()
    except ValueError:
        raise BenchError(f"{label}: curl printed {out!r}") from None
    if status != "200" or int(got) != size:
        raise BenchError(f"{label}: HTTP {status}, {got} bytes (expected 200, {size} bytes)")
    return int(redirects)


def curl_pulls(server: Server, path: str, size: int, count: int, timeout: float) -> tuple[float, float, int]:
    """`count` curls at once to /dev/null: wall seconds until the last ends, the server's CPU seconds meanwhile, and
    the redirects each followed."""
    cpu0 = proc_cpu_seconds(server.pid)
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(curl_command(server, path, "/dev/null", timeout), stdout=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    try:
        outs = [proc.communicate(timeout=timeout + 10)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    elapsed = time.perf_counter() - t0
    cpu = proc_cpu_seconds(server.pid) - cpu0
    redirects = [_check(f"GET {path}", out, size) for out in outs]
    return elapsed, cpu, max(redirects)


def verify_copy(server: Server, path: str, blob: Blob, scratch: Path, timeout: float) -> None:
    """Untimed: one pull into a file (on tmpfs when the data folder is), hashed after curl ends."""
    target = scratch / "pulled.bin"
    try:
        out = subprocess.run(
            curl_command(server, path, str(target), timeout), capture_output=True, text=True, timeout=timeout + 10
        ).stdout
        _check(f"GET {path}", out, blob.size)
        hasher = hashlib.sha256()
        with open(target, "rb") as handle:
            while chunk := handle.read(BLOCK):
                hasher.update(chunk)
        if f"sha256:{hasher.hexdigest()}" != blob.digest:
            raise BenchError(f"GET {path} from {server.label}: the bytes pulled are not the blob pushed")
    finally:
        target.unlink(missing_ok=True)


def run(race: Race, blob: Blob) -> None:
    who = contestants(race)
    timeout = race.args.io_timeout
    path = f"/v2/bench/pull/blobs/{blob.digest}"
    for key in who:  # untimed: the blob every pull reads
        push_monolithic(race.client(key), "bench/pull", blob)
    gb = CONCURRENT * blob.size / 1e9
    for r in range(race.args.rounds):
        for key in rotated(who, r):
            server = race.server(key)
            os.sync()
            seconds, _cpu, redirects = curl_pulls(server, path, blob.size, 1, timeout)
            if key == "s3-redirect" and not redirects:
                raise BenchError("Stevedore S3+redirect answered the blob GET without a redirect")
            race.record("pull", key, blob.size / MB / seconds)
            seconds8, cpu8, _ = curl_pulls(server, path, blob.size, CONCURRENT, timeout)
            race.record("pull8", key, CONCURRENT * blob.size / MB / seconds8)
            race.record("pull8_cpu", key, cpu8 / gb)
            verify_copy(server, path, blob, race.data_dir, timeout)
            log(
                f"  round {r + 1} pull {key:12} {blob.size / MB / seconds:8.0f} MB/s, x{CONCURRENT} "
                f"{CONCURRENT * blob.size / MB / seconds8:8.0f} MB/s, {cpu8 / gb:.2f} CPU-s/GB (digest checked)"
            )
