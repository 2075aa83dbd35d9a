"""Every built-in task gives valid output on the default model for every item of its labelled set.

Quality is measured on separate test sets by `promptask eval` (see the README), not asserted here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import promptask
from promptask import TaskResult

DATA = Path(__file__).resolve().parent.parent / "examples" / "data"


def labelled(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / f"{name}.jsonl").read_text().splitlines()]


def test_every_builtin_task_has_a_labelled_set_of_twenty_or_more() -> None:
    for name in promptask.builtin_task_names():
        assert len(labelled(name)) >= 20, name


@pytest.mark.slow
@pytest.mark.parametrize("name", promptask.builtin_task_names())
def test_builtin_task_is_valid_on_its_labelled_items(name: str) -> None:
    task = promptask.builtin_task(name)
    fields = set(task.input_model.model_fields)
    rows = [{k: v for k, v in row.items() if k in fields} for row in labelled(name)]
    results = task.map(rows, on_error="return", cache=False)
    failures = [(row, r) for row, r in zip(rows, results, strict=True) if not isinstance(r, TaskResult)]
    assert not failures, failures[:3]
    for row, result in zip(rows, results, strict=True):
        assert isinstance(result, TaskResult)
        # the output passed the schema and the task's checks; check the promises that matter most directly
        output = result.output.model_dump()
        if name == "extract_entities":
            assert all(row["text"][e["start"] : e["end"]] == e["text"] for e in output["entities"])
        elif name == "answer_question":
            assert output["answer"] == "unanswerable" or output["answer"] in row["context"]
        elif name == "extract_keywords":
            assert all(k in row["text"] for k in output["keywords"])
        elif name == "classify":
            assert output["labels"][0] in row["labels"]
        elif name in ("summarize", "generate"):
            assert len(next(iter(output.values())).split()) <= row["max_words"]
