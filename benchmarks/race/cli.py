"""Command-line options of `python -m benchmarks.race` (pure: parsing only, unit-tested)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

VARIANTS = ("sqlite", "postgres", "s3", "s3-redirect")
SECTIONS = ("push", "pull", "rate", "small", "rss")
MiB = 1024 * 1024


@dataclass(frozen=True)
class Sizes:
    push: int  # the large push and pull blob (bytes)
    chunk: int  # PATCH size of the chunked push
    rss: int  # the RSS section's blob
    duration: float  # seconds of each request-rate or small-push measurement
    warmup: float  # seconds of untimed load before it


FULL = Sizes(push=256 * MiB, chunk=16 * MiB, rss=2048 * MiB, duration=5.0, warmup=2.0)
QUICK = Sizes(push=16 * MiB, chunk=4 * MiB, rss=64 * MiB, duration=1.0, warmup=1.0)


def _choices(kind: str, allowed: tuple[str, ...]):  # type: ignore[no-untyped-def]
    def parse(text: str) -> list[str]:
        chosen = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [part for part in chosen if part not in allowed]
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(
                f"unknown {kind} {', '.join(unknown) or '(none)'}: use {','.join(allowed)}"
            )
        return [part for part in allowed if part in chosen]  # canonical order, no duplicates

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.race",
        description="Stevedore against CNCF Distribution and a bare WSGI app: alternating rounds, medians of ratios.",
    )
    p.add_argument(
        "--variants",
        type=_choices("variant", VARIANTS),
        help=f"{','.join(VARIANTS)} (default: all "
        "that this machine can run: PostgreSQL needs initdb, S3 needs moto_server)",
    )
    p.add_argument(
        "--only",
        type=_choices("section", SECTIONS),
        default=list(SECTIONS),
        help=f"sections to run, from {','.join(SECTIONS)} (default: all)",
    )
    p.add_argument("--quick", action="store_true", help="a smoke run: 16 MiB blobs, 1 s loads, 1 round")
    p.add_argument("--rounds", type=int, help="rounds of every measurement (default 3, --quick 1)")
    p.add_argument("--json", metavar="PATH", help="also write every sample and the verdicts as JSON to PATH")
    p.add_argument("--timeout", type=int, default=1800, help="abort the whole run after this many seconds (1800)")
    p.add_argument("--io-timeout", type=float, default=300, help="socket/curl timeout of every request (300 s)")
    p.add_argument(
        "--workers",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="Stevedore's worker processes (`workers` in [server:main]); default: one per core, as production.ini's "
        "`workers = auto`",
    )
    p.add_argument("--workdir", help="parent folder of the servers' storage (default: the temp folder)")
    p.add_argument("--keep", action="store_true", help="keep the work folders (storage, logs) at the end")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser()
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.rounds < 1 or args.timeout < 1 or args.io_timeout <= 0 or args.workers < 1:
        p.error("--rounds, --workers, --timeout and --io-timeout must be positive")
    args.sizes = QUICK if args.quick else FULL
    return args


def resolve_variants(asked: list[str] | None, available: set[str]) -> tuple[list[str], list[str]]:
    """The variants to run and the ones skipped (asked for, or defaulted, but not runnable here)."""
    wanted = list(asked) if asked else list(VARIANTS)
    run = [v for v in wanted if v in available]
    return run, [v for v in wanted if v not in available]
