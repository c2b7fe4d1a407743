"""The tables on stdout: one per measurement, a row per contestant (median, each round's figure, medians of the
per-round ratios), then the TARGETS verdicts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.race.servers import LABELS
from benchmarks.race.stats import median, median_ratio
from benchmarks.race.targets import Samples, Verdict
from benchmarks.throughput import _table

ORDER = ("sqlite", "postgres", "s3", "s3-redirect", "distribution", "bare")


@dataclass(frozen=True)
class Spec:
    title: str
    columns: tuple[tuple[str, str, int], ...]  # (metric, heading, digits); the first is the one compared
    compare: tuple[str, ...] = ("distribution",)
    errors: str | None = None  # a metric summed over the rounds
    note: str = ""


def specs(mib: int, chunk_mib: int, rss_mib: int) -> list[Spec]:
    push = [
        Spec(
            f"push {mode}, {mib} MiB ({how})",
            ((f"push_{mode}", "MB/s", 1), (f"push_{mode}_cpu", "CPU-s", 2)),
            ("distribution", "bare"),
        )
        for mode, how in (
            ("monolithic", "POST + PUT"),
            ("chunked", f"{mib // chunk_mib} x {chunk_mib} MiB PATCHes"),
            ("docker", "POST + one PATCH without Content-Range + PUT"),
        )
    ]
    return [
        *push,
        Spec(f"pull {mib} MiB, curl", (("pull", "MB/s", 0),)),
        Spec(
            f"8 concurrent pulls of {mib} MiB, curl",
            (("pull8", "MB/s", 0), ("pull8_cpu", "CPU-s/GB", 2)),
            note="CPU-s/GB: the server process's user + system CPU per GB served; for S3+redirect the app's only "
            "(moto serves the bytes)",
        ),
        Spec(
            "request rate, Bearer (Distribution: Basic), 16 clients",
            (("rate_bearer", "req/s", 0),),
            errors="rate_bearer_errors",
        ),
        Spec("request rate, Basic, 16 clients", (("rate_basic", "req/s", 0),), errors="rate_basic_errors"),
        Spec("small pushes into one repository, 8 workers", (("small_one", "pushes/s", 1),), errors="small_one_errors"),
        Spec(
            "small pushes, each worker its own repository", (("small_many", "pushes/s", 1),), errors="small_many_errors"
        ),
        Spec(f"peak RSS growth pushing and pulling {rss_mib} MiB", (("rss_growth", "MiB", 0),)),
    ]


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def render(spec: Spec, samples: Samples) -> str | None:
    main = spec.columns[0][0]
    present = [key for key in ORDER if samples.get(main, {}).get(key)]
    if not present:
        return None
    header = ["contestant", *(h for _m, h, _d in spec.columns), "rounds"]
    header += [f"vs {LABELS[c]}" for c in spec.compare] + (["errors"] if spec.errors else [])
    rows = []
    for key in present:
        cells = [LABELS[key]]
        cells += [_fmt(median(samples.get(m, {}).get(key, [])), d) for m, _h, d in spec.columns]
        cells.append(" ".join(_fmt(v, spec.columns[0][2]) for v in samples[main][key]))
        for other in spec.compare:
            ratio = None if other == key else median_ratio(samples[main][key], samples[main].get(other, []))
            cells.append("-" if ratio is None else f"{ratio:.2f}x")
        if spec.errors:
            cells.append(str(int(sum(samples.get(spec.errors, {}).get(key, [])))))
        rows.append(tuple(cells))
    text = f"{spec.title}\n{_table(tuple(header), rows)}"
    return f"{text}\n({spec.note})" if spec.note else text


def render_targets(verdicts: Sequence[Verdict]) -> str:
    rows = [(v.target, LABELS.get(v.variant, v.variant), v.measured, v.word) for v in verdicts]
    if not rows:
        return "TARGETS\n(no target measured)"
    return "TARGETS\n" + _table(("target", "Stevedore", "measured", "verdict"), rows)
