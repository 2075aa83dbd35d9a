"""Every error promptask raises, under one root.

::

    PromptaskError
    ├── UserError                  a mistake the caller can fix; the CLI exits with 2
    │   ├── TaskDefinitionError    bad task file, unknown type, template syntax error
    │   ├── InputValidationError   wrong or missing inputs (raised before any backend call)
    │   ├── TemplateError          rendering failed, including sandbox violations
    │   └── ConfigurationError     unknown backend URI, bad cache setting, missing extra
    └── ExecutionError             the run itself failed; the CLI exits with 1
        ├── BackendError           the model or server could not produce an answer
        └── OutputValidationError  the model never produced a valid output

Messages say what was wrong and what to do about it.  They never contain
credentials.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from promptask.tasks.result import Attempt
    from promptask.types import Usage

__all__ = [
    "BackendError",
    "ConfigurationError",
    "ExecutionError",
    "InputValidationError",
    "OutputValidationError",
    "PromptaskError",
    "TaskDefinitionError",
    "TemplateError",
    "UserError",
]


class PromptaskError(Exception):
    """Root of every error raised by promptask."""


class UserError(PromptaskError):
    """A mistake in a task, its inputs or the configuration: fix it and call again."""


class ExecutionError(PromptaskError):
    """A failure while running a well-formed task."""


class TaskDefinitionError(UserError):
    """A task definition is invalid.

    ``source`` is the file (or ``"<inline>"``) and ``line`` the 1-based line
    number, when known; both are part of the message.  ``path`` locates the
    problem inside the definition (``("examples", 2)``), so a loader can turn
    it into a line.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        path: tuple[str | int, ...] = (),
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.path = path
        where = source or ""
        if where and line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}" if where else message)


class InputValidationError(UserError):
    """The inputs given to a task are wrong or missing.

    ``errors`` lists ``(field, message)`` pairs, one per problem.
    """

    def __init__(self, task: str, errors: Sequence[tuple[str, str]]) -> None:
        self.task = task
        self.errors = tuple(errors)
        details = "; ".join(f"{field}: {msg}" for field, msg in self.errors)
        super().__init__(f"invalid input for task {task!r}: {details}")


class TemplateError(UserError):
    """A prompt template failed to render (undefined variable, sandbox violation, size cap)."""


class ConfigurationError(UserError):
    """promptask is configured wrongly: unknown backend, bad cache setting, missing extra."""


class BackendError(ExecutionError):
    """A backend could not produce a generation (missing model, server error, ...)."""


class OutputValidationError(ExecutionError):
    """The model never produced an output that parsed and validated.

    ``attempts`` holds every attempt's raw text and error; ``usage`` is the
    token usage summed over all of them, so nothing spent is lost.
    """

    def __init__(self, task: str, attempts: Sequence[Attempt], usage: Usage) -> None:
        self.task = task
        self.attempts = tuple(attempts)
        self.usage = usage
        last = self.attempts[-1].error if self.attempts else "no attempt was made"
        n = len(self.attempts)
        super().__init__(
            f"task {task!r} produced no valid output in {n} attempt{'s' if n != 1 else ''}; last error: {last}"
        )
