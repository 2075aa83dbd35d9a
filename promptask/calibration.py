"""Calibration of confidence against correctness: ECE, AUROC and accuracy at a coverage.

Plain functions over two parallel sequences, one confidence and one
correctness flag per item, so a benchmark or an evaluator can report them.

>>> confidence, correct = [0.9, 0.8, 0.4, 0.3], [True, True, False, True]
>>> auroc(confidence, correct)
0.6666666666666666
>>> round(expected_calibration_error(confidence, correct), 3)
0.35
>>> accuracy_at_coverage(confidence, correct, (0.5, 1.0))
{0.5: 1.0, 1.0: 0.75}

``promptask eval`` reports them per variant (``promptask.evaluate.calibrate``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

__all__ = [
    "Bin",
    "accuracy_at_coverage",
    "auroc",
    "coverage_curve",
    "expected_calibration_error",
    "reliability_bins",
    "reliability_diagram",
]


def auroc(confidence: Sequence[float], correct: Sequence[bool]) -> float | None:
    """How well confidence separates correct from incorrect items: P(a correct item ranks above an incorrect one).

    Ties count one half.  ``None`` when all items are correct or all incorrect.  One sort, O(n log n): each
    group of equal confidences wins over the incorrect items below it, and half of the incorrect ones beside it.

    >>> auroc([0.9, 0.5, 0.5, 0.1], [True, True, False, False])
    0.875
    """
    pairs = sorted(zip(confidence, correct, strict=True), key=lambda pair: pair[0])
    right = sum(1 for _, ok in pairs if ok)
    wrong = len(pairs) - right
    if not right or not wrong:
        return None
    wins = 0.0
    wrong_below = 0
    start = 0
    while start < len(pairs):
        end = start
        while end < len(pairs) and pairs[end][0] == pairs[start][0]:
            end += 1
        tied_right = sum(1 for _, ok in pairs[start:end] if ok)
        tied_wrong = end - start - tied_right
        wins += tied_right * wrong_below + 0.5 * tied_right * tied_wrong
        wrong_below += tied_wrong
        start = end
    return wins / (right * wrong)


class Bin(NamedTuple):
    """One bin of a reliability diagram: its edges, the mean confidence and the accuracy of its items, how many."""

    low: float
    high: float
    confidence: float
    accuracy: float
    items: int


def reliability_diagram(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> list[Bin]:
    """Equal-width bins over [0, 1], each ``(low, high]`` (0 falls in the first): the non-empty ones, in order.

    >>> reliability_diagram([0.95, 0.9, 0.3], [True, False, True], bins=2)[1]
    Bin(low=0.5, high=1.0, confidence=0.925, accuracy=0.5, items=2)
    """
    grouped: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for c, ok in zip(confidence, correct, strict=True):
        grouped[min(bins - 1, max(0, math.ceil(c * bins) - 1))].append((c, ok))
    return [
        Bin(i / bins, (i + 1) / bins, sum(c for c, _ in group) / len(group), sum(ok for _, ok in group) / len(group),
            len(group))
        for i, group in enumerate(grouped)
        if group
    ]  # fmt: skip


def reliability_bins(
    confidence: Sequence[float], correct: Sequence[bool], bins: int = 10
) -> list[tuple[float, float, int]]:
    """Equal-width bins over [0, 1]: (mean confidence, accuracy, count) of each non-empty bin, in order."""
    return [(b.confidence, b.accuracy, b.items) for b in reliability_diagram(confidence, correct, bins)]


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """The count-weighted mean gap between confidence and accuracy over equal-width bins (10 by default)."""
    total = len(confidence)
    if not total:
        return 0.0
    return (
        sum(count * abs(mean - accuracy) for mean, accuracy, count in reliability_bins(confidence, correct, bins))
        / total
    )


def _ranked(confidence: Sequence[float], correct: Sequence[bool]) -> list[bool]:
    """Correctness, most confident first (equal confidences keep their order)."""
    return [ok for _, ok in sorted(zip(confidence, correct, strict=True), key=lambda pair: -pair[0])]


def accuracy_at_coverage(
    confidence: Sequence[float], correct: Sequence[bool], coverages: Sequence[float] = (0.5, 0.8, 1.0)
) -> dict[float, float]:
    """Accuracy over the most confident share of the items, for each share (at least one item each)."""
    ranked = _ranked(confidence, correct)
    out: dict[float, float] = {}
    for coverage in coverages:
        kept = ranked[: max(1, round(coverage * len(ranked)))] if ranked else []
        out[coverage] = sum(kept) / len(kept) if kept else 0.0
    return out


def coverage_curve(confidence: Sequence[float], correct: Sequence[bool]) -> list[tuple[float, float]]:
    """The accuracy-vs-coverage curve: (share kept, accuracy of those kept), keeping the most confident first.

    >>> coverage_curve([0.9, 0.2, 0.6, 0.7], [True, False, False, True])
    [(0.25, 1.0), (0.5, 1.0), (0.75, 0.6666666666666666), (1.0, 0.5)]
    """
    ranked = _ranked(confidence, correct)
    curve = []
    right = 0
    for kept, ok in enumerate(ranked, 1):
        right += ok
        curve.append((kept / len(ranked), right / kept))
    return curve
