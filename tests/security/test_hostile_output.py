"""Model output is untrusted: however it is nested, it is an invalid attempt, in a call, a batch and the CLI."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import promptask
from promptask import OutputValidationError, ScriptedBackend
from promptask.batch import run_file
from promptask.tasks.parsing import MAX_DEPTH, extract_json

NESTED = {
    "open brackets": "[" * 1000,
    "valid, 1,500 deep": "[" * 1500 + "]" * 1500,
    "objects, 5,000 deep": '{"a":' * 5000 + "1" + "}" * 5000,
    "in prose": "Here you go: " + "[" * 3000 + "]" * 3000 + " hope it helps",
    "in a fence": "```json\n" + "[" * 3000 + "]" * 3000 + "\n```",
    "a million brackets": "[" * 1_000_000,
}


@pytest.mark.parametrize("name", sorted(NESTED))
@pytest.mark.parametrize("lenient", [False, True])
def test_deep_answers_are_a_value_error_for_the_model(name: str, lenient: bool) -> None:
    with pytest.raises(ValueError, match=f"nested more than {MAX_DEPTH} levels"):
        extract_json(NESTED[name], lenient=lenient)


def test_a_shallow_value_after_deep_prose_is_still_found() -> None:
    assert extract_json("[" * 3000 + ' then {"label": "positive"}', lenient=True) == {"label": "positive"}


@pytest.mark.parametrize("name", sorted(NESTED))
def test_a_deep_answer_is_an_invalid_attempt(name: str) -> None:
    backend = ScriptedBackend([NESTED[name], NESTED[name], '{"label": "positive"}'])
    result = promptask.tasks.sentiment.run(text="x", backend=backend, cache=False)
    assert result.output.label == "positive" and len(result.attempts) == 3
    assert "nested more than" in (result.attempts[0].error or "")
    with pytest.raises(OutputValidationError, match="nested more than"):
        promptask.tasks.sentiment.run(text="x", backend=ScriptedBackend([NESTED[name]], repeat=True), cache=False)


def test_a_batch_of_deep_answers_writes_every_row(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(3)))
    out = tmp_path / "out.jsonl"
    backend = ScriptedBackend(["[" * 1000, "[" * 1500 + "]" * 1500, '{"label": "neutral"}'] * 3, repeat=True)
    summary = run_file(promptask.tasks.sentiment.with_options(retries=0), source, out, backend=backend,
                       cache=False, log=io.StringIO())  # fmt: skip
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 3 and summary.done + summary.failed == 3
    assert sum("nested more than" in r.get("error", "") for r in records) == 2


def test_the_cli_prints_one_line_not_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "PROMPTASK_BACKEND": "scripted:" + "[" * 1000, "PROMPTASK_CACHE": "0"}
    done = subprocess.run([sys.executable, "-m", "promptask", "run", "sentiment", "--input", "text=x"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "nested more than" in done.stderr
