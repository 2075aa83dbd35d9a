"""Confidence on the default model: what scoring costs, how well it is calibrated, and choosing by score.

Prints one JSON object:

* ``cost``: time of a scored call ÷ the same call unscored (``confidence=False``,
  plain greedy decoding), summed over the same items in passes ordered scored,
  plain, plain, scored (each call on an input the previous call did not see), for
  ``sentiment`` and ``classify`` with 5 labels (and with 50, the most its input
  takes); goal ≤ 1.3.
* ``quality``: for ``sentiment`` and ``classify``, on the held-out test sets
  (``examples/data/test/``, the figures to report) and on the tuning sets
  (``examples/data/``, where choosing by score was decided): accuracy of the
  greedy answer and of the most probable value by whole-sequence score, and of
  the greedy answers' confidence, AUROC (correct vs incorrect, with a 95%
  bootstrap interval), ECE (10 bins) and accuracy at 50/80/100% coverage.

    python bench/confidence.py [--backend URI] [--items N] [--sets test,tune] [--no-cost]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import promptask
from promptask import TaskResult
from promptask.calibration import accuracy_at_coverage, auroc, expected_calibration_error

DATA = Path(__file__).resolve().parent.parent / "examples" / "data"
FIVE = ["sport", "politics", "technology", "health", "business"]
FIFTY = FIVE + [f"topic {i}" for i in range(45)]
TEXTS = [
    "The striker scored twice in the final.",
    "Parliament voted on the new budget.",
    "The new phone has a faster chip.",
    "Doctors recommend more sleep.",
    "Shares of the bank rose sharply.",
    "I loved every minute of the show.",
    "The package never arrived.",
    "The library closes at six.",
]


def cost(task: promptask.Task[..., Any], rows: list[dict[str, Any]], backend: str | None) -> float:
    """Scored time ÷ unscored time over ``rows``, in passes ordered scored, plain, plain, scored.

    Each call follows a call on another row, so it evaluates its own input
    after the task's static prompt, as in a run over a file. (Running both
    variants on one row in turn would give the second a prompt already in
    the KV cache: a call no run over distinct inputs makes.)
    """
    plain = task.with_options(confidence=False)
    for variant in (task, plain):  # warm up: the model, the schema compiler, the static prompt
        variant.run(backend=backend, cache=False, **rows[-1])
    seconds = {"scored": 0.0, "plain": 0.0}
    for name in ("scored", "plain", "plain", "scored"):
        variant = task if name == "scored" else plain
        for row in rows:
            started = time.perf_counter()
            variant.run(backend=backend, cache=False, **row)
            seconds[name] += time.perf_counter() - started
    return round(seconds["scored"] / seconds["plain"], 3)


def quality(name: str, data: Path, backend: str | None) -> dict[str, Any]:
    task = promptask.builtin_task(name)
    rows = [json.loads(line) for line in (data / f"{name}.jsonl").read_text().splitlines()]
    fields = set(task.input_model.model_fields)
    results = task.map([{k: v for k, v in r.items() if k in fields} for r in rows], backend=backend,
                       on_error="return", cache=False)  # fmt: skip
    path = "label" if name == "sentiment" else "labels[0]"
    greedy_ok: list[bool] = []
    scored_ok: list[bool] = []
    confidence: list[float] = []
    chosen_confidence: list[float] = []
    for row, result in zip(rows, results, strict=True):
        if not isinstance(result, TaskResult) or result.confidence is None:
            continue
        output = result.output.model_dump()
        label = output["label"] if name == "sentiment" else output["labels"][0]
        probabilities = result.scores[path]
        best = max(probabilities, key=lambda k: probabilities[k])
        greedy_ok.append(label == row["expected"])
        scored_ok.append(best == row["expected"])
        confidence.append(result.confidence)
        chosen_confidence.append(probabilities[best])
    coverage = accuracy_at_coverage(confidence, greedy_ok, (0.5, 0.8, 1.0))
    area = auroc(confidence, greedy_ok)
    return {
        "items": len(rows),
        "scored": len(confidence),
        "accuracy_greedy": round(sum(greedy_ok) / len(greedy_ok), 3),
        "accuracy_by_score": round(sum(scored_ok) / len(scored_ok), 3),
        "auroc": round(area, 3) if area is not None else None,
        "auroc_95": auroc_interval(confidence, greedy_ok),
        "ece_10_bins": round(expected_calibration_error(confidence, greedy_ok), 3),
        "accuracy_at_coverage": {f"{int(c * 100)}%": round(a, 3) for c, a in coverage.items()},
        "by_score_auroc": _rounded(auroc(chosen_confidence, scored_ok)),
        "by_score_ece_10_bins": round(expected_calibration_error(chosen_confidence, scored_ok), 3),
        "mean_confidence": round(sum(confidence) / len(confidence), 3),
    }


def auroc_interval(confidence: list[float], correct: list[bool], resamples: int = 2000) -> list[float] | None:
    """A percentile bootstrap interval of the AUROC (resamples with one class only are redrawn)."""
    rng = random.Random(0)
    values: list[float] = []
    while len(values) < resamples:
        draw = rng.choices(range(len(confidence)), k=len(confidence))
        value = auroc([confidence[i] for i in draw], [correct[i] for i in draw])
        if value is not None:
            values.append(value)
    values.sort()
    return [round(values[int(0.025 * resamples)], 3), round(values[int(0.975 * resamples) - 1], 3)]


def _rounded(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", help="backend URI (default: the default model)")
    parser.add_argument("--items", type=int, default=len(TEXTS), help="items per cost figure")
    parser.add_argument("--sets", default="test,tune", help="labelled sets to measure quality on (test, tune)")
    parser.add_argument("--no-cost", action="store_true", help="skip the cost figures")
    args = parser.parse_args()
    if not args.no_cost and args.items < 2:
        parser.error("--items: at least 2 (each timed call follows a call on another input)")
    texts = TEXTS[: args.items]
    report: dict[str, Any] = {"benchmark": "confidence", "backend": args.backend or "llamacpp: (SmolLM2-135M)"}
    if not args.no_cost:
        report["cost_scored_over_greedy"] = cost_figures(texts, args.backend)
    sets = {"test": DATA / "test", "tune": DATA}
    for chosen in filter(None, args.sets.split(",")):
        report[f"quality_on_{chosen}_sets"] = {
            name: quality(name, sets[chosen], args.backend) for name in ("sentiment", "classify")
        }
    print(json.dumps(report))


def cost_figures(texts: list[str], backend: str | None) -> dict[str, float]:
    return {
        "sentiment": cost(promptask.tasks.sentiment, [{"text": t} for t in texts], backend),
        "classify_5_labels": cost(promptask.tasks.classify, [{"text": t, "labels": FIVE} for t in texts], backend),
        "classify_50_labels": cost(
            promptask.tasks.classify, [{"text": t, "labels": FIFTY} for t in texts[:4]], backend
        ),
    }


if __name__ == "__main__":
    main()
