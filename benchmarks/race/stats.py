"""Pure arithmetic of the race: per-round ratios and their median (no I/O, unit-tested)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def round_ratios(ours: Sequence[float], theirs: Sequence[float]) -> list[float]:
    """ours[i] / theirs[i] for every round i measured on both sides (a zero or missing denominator is skipped)."""
    return [a / b for a, b in zip(ours, theirs, strict=False) if b]


def median_ratio(ours: Sequence[float], theirs: Sequence[float]) -> float | None:
    """The median of the per-round ratios: each round's two figures were taken minutes apart under the same noise,
    so their ratio is steadier than the ratio of two medians."""
    ratios = round_ratios(ours, theirs)
    return statistics.median(ratios) if ratios else None


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def rotated(items: Sequence[str], round_index: int) -> list[str]:
    """The contestants' order in round `round_index`: rotated by one each round, so each goes first in turn (with
    two contestants the order alternates)."""
    if not items:
        return []
    shift = round_index % len(items)
    return [*items[shift:], *items[:shift]]
