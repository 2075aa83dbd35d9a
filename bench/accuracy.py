"""Accuracy of every built-in task on its labelled set (examples/data/), on the default model.

Prints one JSON object: for each task, the fitting metric, the share of items
with a valid output, the item count and the time taken.

    python bench/accuracy.py [--backend URI] [--tasks sentiment,classify]
"""

from __future__ import annotations

import argparse
import json
import re
import string
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import promptask
from promptask import TaskResult

DATA = Path(__file__).resolve().parent.parent / "examples" / "data"


def normalize(text: str) -> str:
    text = text.lower().translate(str.maketrans("", "", string.punctuation + "¿¡"))
    return re.sub(r"\s+", " ", text).strip()


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalize(prediction).split(), normalize(reference).split()
    overlap = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref or not overlap:
        return float(pred == ref)
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def set_f1(predicted: list[Any], expected: list[Any]) -> tuple[int, int, int]:
    """True positives, predicted count, expected count (summed over items for a micro F1)."""
    pred, gold = set(predicted), set(expected)
    return len(pred & gold), len(pred), len(gold)


def micro_f1(counts: list[tuple[int, int, int]]) -> float:
    tp, predicted, expected = (sum(c[i] for c in counts) for i in range(3))
    if not tp:
        return 0.0
    precision, recall = tp / predicted, tp / expected
    return 2 * precision * recall / (precision + recall)


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def score(name: str, rows: list[dict[str, Any]], outputs: list[dict[str, Any] | None]) -> dict[str, float]:
    pairs = [(row, out) for row, out in zip(rows, outputs, strict=True) if out is not None]
    scorers: dict[str, Callable[[], dict[str, float]]] = {
        "sentiment": lambda: {"label_accuracy": mean([float(o["label"] == r["expected"]) for r, o in pairs])},
        "classify": lambda: {"label_accuracy": mean([float(o["labels"][0] == r["expected"]) for r, o in pairs])},
        "extract_entities": lambda: {
            "entity_f1": micro_f1(
                [
                    set_f1(
                        [(e["text"], e["type"]) for e in o["entities"]],
                        [(e["text"], e["type"]) for e in r["expected"]],
                    )
                    for r, o in pairs
                ]
            )
        },
        "answer_question": lambda: {
            "exact_match": mean([float(normalize(o["answer"]) == normalize(r["expected"])) for r, o in pairs]),
            "token_f1": mean([token_f1(o["answer"], r["expected"]) for r, o in pairs]),
        },
        "translate": lambda: {"token_f1": mean([token_f1(o["translation"], r["expected"]) for r, o in pairs])},
        "extract_keywords": lambda: {
            "keyword_f1": micro_f1(
                [set_f1([normalize(k) for k in o["keywords"]], [normalize(k) for k in r["expected"]]) for r, o in pairs]
            )
        },
        "summarize": lambda: {"token_f1": mean([token_f1(o["summary"], r["expected"]) for r, o in pairs])},
        "generate": lambda: {
            "instruction_keyword_hit": mean(
                [float(any(k.lower() in o["text"].lower() for k in r["expected_any"])) for r, o in pairs]
            )
        },
    }
    return scorers[name]()


def evaluate(name: str, backend: str | None) -> dict[str, Any]:
    task = promptask.builtin_task(name)
    rows = [json.loads(line) for line in (DATA / f"{name}.jsonl").read_text().splitlines()]
    fields = set(task.input_model.model_fields)
    started = time.perf_counter()
    results = task.map([{k: v for k, v in r.items() if k in fields} for r in rows], backend=backend,
                       on_error="return", cache=False)  # fmt: skip
    seconds = time.perf_counter() - started
    outputs = [r.output.model_dump() if isinstance(r, TaskResult) else None for r in results]
    valid = sum(o is not None for o in outputs)
    metrics = {k: round(v, 3) for k, v in score(name, rows, outputs).items()}
    return {**metrics, "valid": round(valid / len(rows), 3), "items": len(rows), "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", help="backend URI (default: the default model)")
    parser.add_argument("--tasks", help="comma-separated task names (default: all built-in tasks)")
    args = parser.parse_args()
    names = args.tasks.split(",") if args.tasks else promptask.builtin_task_names()
    report: dict[str, Any] = {"benchmark": "accuracy", "backend": args.backend or "llamacpp: (SmolLM2-135M)"}
    report |= {name: evaluate(name, args.backend) for name in names}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
