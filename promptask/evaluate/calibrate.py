"""Calibration of a variant: does its confidence tell its right answers from its wrong ones?

An item is *right or wrong* by the task's primary (first) metric, where that
metric judges one item as a whole:

- a label metric (``accuracy``, ``macro_f1``): right when the scored field's
  label equals the reference's (the item's accuracy);
- a 0/1 metric (``exact_match``, ``contains_any``): right when the item scores 1.

Graded metrics (token F1, set and span F1, BLEU, chrF, ROUGE, your own) give no
per-item right or wrong, so there is no calibration for them: ``None``, never a
threshold made up here.  An item without a valid output is wrong, and has no
confidence; items without a confidence (a backend that cannot score, an output
with no finite-choice field) are counted, not scored.

>>> report = calibrate([(0.9, True), (0.8, True), (0.4, False), (0.3, True), (None, False)])
>>> report.scored, report.items, round(report.ece, 3), report.auroc
(4, 5, 0.35, 0.6666666666666666)
>>> report.accuracy_at_coverage
{'50%': 1.0, '80%': 0.6666666666666666, '100%': 0.75}
>>> calibrate([(None, True)]).ece is None
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from promptask.calibration import (
    Bin,
    accuracy_at_coverage,
    auroc,
    expected_calibration_error,
    reliability_diagram,
)
from promptask.evaluate.metrics import Metric, label_of

__all__ = ["BINS", "COVERAGES", "Calibration", "calibrate", "calibration_lines", "figure_text", "judge"]

BINS = 10
COVERAGES = (0.5, 0.8, 1.0)
NO_CONFIDENCE = "no item had a confidence"


@dataclass(frozen=True)
class Calibration:
    """One variant's calibration over its items with a confidence (``None`` figures when none had one).

    Attributes:
        items: items judged right or wrong.
        scored: of them, those with a confidence: the items every figure is computed on.
        ece: expected calibration error over 10 equal-width bins.
        auroc: how well confidence ranks right items above wrong ones (``None`` when all are right or all wrong).
        accuracy_at_coverage: accuracy of the most confident 50%, 80% and 100% of the scored items.
        bins: the reliability diagram's non-empty bins.
    """

    items: int
    scored: int
    ece: float | None
    auroc: float | None
    accuracy_at_coverage: dict[str, float | None]
    bins: list[Bin]


def judge(metric: Metric, valid: bool, prediction: Any, reference: Any, score: float | None) -> bool | None:
    """Whether one item is right, by the primary metric; ``None`` where that metric judges no single item.

    >>> from promptask.evaluate.metrics import METRICS
    >>> judge(METRICS["macro_f1"], True, "positive", "positive", None), judge(METRICS["token_f1"], True, "a", "a", 1.0)
    (True, None)
    """
    if not valid:
        return False
    if metric.labels:
        return label_of(prediction) == label_of(reference)
    if metric.binary and score is not None:
        return score >= 1.0
    return None


def _share(coverage: float) -> str:
    return f"{coverage:.0%}"


def calibrate(items: Sequence[tuple[float | None, bool]]) -> Calibration:
    """Calibration of ``(confidence, right)`` items; only those with a confidence are scored."""
    scored = [(c, ok) for c, ok in items if c is not None]
    confidence, correct = [c for c, _ in scored], [ok for _, ok in scored]
    if not scored:
        return Calibration(len(items), 0, None, None, {_share(c): None for c in COVERAGES}, [])
    at = accuracy_at_coverage(confidence, correct, COVERAGES)
    return Calibration(
        items=len(items),
        scored=len(scored),
        ece=expected_calibration_error(confidence, correct, BINS),
        auroc=auroc(confidence, correct),
        accuracy_at_coverage={_share(c): at[c] for c in COVERAGES},
        bins=reliability_diagram(confidence, correct, BINS),
    )


def figure_text(value: float | None) -> str:
    """A calibration figure as the table and the report print it: three decimals, ``-`` for none."""
    return "-" if value is None else f"{value:.3f}"


def calibration_lines(variants: Sequence[tuple[str, Calibration | None]]) -> list[str]:
    """The terminal table: one row per variant; one line when no item had a confidence; nothing when no
    variant's primary metric judges single items.

    >>> print("\\n".join(calibration_lines([("a", calibrate([(0.9, True), (0.2, False)])), ("b", calibrate([]))])))
    calibration (confidence vs right answers): ECE over 10 bins, AUROC right vs wrong, accuracy at coverage
    variant  confidence  ECE    AUROC  acc@50%  acc@80%  acc@100%
    a        2/2         0.150  1.000  1.000    0.500    0.500
    b        0/0         -      -      -        -        -         no item had a confidence
    >>> calibration_lines([("b", calibrate([(None, False)]))])
    ['calibration: no item had a confidence (the backend cannot score, or the output has no finite-choice field)']
    """
    judged = [(name, c) for name, c in variants if c is not None]
    if not judged:
        return []
    if not any(c.scored for _, c in judged):
        return [f"calibration: {NO_CONFIDENCE} (the backend cannot score, or the output has no finite-choice field)"]
    header = ["variant", "confidence", "ECE", "AUROC", *(f"acc@{_share(c)}" for c in COVERAGES), ""]
    rows = []
    for name, c in judged:
        figures = [figure_text(c.accuracy_at_coverage[_share(share)]) for share in COVERAGES]
        note = "" if c.scored else NO_CONFIDENCE
        rows.append([name, f"{c.scored}/{c.items}", figure_text(c.ece), figure_text(c.auroc), *figures, note])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [f"calibration (confidence vs right answers): ECE over {BINS} bins, AUROC right vs wrong, "
             "accuracy at coverage"]  # fmt: skip
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    return lines
