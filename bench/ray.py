"""Batch runs on Ray against a local batch run, on the default model, each figure within one run.

    .venv/bin/python bench/ray.py [--rows 960] [--batch-size B]

Runs ``promptask run sentiment --file`` locally (llama.cpp on every core), then
the same rows with ``--ray`` as 1 worker x 2 threads and 2 workers x 1 thread,
then locally again, each from a fresh command with the cache off; the Ray runs
are compared with the mean of the two local runs, which brackets them against
a machine whose speed drifts (``local_rows_per_s`` gives both).  Times are promptask's own
summaries: a run's seconds from reading its input to its last row (model
loading included, both ways).  For Ray, the engine's time is the run's
seconds minus Ray's start-up and the stop of the Ray the command started,
which are reported on their own (``ray_startup_s``, ``ray_shutdown_s``); the
``..._whole_over_local_time`` ratios keep them in.  Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXTS = [
    "The battery lasts two days and the screen is bright.",
    "It broke after a week and support never answered.",
    "Delivery was on time; the box was a little dented.",
    "Absolutely love the camera, best phone I have owned.",
    "The sound is tinny and the app crashes constantly.",
    "It does what it says, nothing more, nothing less.",
]
SUMMARY = re.compile(
    r"(\d+) done .*; ([\d.]+) s(?:; \d+ part files in .* \(Ray start ([\d.]+) s(?:, stop ([\d.]+) s)?\))?"
)


def run(args: list[str]) -> tuple[float, float, float]:
    """(seconds of the run, Ray start-up seconds, Ray stop seconds) from promptask's summary line."""
    env = {**os.environ, "PROMPTASK_CACHE": "off", "PYTHONPATH": str(ROOT)}
    env.pop("PROMPTASK_BACKEND", None)
    done = subprocess.run(
        [sys.executable, "-m", "promptask", "run", "sentiment", "--no-progress", *args],
        env=env, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"promptask failed ({done.returncode}):\n{done.stderr[-3000:]}")
    match = SUMMARY.search(done.stderr.strip().splitlines()[-1])
    assert match, done.stderr
    return float(match.group(2)), float(match.group(3) or 0), float(match.group(4) or 0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=960)
    parser.add_argument("--batch-size", type=int, default=None, help="rows per Ray batch (default: promptask's)")
    options = parser.parse_args()
    rows = options.rows
    batch = ["--batch-size", str(options.batch_size)] if options.batch_size else []
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "in.jsonl"
        source.write_text(
            "".join(json.dumps({"id": i, "text": f"{TEXTS[i % len(TEXTS)]} (#{i})"}) + "\n" for i in range(rows))
        )
        first_s, _, _ = run(["--file", str(source), "--out", f"{tmp}/local.jsonl"])
        one_s, one_start, one_stop = run(
            ["--file", str(source), "--out", f"{tmp}/one", "--ray", "--cpus-per-worker", "2", *batch]
        )
        two_s, two_start, two_stop = run(
            ["--file", str(source), "--out", f"{tmp}/two", "--ray", "--workers", "2", *batch]
        )
        last_s, _, _ = run(["--file", str(source), "--out", f"{tmp}/again.jsonl"])
    local_s = (first_s + last_s) / 2
    one_engine, two_engine = one_s - one_start - one_stop, two_s - two_start - two_stop
    print(
        json.dumps(
            {
                "rows": rows,
                "ray_batch_size": options.batch_size or "default",
                "cores": os.cpu_count(),
                "local_rows_per_s": [round(rows / first_s, 2), round(rows / last_s, 2)],
                "ray_1x2_rows_per_s": round(rows / one_engine, 2),
                "ray_2x1_rows_per_s": round(rows / two_engine, 2),
                "ray_1x2_over_local_time": round(one_engine / local_s, 3),
                "ray_2x1_over_local_time": round(two_engine / local_s, 3),
                "ray_startup_s": [round(one_start, 1), round(two_start, 1)],
                "ray_shutdown_s": [round(one_stop, 1), round(two_stop, 1)],
                "ray_1x2_whole_over_local_time": round(one_s / local_s, 3),
                "ray_2x1_whole_over_local_time": round(two_s / local_s, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
