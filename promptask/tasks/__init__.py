"""Tasks: the Task type, the ``@task`` decorator, the YAML loader and the built-in task library.

Built-in tasks are YAML files in ``promptask/tasks/builtin/`` with templates
in ``promptask/prompts/builtin/``; each is available, typed (see
:mod:`promptask.tasks.library`), as ``promptask.tasks.<name>``:

>>> import promptask.tasks
>>> promptask.tasks.sentiment
<Task sentiment(text) -> Sentiment>
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptask.errors import TaskDefinitionError

if TYPE_CHECKING:
    # Typed for editors and type checkers; loaded lazily at run time by __getattr__ below.
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
    from promptask.tasks.task import Task

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

BUILTIN_TASKS = Path(__file__).parent / "builtin"


@functools.cache
def builtin_task_names() -> list[str]:
    """Names of the tasks that ship with promptask."""
    return sorted(p.stem for p in BUILTIN_TASKS.glob("*.yaml"))


def builtin_task(name: str) -> Task[..., Any]:
    """A built-in task by name, typed as declared in :mod:`promptask.tasks.library`."""
    if name not in builtin_task_names():
        raise TaskDefinitionError(f"no built-in task named {name!r}; built-in tasks: {', '.join(builtin_task_names())}")
    from promptask.tasks import library

    task: Task[..., Any] = getattr(library, name)
    return task


def __getattr__(name: str) -> Any:
    if name in builtin_task_names():
        return builtin_task(name)
    raise AttributeError(f"module 'promptask.tasks' has no attribute {name!r}")
