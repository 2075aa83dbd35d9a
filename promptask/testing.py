"""Test helpers: assert a task's quality inside your own pytest suite, as ``promptask eval --min`` does in CI.

>>> import promptask
>>> from promptask.testing import assert_metrics
>>> rows = [{"text": "Great!", "expected": "positive"}, {"text": "Fine.", "expected": "positive"}]
>>> backend = promptask.ScriptedBackend(['{"label": "positive"}'], repeat=True)
>>> report = assert_metrics(promptask.tasks.sentiment, rows, {"accuracy": 0.9}, backend=backend, cache=False)
>>> report.value("accuracy")
1.0
>>> assert_metrics(promptask.tasks.sentiment, rows, {"accuracy": 0.9},
...                backend=promptask.ScriptedBackend(['{"label": "neutral"}'], repeat=True), cache=False)
Traceback (most recent call last):
...
AssertionError: sentiment below minimum: accuracy 0.000 < 0.9 (sentiment)
...
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from promptask.evaluate import EvalReport, evaluate
from promptask.tasks.task import Task

__all__ = ["assert_metrics", "assert_report"]


def assert_report(report: EvalReport, minimums: Mapping[str, float]) -> EvalReport:
    """Raise ``AssertionError`` naming each metric below its minimum (``valid`` is the valid-output rate).

    The message is the same line ``promptask eval --min`` prints, then the report's table.
    """
    missed = report.below(minimums)
    if missed:
        raise AssertionError(f"{report.task} below minimum: {'; '.join(missed)}\n{report.table()}")
    return report


def assert_metrics(
    task: Task[..., Any],
    data: str | os.PathLike[str] | Iterable[Mapping[str, Any]],
    minimums: Mapping[str, float],
    **options: Any,
) -> EvalReport:
    """Evaluate ``task`` on ``data`` (see :func:`promptask.evaluate` for ``options``) and assert the minimums."""
    return assert_report(evaluate(task, data, **options), minimums)
