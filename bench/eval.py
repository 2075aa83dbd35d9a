"""What evaluation costs beside the model: `promptask.evaluate` (with its JSON and HTML reports) ÷ `task.map`.

Both run the same rows on the same backend with the cache off, in alternating
order, and the figure is the ratio of the medians (goal ≤ 1.05).  A loaded machine
moves model time by more than that between runs, so the script also times the
evaluation's own work (scoring, bootstrap, JSON and HTML reports) on a cached
rerun and reports ``own_work_over_map`` = 1 + that ÷ the map time.  Prints one
JSON object.

    python bench/eval.py [--backend URI] [--task sentiment] [--rows 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import promptask

DATA = Path(__file__).resolve().parent.parent / "examples" / "data" / "test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", help="backend URI (default: the default model)")
    parser.add_argument("--task", default="sentiment", help="a built-in task with a test set (default: sentiment)")
    parser.add_argument("--rows", type=int, default=20, help="rows of its test set (default: 20)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each (default: 3)")
    args = parser.parse_args()

    task = promptask.builtin_task(args.task)
    lines = (DATA / f"{args.task}.jsonl").read_text().splitlines()[: args.rows]
    rows = [json.loads(line) for line in lines]
    fields = set(task.input_model.model_fields)
    inputs = [{k: v for k, v in row.items() if k in fields} for row in rows]
    backend = promptask.resolve_backend(args.backend) if args.backend else None
    task.map(inputs[:2], backend=backend, cache=False)  # load the model and warm its prefix cache first

    mapped: list[float] = []
    evaluated: list[float] = []
    scoring: list[float] = []
    out = Path(tempfile.mkdtemp())

    def run_map() -> None:
        started = time.perf_counter()
        task.map(inputs, backend=backend, cache=False, on_error="return")
        mapped.append(time.perf_counter() - started)

    def run_evaluate() -> None:
        started = time.perf_counter()
        report = promptask.evaluate(task, rows, backend=backend, cache=False)
        report.write_json(out / "report.json")
        report.write_html(out / "report.html")
        evaluated.append(time.perf_counter() - started)

    for round_number in range(args.rounds):
        first, second = (run_map, run_evaluate) if round_number % 2 == 0 else (run_evaluate, run_map)
        first()
        second()
        # the evaluation's own work (scoring, bootstrap, both reports): its rerun, every row from the cache
        started = time.perf_counter()
        cached = promptask.evaluate(task, rows, backend=backend)
        cached.write_json(out / "report.json")
        cached.write_html(out / "report.html")
        scoring.append(time.perf_counter() - started)

    result: dict[str, Any] = {
        "benchmark": "eval",
        "backend": args.backend or "llamacpp: (SmolLM2-135M)",
        "task": args.task,
        "rows": len(rows),
        "rounds": args.rounds,
        "map_s": round(statistics.median(mapped), 2),
        "evaluate_with_reports_s": round(statistics.median(evaluated), 2),
        "evaluate_over_map": round(statistics.median(evaluated) / statistics.median(mapped), 3),
        "goal": "evaluate_over_map <= 1.05",
        "evaluate_cached_with_reports_s": round(statistics.median(scoring), 3),
        # model time plus the evaluation's own work, over model time: robust to a loaded machine's drift
        "own_work_over_map": round(1 + statistics.median(scoring) / statistics.median(mapped), 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
