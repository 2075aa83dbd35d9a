"""What a task call returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, TypeAdapter

from promptask.types import SchemaEnforcement, Usage

__all__ = ["Attempt", "TaskResult"]

R = TypeVar("R", covariant=True)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One generation: its raw text, why it was rejected (``error``) if it was, and the backend's timings."""

    raw: str
    error: str | None
    finish_reason: str
    usage: Usage
    timings: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "raw": self.raw,
            "error": self.error,
            "finish_reason": self.finish_reason,
            "usage": self.usage.to_dict(),
            "timings": dict(self.timings),
        }


@dataclass(frozen=True, slots=True)
class TaskResult(Generic[R]):
    """The validated output of one task call, with how it was obtained.

    ``usage`` sums every attempt's tokens; a cached result spent none, so its
    usage is zero and ``attempts`` is empty.  ``backend`` names the backend
    that answered; ``schema_enforcement`` says how the answer was held to the
    schema (a server that fell back from its schema support to JSON mode or
    plain text says so here).  ``confidence`` is the probability of the
    returned output's scored fields (fields with a finite set of allowed
    values; the product of their probabilities) and ``scores`` maps each
    scored field's path to ``{value: probability}``; both are empty (``None``,
    ``{}``) when the backend cannot score or the output has no such field.
    ``text_logprobs`` maps each free-text field's path to the mean
    log-probability of its generated tokens: a proxy, not a probability, kept
    apart from ``confidence`` (see :mod:`promptask.scoring`).

    >>> import promptask
    >>> backend = promptask.ScriptedBackend(['{"label": "positive"}'])
    >>> result = promptask.tasks.sentiment.run(text="I love it", backend=backend, cache=False)
    >>> result.output.label, result.cached, len(result.attempts)
    ('positive', False, 1)
    """

    task: str
    output: R
    raw: str
    attempts: tuple[Attempt, ...]
    usage: Usage
    latency_s: float
    cached: bool
    backend: str
    schema_enforcement: SchemaEnforcement = SchemaEnforcement.NONE
    confidence: float | None = None
    scores: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    text_logprobs: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the output as JSON data)."""
        return {
            "task": self.task,
            "output": to_jsonable(self.output),
            "raw": self.raw,
            "attempts": [a.to_dict() for a in self.attempts],
            "usage": self.usage.to_dict(),
            "latency_s": self.latency_s,
            "cached": self.cached,
            "backend": self.backend,
            "schema_enforcement": self.schema_enforcement.value,
            "confidence": self.confidence,
            "scores": {path: dict(values) for path, values in self.scores.items()},
            "text_logprobs": dict(self.text_logprobs),
        }


def to_jsonable(value: Any) -> Any:
    """JSON data for an output value (pydantic models and enums included)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    return TypeAdapter(type(value)).dump_python(value, mode="json")
