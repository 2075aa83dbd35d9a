"""Tasks: the Task type, the ``@task`` decorator, the YAML loader and the built-in task library.

Built-in tasks are YAML files in ``promptask/tasks/builtin/`` with templates
in ``promptask/prompts/builtin/``; each is available, typed (see
:mod:`promptask.tasks.library`), as ``promptask.tasks.<name>``:

>>> import promptask.tasks
>>> promptask.tasks.sentiment
<Task sentiment(text) -> Sentiment>
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from promptask.tasks.catalog import BUILTIN_TASKS, builtin_task, builtin_task_names

if TYPE_CHECKING:
    # Typed for editors and type checkers; loaded on first use by __getattr__ below.
    from promptask.tasks.library import (
        answer_question,
        classify,
        extract_entities,
        extract_keywords,
        generate,
        sentiment,
        summarize,
        translate,
    )

__all__ = [
    "BUILTIN_TASKS",
    "answer_question",
    "builtin_task",
    "builtin_task_names",
    "classify",
    "extract_entities",
    "extract_keywords",
    "generate",
    "sentiment",
    "summarize",
    "translate",
]


def __getattr__(name: str) -> Any:
    if name in builtin_task_names():
        return builtin_task(name)
    raise AttributeError(f"module 'promptask.tasks' has no attribute {name!r}")
