"""Section 1: large pushes (monolithic, chunked, docker-style), each contestant in every round, order rotated."""

from __future__ import annotations

import functools

from benchmarks.race.context import MB, Race, log, measured
from benchmarks.race.stats import rotated
from benchmarks.throughput import Blob, push_chunked, push_docker, push_monolithic

MODES = ("monolithic", "chunked", "docker")
VARIANTS = ("sqlite", "postgres", "s3")  # s3-redirect pushes exactly as s3 does: only its pulls differ


def contestants(race: Race) -> list[str]:
    return [v for v in race.variants if v in VARIANTS] + ["distribution", "bare"]


def run(race: Race, blobs: list[Blob]) -> None:
    """blobs: rounds x modes distinct blobs, blob (r * len(MODES) + m) for round r and mode m."""
    chunk = race.args.sizes.chunk
    pushers = {
        "monolithic": push_monolithic,
        "chunked": functools.partial(push_chunked, chunk=chunk),
        "docker": push_docker,
    }
    who = contestants(race)
    for r in range(race.args.rounds):
        for m, mode in enumerate(MODES):
            blob = blobs[r * len(MODES) + m]
            for key in rotated(who, r + m):
                client = race.client(key)
                seconds, cpu = measured(race.server(key), functools.partial(pushers[mode], client, "bench/push", blob))
                rate = blob.size / MB / seconds
                race.record(f"push_{mode}", key, rate)
                race.record(f"push_{mode}_cpu", key, cpu)
                log(f"  round {r + 1} push {mode:10} {key:12} {rate:8.1f} MB/s ({cpu:.2f} CPU-s)")
