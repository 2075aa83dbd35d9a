"""The ``@task`` decorator: a typed Python function stub becomes a Task.

>>> from typing import Literal
>>> import promptask
>>> @promptask.task(template="Is this review positive or negative?\\n{{ review }}")
... def polarity(review: str) -> Literal["positive", "negative"]:
...     '''Classify a product review.'''
>>> polarity
<Task polarity(review) -> Literal['positive', 'negative']>
"""

from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, overload

from pydantic import ConfigDict, create_model
from typing_extensions import Unpack

from promptask.errors import TaskDefinitionError
from promptask.tasks.schema import camel_case
from promptask.tasks.spec import TaskOptions
from promptask.tasks.task import Task

__all__ = ["task"]

P = ParamSpec("P")
R = TypeVar("R")


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(*, name: str | None = None, **options: Unpack[TaskOptions]) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    **options: Any,
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Turn a function stub into a :class:`~promptask.Task`.

    The parameters (with type hints and defaults) are the inputs; the return
    annotation is the output type (a pydantic model, or ``str``, ``int``,
    ``float``, ``bool``, ``Literal[...]``, an ``Enum``, ``list[...]``); the
    docstring is the description.  The body is never run.  Template files are
    looked up next to the function's module, in its ``prompts/`` folder, in
    ``./prompts``, then among the built-in prompts.

    Use it bare (``@task``) or with options (``@task(template=..., retries=3)``);
    see :class:`~promptask.Task` for every option.
    """
    if fn is not None:
        return _build(fn, None, {})
    return lambda f: _build(f, name, options)


def _build(fn: Callable[P, R], name: str | None, options: dict[str, Any]) -> Task[P, R]:
    name = name or fn.__name__
    where = f"{getattr(fn, '__module__', '?')}.{fn.__qualname__}"
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # a NameError from a string annotation, typically
        raise TaskDefinitionError(f"{where}: cannot resolve type hints: {exc}") from None
    if "return" not in hints:
        raise TaskDefinitionError(f"{where}: annotate the return type with the task's output type")
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TaskDefinitionError(f"{where}: *args and **kwargs cannot be task inputs")
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints.get(param.name, Any), default)
    input_model = create_model(
        camel_case(name, suffix="Input"),
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )
    module_file = getattr(sys.modules.get(fn.__module__), "__file__", None)
    search_path = [Path(module_file).parent, Path(module_file).parent / "prompts"] if module_file else []
    options.setdefault("description", inspect.cleandoc(fn.__doc__ or ""))
    made: Task[P, R] = Task(
        name=name,
        input_model=input_model,
        output_type=hints["return"],
        search_path=search_path,
        source=where,
        **options,
    )
    made.__doc__ = fn.__doc__
    made.__wrapped__ = fn  # type: ignore[attr-defined]
    return made
