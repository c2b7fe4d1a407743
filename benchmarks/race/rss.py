"""Section 5: how much the server's peak RSS (VmHWM) grows while it receives (docker-style: one streamed PATCH) and
then serves a big blob; with workers, the most any of its processes grew. The peak is reset first
(/proc/PID/clear_refs), so earlier sections do not hide it."""

from __future__ import annotations

import hashlib
import subprocess

from benchmarks.race.context import Race, log
from benchmarks.race.pull import curl_command
from benchmarks.throughput import BLOCK, BenchError, Blob, Server, proc_status, push_docker, server_pids

MiB = 1024 * 1024


def contestants(race: Race) -> list[str]:
    # s3-redirect receives as s3 does, and its pulls are served by moto
    return [v for v in race.variants if v != "s3-redirect"] + ["distribution"]


def reset_peak(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM to the current RSS (Linux 4.0+)
        return True
    except OSError:
        return False


def _peak(pid: int) -> int:
    """VmHWM of the process, 0 when it is gone (a worker replaced meanwhile: the server's log says why)."""
    try:
        return proc_status(pid, "VmHWM")
    except OSError:
        return 0


def pull_and_hash(server: Server, path: str, blob: Blob, timeout: float) -> None:
    """curl to stdout, hashed here as it arrives (untimed: only the server's memory matters)."""
    command = curl_command(server, path, "-", timeout, write_out=False)
    hasher, total = hashlib.sha256(), 0
    with subprocess.Popen(command, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(BLOCK):
            hasher.update(chunk)
            total += len(chunk)
        if proc.wait(timeout=timeout) != 0:
            raise BenchError(f"curl GET {path} from {server.label} failed with status {proc.returncode}")
    if total != blob.size or f"sha256:{hasher.hexdigest()}" != blob.digest:
        raise BenchError(f"GET {path} from {server.label}: the bytes pulled are not the blob pushed")


def run(race: Race, blob: Blob) -> None:
    for key in contestants(race):
        server = race.server(key)
        client = race.client(key)
        pids = server_pids(server.pid)  # with workers, whichever of them serves the push or the pull
        exact = all([reset_peak(pid) for pid in pids])
        before = {pid: proc_status(pid, "VmRSS" if exact else "VmHWM") for pid in pids}
        push_docker(client, "bench/rss", blob)
        pull_and_hash(server, f"/v2/bench/rss/blobs/{blob.digest}", blob, race.args.io_timeout)
        growth = max(_peak(pid) - before[pid] for pid in pids) / MiB
        race.record("rss_growth", key, growth)
        if not exact:
            race.notes.append(f"{key}: VmHWM could not be reset; its growth is measured from the earlier peak")
        log(f"  rss {key:12} +{growth:.0f} MiB peak for {blob.size // MiB} MiB pushed and pulled (digest checked)")
