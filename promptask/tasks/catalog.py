"""The built-in tasks by name: YAML files in ``builtin/``, typed in :mod:`promptask.tasks.library`.

The typed library loads every built-in's files, so it is imported on first
use of a built-in rather than with the package.

>>> builtin_task_names()[:3]
['answer_question', 'classify', 'extract_entities']
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import Any

from promptask.errors import TaskDefinitionError
from promptask.tasks.task import Task

__all__ = ["BUILTIN_TASKS", "builtin_task", "builtin_task_names"]

BUILTIN_TASKS = Path(__file__).parent / "builtin"


@functools.cache
def builtin_task_names() -> list[str]:
    """Names of the tasks that ship with promptask."""
    return sorted(p.stem for p in BUILTIN_TASKS.glob("*.yaml"))


def builtin_task(name: str) -> Task[..., Any]:
    """A built-in task by name, typed as declared in :mod:`promptask.tasks.library`."""
    if name not in builtin_task_names():
        raise TaskDefinitionError(f"no built-in task named {name!r}; built-in tasks: {', '.join(builtin_task_names())}")
    library = importlib.import_module("promptask.tasks.library")  # loads every built-in: on first use only
    task: Task[..., Any] = getattr(library, name)
    return task
