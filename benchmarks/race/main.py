"""Running the race: options, data, the sections in order, the report; clean-up on every way out."""

from __future__ import annotations

import contextlib
import datetime
import http.client
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from benchmarks.race import pull, push, rate, rss, small
from benchmarks.race.cli import parse_args, resolve_variants
from benchmarks.race.context import Race, log
from benchmarks.race.report import render, render_targets, specs
from benchmarks.race.servers import Fleet, available_variants
from benchmarks.race.targets import evaluate
from benchmarks.throughput import BenchError, distribution_version, make_data

MiB = 1024 * 1024


class Interrupted(BaseException):
    pass


def _interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(f"signal {signal.Signals(signum).name}")


def _timed_out(_signum: int, _frame: object) -> None:
    raise TimeoutError("the run exceeded --timeout")


def data_folder(needed: int, fallback: Path) -> Path:
    """Test data on tmpfs when it fits with room to spare (the client then reads it at memory speed)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        stats = os.statvfs(shm)
        if stats.f_bavail * stats.f_frsize > needed + 2048 * MiB:
            return Path(tempfile.mkdtemp(prefix="stevedore-race-", dir=shm))
    path = fallback / "data"
    path.mkdir()
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    variants, skipped = resolve_variants(args.variants, available_variants())
    if args.variants and skipped:
        print(f"cannot run {', '.join(skipped)} here (PostgreSQL needs initdb, S3 needs moto_server)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGALRM, _timed_out)
    signal.alarm(args.timeout)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="stevedore-race-", dir=args.workdir))
    fleet = Fleet(workdir, workers=args.workers)
    sizes, rounds = args.sizes, args.rounds
    sections = args.only
    data_dir = None
    race = None
    try:
        if skipped:
            log(f"skipping {', '.join(skipped)}: not runnable on this machine")
        needed = (3 * rounds + 1) * sizes.push + (sizes.rss if "rss" in sections else 0)
        data_dir = data_folder(needed, workdir)
        race = Race(args, fleet, data_dir, variants)
        log(
            f"variants {','.join(variants)} (Stevedore: {args.workers} worker process(es)); "
            f"sections {','.join(sections)}; {rounds} round(s); work folder {workdir}, "
            f"data in {data_dir}"
        )
        blobs = []
        if "push" in sections or "pull" in sections:
            log(f"generating {3 * rounds + 1} blobs of {sizes.push // MiB} MiB...")
            (data_dir / "push").mkdir()
            blobs = make_data(data_dir / "push", sizes.push, 3 * rounds + 1)
        if "push" in sections:
            log("push: monolithic, chunked, docker-style")
            push.run(race, blobs[:-1])
        if "pull" in sections:
            log("pull: curl, 1 and 8 at once")
            pull.run(race, blobs[-1])
        if "rate" in sections:
            log(f"request rate: {rate.PROCESSES} processes x {rate.THREADS} threads, {sizes.duration:.0f} s each")
            rate.run(race)
        if "small" in sections:
            log(f"small pushes: {small.PROCESSES} processes x {small.THREADS} threads, {sizes.duration:.0f} s each")
            small.run(race)
        if "rss" in sections:
            log(f"peak RSS: generating a {sizes.rss // MiB} MiB blob...")
            (data_dir / "rss").mkdir()
            big = make_data(data_dir / "rss", sizes.rss, 1)[0]
            rss.run(race, big)
        race.close_clients()
        verdicts = evaluate(race.samples, variants)
        elapsed = time.monotonic() - started
        tables = [render(spec, race.samples) for spec in specs(sizes.push // MiB, sizes.chunk // MiB, sizes.rss // MiB)]
        print("\n\n".join(t for t in tables if t))
        print()
        print(render_targets(verdicts))
        for note in race.notes:
            print(f"note: {note}")
        print(
            f"\n{rounds} round(s), the contestants' order rotated every round; ratios are medians of per-round ratios; "
            f"MB = 10^6 bytes; plain HTTP on 127.0.0.1; {os.cpu_count()} cores; Distribution {distribution_version()};"
            f" elapsed {elapsed:.0f} s"
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
                    "variants": variants,
                    "sections": sections,
                    "rounds": rounds,
                    "sizes": asdict(sizes),
                    "quick": args.quick,
                },
                "elapsed_seconds": elapsed,
                "samples": race.samples,
                "targets": [{**asdict(v), "verdict": v.word} for v in verdicts],
                "notes": race.notes,
            }
            Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
            log(f"results written to {args.json}")
        return 0
    except (KeyboardInterrupt, Interrupted) as exc:
        log(f"interrupted ({str(exc) or 'Ctrl-C'}); stopping the servers")
        return 130
    except Exception as exc:
        expected = (BenchError, TimeoutError, OSError, RuntimeError, http.client.HTTPException)
        log(f"benchmark failed: {exc!r}" if isinstance(exc, expected) else traceback.format_exc())
        for server in fleet.servers.values():
            log(f"--- {server.label} log ({server.log_path}), last lines ---")
            with contextlib.suppress(OSError):
                log("\n".join(Path(server.log_path).read_text(errors="replace").splitlines()[-20:]))
        return 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the clean-up
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if race is not None:
            race.close_clients()
        fleet.stop(log)
        if args.keep:
            log(f"kept {workdir} and {data_dir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            if data_dir is not None:
                shutil.rmtree(data_dir, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
