"""Tasks: the Task type, the ``@task`` decorator, the YAML loader and the built-in task library.

Built-in tasks are YAML files in ``promptask/tasks/builtin/`` with templates
in ``promptask/prompts/builtin/``; each is available as
``promptask.tasks.<name>``:

>>> import promptask.tasks
>>> promptask.tasks.sentiment  # doctest: +ELLIPSIS
<Task sentiment(text) -> ...>
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptask.errors import TaskDefinitionError

if TYPE_CHECKING:
    from promptask.tasks.task import Task

__all__ = ["BUILTIN_TASKS", "builtin_task", "builtin_task_names"]

BUILTIN_TASKS = Path(__file__).parent / "builtin"


def builtin_task_names() -> list[str]:
    """Names of the tasks that ship with promptask."""
    return sorted(p.stem for p in BUILTIN_TASKS.glob("*.yaml"))


@functools.cache
def builtin_task(name: str) -> Task[..., Any]:
    """Load a built-in task by name (once per process)."""
    from promptask.tasks.loader import load_task

    file = BUILTIN_TASKS / f"{name}.yaml"
    if not file.is_file():
        raise TaskDefinitionError(f"no built-in task named {name!r}; built-in tasks: {', '.join(builtin_task_names())}")
    return load_task(file)


def __getattr__(name: str) -> Any:
    if not name.startswith("_") and (BUILTIN_TASKS / f"{name}.yaml").is_file():
        return builtin_task(name)
    raise AttributeError(f"module 'promptask.tasks' has no attribute {name!r}")
