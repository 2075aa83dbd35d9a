"""A prepared call: everything one task call needs, with the task itself left behind.

A :class:`~promptask.Task` turns validated inputs into a :class:`PreparedCall`
(rendered messages, the schema for this call, sampling, retries, the cache
digest, and how to check an answer); the call loop and the runner work from
that alone and never see the task.  :class:`Preparer` is the little the
runner needs from a task to prepare rows itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from promptask.backends.base import BackendInfo
from promptask.types import Message, Sampling

__all__ = ["OutputCheck", "PreparedCall", "Preparer"]

R = TypeVar("R")

OutputCheck = Callable[[Any], tuple[Any, R]]
"""``check(data) -> (json, value)``: validate parsed JSON; return the JSON to cache and the output to return.
Raises ``ValueError`` with a message meant for the model."""


@dataclass(frozen=True, slots=True)
class PreparedCall(Generic[R]):
    """One call, ready to run: messages, schema, sampling, retries, cache digest and output check."""

    task: str
    messages: tuple[Message, ...]
    schema: Mapping[str, Any] | None
    sampling: Sampling
    retries: int
    digest: str
    check: OutputCheck[R]


class Preparer(Protocol[R]):
    """What the runner needs from a task: its name, and a row turned into a prepared call."""

    @property
    def name(self) -> str: ...

    def prepare_row(self, row: Mapping[str, Any], *, label: str, backend: BackendInfo) -> PreparedCall[R]:
        """Validate ``row`` as inputs (errors name ``label``) and prepare the call; raises PromptaskError."""
        ...
