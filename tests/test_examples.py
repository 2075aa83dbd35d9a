"""The examples run as written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_support_triage_project_runs_from_the_cli() -> None:
    reply = {
        "team": "billing",
        "urgency": "high",
        "summary": "Charged twice.",
        "customer": {"mood": "angry", "wants_refund": True},
    }
    env = {**os.environ, "PROMPTASK_BACKEND": "scripted:" + json.dumps(reply)}
    out = subprocess.run(
        [sys.executable, "-m", "promptask", "run", "triage", "--input", "ticket=I was charged twice!"],
        cwd=EXAMPLES / "support_triage",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == reply
    listed = subprocess.run(
        [sys.executable, "-m", "promptask", "list"], cwd=EXAMPLES / "support_triage", capture_output=True, text=True
    )
    assert "triage" in listed.stdout


@pytest.mark.slow
def test_review_app_runs_on_the_default_model() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROMPTASK_BACKEND"}
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "review_app.py")], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("sentiment: ") == 2 and out.stdout.count("reply (") == 2


@pytest.mark.slow  # labels the CSV with the default model
def test_csv_batch_example_runs_as_documented(tmp_path: Path) -> None:
    readme = (EXAMPLES / "batch" / "README.md").read_text()
    command = next(line.strip() for line in readme.splitlines() if line.strip().startswith("promptask run"))
    args = command.split()[1:]
    args[args.index("--out") + 1] = str(tmp_path / "labels.jsonl")
    env = {k: v for k, v in os.environ.items() if k != "PROMPTASK_BACKEND"}
    out = subprocess.run(
        [sys.executable, "-m", "promptask", *args],
        cwd=EXAMPLES.parent, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [f"r{i}" for i in range(1, 9)]
    assert {r["output"]["label"] for r in records} <= {"positive", "negative", "neutral"}
    assert "sentiment: 8 rows: 8 done" in out.stderr
