"""A prepared call: everything one task call needs, with the task itself left behind.

A :class:`~promptask.Task` turns validated inputs into a :class:`PreparedCall`
(rendered messages, the schema for this call, sampling, retries, the cache
digest, and how to check an answer); the call loop and the runner work from
that alone and never see the task.  :class:`Preparer` is the little the
runner needs from a task to prepare rows itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
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
    """One call, ready to run: messages, schema, sampling, retries, cache digest and output check.

    ``retry_temperature``, when set, is the temperature of every attempt after
    the first (each with a fresh seed), so a retry can change an answer that
    greedy decoding would only repeat.  ``confidence`` asks backends that can
    score for the answer's scores; ``choose_by_score`` returns each scored
    field's most probable value instead of the decoded one.
    """

    task: str
    messages: tuple[Message, ...]
    schema: Mapping[str, Any] | None
    sampling: Sampling
    retries: int
    digest: str
    check: OutputCheck[R]
    retry_temperature: float | None = None
    confidence: bool = True
    choose_by_score: bool = False

    def sampling_for(self, attempt: int) -> Sampling:
        """The sampling settings of attempt ``attempt`` (0 is the first)."""
        if attempt == 0 or self.retry_temperature is None:
            return self.sampling
        seed = self.sampling.seed + attempt if self.sampling.seed is not None else None
        return replace(self.sampling, temperature=max(self.sampling.temperature, self.retry_temperature), seed=seed)


class Preparer(Protocol[R]):
    """What the runner needs from a task: its name, and a row turned into a prepared call."""

    @property
    def name(self) -> str: ...

    def prepare_row(self, row: Mapping[str, Any], *, label: str, backend: BackendInfo) -> PreparedCall[R]:
        """Validate ``row`` as inputs (errors name ``label``) and prepare the call; raises PromptaskError."""
        ...
