"""The issue's targets, judged from the per-round samples (pure, unit-tested).

`samples[metric][contestant]` is a list with one figure per round, in round order; contestants are the Stevedore
variants (sqlite, postgres, s3, s3-redirect), "distribution" and "bare" (the bare WSGI app on the same waitress).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.race.stats import median, median_ratio

Samples = dict[str, dict[str, list[float]]]
DIST, BARE = "distribution", "bare"
PUSH_MODES = ("monolithic", "chunked", "docker")
DATABASES = ("sqlite", "postgres")
RSS_LIMIT_MIB = 100.0


@dataclass(frozen=True)
class Verdict:
    target: str
    variant: str
    measured: str
    met: bool | None  # None: not measured

    @property
    def word(self) -> str:
        return "not measured" if self.met is None else ("met" if self.met else "NOT met")


def _series(samples: Samples, metric: str, who: str) -> list[float]:
    return samples.get(metric, {}).get(who, [])


def _ratio_text(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def _at_least(ratio: float | None, bound: float) -> bool | None:
    return None if ratio is None else ratio >= bound


def _all(*checks: bool | None) -> bool | None:
    if any(check is None for check in checks):
        return None
    return all(checks)


def evaluate(samples: Samples, variants: Sequence[str]) -> list[Verdict]:
    rows: list[Verdict] = []
    for mode in PUSH_MODES:
        metric = f"push_{mode}"
        for v in variants:
            if not _series(samples, metric, v):
                continue
            vs_dist = median_ratio(_series(samples, metric, v), _series(samples, metric, DIST))
            vs_bare = median_ratio(_series(samples, metric, v), _series(samples, metric, BARE))
            rows.append(
                Verdict(
                    f"{mode} push >= 1.2x Distribution and >= 0.9x bare app",
                    v,
                    f"{_ratio_text(vs_dist)} Distribution, {_ratio_text(vs_bare)} bare",
                    _all(_at_least(vs_dist, 1.2), _at_least(vs_bare, 0.9)),
                )
            )
    for v in variants:
        if _series(samples, "pull", v):
            ratio = median_ratio(_series(samples, "pull", v), _series(samples, "pull", DIST))
            rows.append(Verdict("pull >= 1x Distribution", v, _ratio_text(ratio), _at_least(ratio, 1.0)))
    for v in variants:
        if _series(samples, "pull8", v):
            rate = median_ratio(_series(samples, "pull8", v), _series(samples, "pull8", DIST))
            cpu = median_ratio(_series(samples, "pull8_cpu", v), _series(samples, "pull8_cpu", DIST))
            cpu_ok = None if cpu is None else cpu <= 2.0
            note = " (app CPU only: moto serves the bytes)" if v == "s3-redirect" else ""
            rows.append(
                Verdict(
                    "8 concurrent pulls >= 0.9x Distribution MB/s at <= 2x its CPU/GB",
                    v,
                    f"{_ratio_text(rate)} MB/s, {_ratio_text(cpu)} CPU/GB{note}",
                    _all(_at_least(rate, 0.9), cpu_ok),
                )
            )
    for auth in ("bearer", "basic"):
        metric = f"rate_{auth}"
        for v in DATABASES:
            if v in variants and _series(samples, metric, v):
                ratio = median_ratio(_series(samples, metric, v), _series(samples, metric, DIST))
                label = "Bearer" if auth == "bearer" else "Basic"
                rows.append(
                    Verdict(
                        f"request rate ({label}) >= 1x Distribution (htpasswd)",
                        v,
                        _ratio_text(ratio),
                        _at_least(ratio, 1.0),
                    )
                )
    for v in DATABASES:
        if v in variants and _series(samples, "small_one", v):
            ratio = median_ratio(_series(samples, "small_one", v), _series(samples, "small_one", DIST))
            errors = int(sum(_series(samples, "small_one_errors", v)))
            rows.append(
                Verdict(
                    "small pushes into one repository >= 1x Distribution, 0 errors",
                    v,
                    f"{_ratio_text(ratio)}, {errors} errors",
                    _all(_at_least(ratio, 1.0), errors == 0),
                )
            )
    for v in variants:
        growth = median(_series(samples, "rss_growth", v))
        if growth is not None:
            rows.append(
                Verdict(
                    f"RSS growth < {RSS_LIMIT_MIB:.0f} MiB for the big blob",
                    v,
                    f"{growth:.0f} MiB",
                    growth < RSS_LIMIT_MIB,
                )
            )
    return rows
