"""Section 4: small-image pushes (1 KiB layer + config + manifest, as docker sends them) by 8 workers (4 processes
x 2 threads), into one repository and each worker into its own; Stevedore with a Bearer token per worker for
repository:NAME:pull,push as docker does, Distribution (htpasswd) with Basic."""

from __future__ import annotations

import itertools

from benchmarks.race.context import Race, log
from benchmarks.race.image import new_image, push_image
from benchmarks.race.load import Connection, Step, Target, docker_setup
from benchmarks.race.load import run as run_load
from benchmarks.race.stats import rotated

PROCESSES, THREADS = 4, 2
_run_ids = itertools.count()


def contestants(race: Race) -> list[str]:
    return [v for v in race.variants if v in ("sqlite", "postgres")] + ["distribution"]


def run(race: Race) -> None:
    who = contestants(race)
    sizes = race.args.sizes
    for r in range(race.args.rounds):
        for where in ("one", "many"):
            run_id = next(_run_ids)

            def repository(worker: str, where: str = where, run_id: int = run_id) -> str:
                return "bench/small-one" if where == "one" else f"bench/small-{run_id}-{worker}"

            def step_of(worker: str, repository=repository, run_id: int = run_id) -> Step:  # type: ignore[no-untyped-def]
                def step(conn: Connection, _worker: str, i: int) -> str:
                    return push_image(conn, repository(worker), f"r{run_id}-{worker}-{i}", new_image())

                return step

            setup = docker_setup(
                lambda w, repository=repository: f"repository:{repository(w)}:pull,push", step_of, "docker"
            )
            for key in rotated(who, r):
                server = race.server(key)
                target = Target(server.host, server.port, server.username, server.password, race.args.io_timeout)
                tally = run_load(target, setup, PROCESSES, THREADS, sizes.warmup, sizes.duration)
                race.record(f"small_{where}", key, tally.ok / sizes.duration)
                race.record(f"small_{where}_errors", key, tally.errors)
                log(
                    f"  round {r + 1} small pushes, {where} repo{'s' if where == 'many' else ''} {key:12} "
                    f"{tally.ok / sizes.duration:7.1f} pushes/s, {tally.errors} errors"
                    f"{(': ' + tally.samples[0]) if tally.samples else ''}"
                )
