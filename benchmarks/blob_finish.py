"""What the folder store's early writeback saves: a large upload appended, then finished (fsync + rename), in-process.

    python -m benchmarks.blob_finish [--size-mib 256] [--rounds 5] [--windows 0,8,16] [--dir PATH]

No server and no network: the least noisy view of a push's last step. Each round appends one distinct blob of
--size-mib in 1 MiB chunks (as `iter_body` hands a request body to the store) with FolderBlobStore, once per
writeback window (0 = off, as before the change; the order rotates every round), after an untimed `sync` so no run
pays for the previous one's writeback, and times the append and the finish separately. Prints the medians.
--dir must be on the disk to measure (default: a temporary folder under the current directory).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator

from stevedore.adapters.blobs_fs import FolderBlobStore
from stevedore.domain.model import Digest

MiB = 1024 * 1024


def _chunks(data: bytes, salt: int) -> Iterator[bytes]:
    yield salt.to_bytes(8, "big") + data[8:MiB]
    for start in range(MiB, len(data), MiB):
        yield data[start : start + MiB]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--windows", default="0,8,16", help="writeback windows in MiB, comma-separated; 0 = off")
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    windows = [int(text) for text in args.windows.split(",")]
    data = os.urandom(args.size_mib * MiB)
    root = tempfile.mkdtemp(prefix="blob-finish-", dir=args.dir or os.getcwd())
    appends: dict[int, list[float]] = {window: [] for window in windows}
    finishes: dict[int, list[float]] = {window: [] for window in windows}
    salt = 0
    try:
        for round_number in range(args.rounds):
            order = windows[round_number % len(windows) :] + windows[: round_number % len(windows)]
            for window in order:
                store = FolderBlobStore(root, fsync=True, writeback_window=window * MiB)
                salt += 1
                hasher = hashlib.sha256()
                for chunk in _chunks(data, salt):
                    hasher.update(chunk)
                digest = Digest.parse(f"sha256:{hasher.hexdigest()}")
                upload_id = str(uuid.uuid4())
                store.start_upload(upload_id)
                os.sync()
                began = time.perf_counter()
                store.append(upload_id, _chunks(data, salt))
                appended = time.perf_counter()
                store.finish(upload_id, digest)
                finished = time.perf_counter()
                appends[window].append(appended - began)
                finishes[window].append(finished - appended)
                store.delete(digest)
                print(
                    f"round {round_number + 1} window {window:>3} MiB: append {appended - began:.3f} s, "
                    f"finish {finished - appended:.3f} s",
                    flush=True,
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n{args.size_mib} MiB, {args.rounds} rounds, medians (min-max)")
    print("window   | append s            | finish s            | append + finish s")
    for window in windows:
        total = [a + f for a, f in zip(appends[window], finishes[window], strict=True)]
        cells = [
            f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"
            for values in (appends[window], finishes[window], total)
        ]
        label = "off" if window == 0 else f"{window} MiB"
        print(f"{label:<8} | {cells[0]:<19} | {cells[1]:<19} | {cells[2]}")


if __name__ == "__main__":
    main()
