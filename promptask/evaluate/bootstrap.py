"""Seeded bootstrap intervals: one metric's, and the paired difference of two variants on the same items.

Each resample draws item indices with replacement and recomputes the metric
from those items' statistics (:class:`~promptask.evaluate.metrics.Metric`), so
corpus metrics (macro F1, BLEU, chrF) are resampled correctly.  A paired
difference uses the same draws for both variants, so the noise they share
(hard items, easy items) cancels.

>>> from promptask.evaluate.metrics import METRICS
>>> stats = [(1.0,), (0.0,), (1.0,), (1.0,)]
>>> interval(METRICS["accuracy"].combine, stats, resamples=200, seed=0)
(0.75, 0.25, 1.0)
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["RESAMPLES", "SEED", "interval", "paired_difference"]

RESAMPLES = 1000
SEED = 0
Combine = Callable[[Sequence[tuple[Any, ...]]], float]


def _percentiles(values: list[float], level: float) -> tuple[float, float]:
    values = sorted(values)
    tail = (1 - level) / 2
    low = values[int(tail * (len(values) - 1) + 0.5)]
    high = values[int((1 - tail) * (len(values) - 1) + 0.5)]
    return low, high


@functools.lru_cache(maxsize=16)
def _draws(n: int, resamples: int, seed: int) -> tuple[tuple[int, ...], ...]:
    """The resampled indices: the same for every metric and variant of an evaluation (and cheap to reuse)."""
    rng = random.Random(seed)
    population = range(n)
    return tuple(tuple(rng.choices(population, k=n)) for _ in range(resamples))


def interval(
    combine: Combine,
    stats: Sequence[tuple[Any, ...]],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """``(value, low, high)``: the metric and its percentile bootstrap interval."""
    value = combine(stats)
    if len(stats) < 2:
        return value, value, value
    samples = [combine([stats[i] for i in draw]) for draw in _draws(len(stats), resamples, seed)]
    low, high = _percentiles(samples, level)
    return value, min(low, value), max(high, value)


def paired_difference(
    combine: Combine,
    first: Sequence[tuple[Any, ...]],
    second: Sequence[tuple[Any, ...]],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """``(second - first, low, high)`` over the same items (``first[i]`` and ``second[i]`` are one item)."""
    if len(first) != len(second):
        raise ValueError("paired statistics need the same items in the same order")
    value = combine(second) - combine(first)
    if len(first) < 2:
        return value, value, value
    samples = []
    for draw in _draws(len(first), resamples, seed):
        samples.append(combine([second[i] for i in draw]) - combine([first[i] for i in draw]))
    low, high = _percentiles(samples, level)
    return value, low, high
