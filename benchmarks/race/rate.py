"""Section 3: docker's read path (HEAD manifest by tag, GET manifest by digest, HEAD blob) from 16 clients in 4
processes, with docker's credentials (Stevedore: a Bearer token; Distribution with htpasswd: Basic) and with Basic."""

from __future__ import annotations

from benchmarks.race.context import Race, log
from benchmarks.race.image import ACCEPT, digest, new_image, push_image
from benchmarks.race.load import Connection, Step, Target, docker_setup
from benchmarks.race.load import run as run_load
from benchmarks.race.stats import rotated
from benchmarks.throughput import BenchError

PROCESSES, THREADS = 4, 4
REPOSITORY, TAG = "bench/rate", "latest"


def contestants(race: Race) -> list[str]:
    return [v for v in race.variants if v in ("sqlite", "postgres")] + ["distribution"]


def target_of(race: Race, key: str) -> Target:
    server = race.server(key)
    return Target(server.host, server.port, server.username, server.password, race.args.io_timeout)


def run(race: Race) -> None:
    who = contestants(race)
    layer, config, manifest = new_image()
    for key in who:  # untimed: the image every client reads
        error = push_image(
            Connection(target_of(race, key), race.client(key).auth), REPOSITORY, TAG, (layer, config, manifest)
        )
        if error:
            raise BenchError(f"pushing the request-rate image to {key}: {error}")
    requests = [
        ("HEAD", f"/v2/{REPOSITORY}/manifests/{TAG}"),
        ("GET", f"/v2/{REPOSITORY}/manifests/{digest(manifest)}"),
        ("HEAD", f"/v2/{REPOSITORY}/blobs/{digest(layer)}"),
    ]

    def step(conn: Connection, _worker: str, i: int) -> str:
        method, path = requests[i % len(requests)]
        status, _response, error = conn.request(method, path, headers={"Accept": ACCEPT})
        return "" if 200 <= status < 300 else (error or f"{method} {path}: {status}")

    def step_of(_worker: str) -> Step:
        return step

    sizes = race.args.sizes
    for r in range(race.args.rounds):
        for mode in ("bearer", "basic"):
            setup = docker_setup(
                lambda _w: f"repository:{REPOSITORY}:pull", step_of, "docker" if mode == "bearer" else "basic"
            )
            for key in rotated(who, r):
                tally = run_load(target_of(race, key), setup, PROCESSES, THREADS, sizes.warmup, sizes.duration)
                race.record(f"rate_{mode}", key, tally.ok / sizes.duration)
                race.record(f"rate_{mode}_errors", key, tally.errors)
                log(
                    f"  round {r + 1} rate {mode:6} {key:12} {tally.ok / sizes.duration:8.0f} req/s, "
                    f"{tally.errors} errors{(': ' + tally.samples[0]) if tally.samples else ''}"
                )
