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
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["accuracy_at_coverage", "auroc", "expected_calibration_error", "reliability_bins"]


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


def reliability_bins(
    confidence: Sequence[float], correct: Sequence[bool], bins: int = 10
) -> list[tuple[float, float, int]]:
    """Equal-width bins over [0, 1]: (mean confidence, accuracy, count) of each non-empty bin, in order."""
    grouped: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for c, ok in zip(confidence, correct, strict=True):
        grouped[min(bins - 1, max(0, math.ceil(c * bins) - 1))].append((c, ok))
    return [
        (sum(c for c, _ in group) / len(group), sum(ok for _, ok in group) / len(group), len(group))
        for group in grouped
        if group
    ]


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """The count-weighted mean gap between confidence and accuracy over equal-width bins (10 by default)."""
    total = len(confidence)
    if not total:
        return 0.0
    return (
        sum(count * abs(mean - accuracy) for mean, accuracy, count in reliability_bins(confidence, correct, bins))
        / total
    )


def accuracy_at_coverage(
    confidence: Sequence[float], correct: Sequence[bool], coverages: Sequence[float] = (0.5, 0.8, 1.0)
) -> dict[float, float]:
    """Accuracy over the most confident share of the items, for each share (at least one item each)."""
    ranked = [ok for _, ok in sorted(zip(confidence, correct, strict=True), key=lambda pair: -pair[0])]
    out: dict[float, float] = {}
    for coverage in coverages:
        kept = ranked[: max(1, round(coverage * len(ranked)))] if ranked else []
        out[coverage] = sum(kept) / len(kept) if kept else 0.0
    return out
