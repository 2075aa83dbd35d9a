"""The contract between tasks and models: one protocol, small frozen types.

A backend needs one method, ``generate(request) -> Generation``.  Everything
else is an optional capability read with a default, so a ten-line class is a
complete backend:

>>> from promptask.backends import Generation, GenerationRequest, Usage
>>> class Echo:
...     def generate(self, request: GenerationRequest) -> Generation:
...         return Generation(text=request.messages[-1].content, usage=Usage(1, 1))

Optional capabilities (see :func:`describe`):

``name``
    A short identifier shown in ``TaskResult.backend``.
``schema_enforcement``
    How the backend makes output follow ``request.schema``: a
    :class:`SchemaEnforcement` value.  Defaults to ``NONE``.
``fingerprint()``
    A string that changes whenever the same request could get another answer
    (model content digest, settings).  Results are cached only for backends
    that have one.  It must never contain credentials.
``agenerate(request)``
    A coroutine; used by ``Task.arun`` instead of running ``generate`` in a thread.
``concurrency``
    How many requests ``Task.map`` should keep in flight by default.
``generate_batch(requests, batch_size)`` and ``batch_size``
    Generate for several requests in one go, decoding up to ``batch_size``
    of them together (``batch_size`` is the default).  ``Task.map`` then hands
    the backend a few batches' worth of rows at a time instead of one.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "Backend",
    "BackendInfo",
    "Generation",
    "GenerationRequest",
    "Message",
    "Role",
    "Sampling",
    "SchemaEnforcement",
    "Usage",
    "describe",
]

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message."""

    role: Role
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class Sampling:
    """Sampling settings.  ``temperature=0`` means greedy decoding."""

    temperature: float = 0.0
    max_tokens: int = 512
    seed: int | None = 0
    top_p: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "top_p": self.top_p,
        }


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What a task asks of a backend.

    ``schema`` is the JSON Schema the answer must match, or ``None`` for free text.
    It is shared between requests: backends must not modify it.
    """

    messages: tuple[Message, ...]
    schema: Mapping[str, Any] | None = None
    sampling: Sampling = field(default_factory=Sampling)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts; add two with ``+``.

    ``cached_tokens`` counts the prompt tokens the backend did not have to
    evaluate because they were already in its cache (a shared prefix); they
    are included in ``prompt_tokens``.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
        }


@dataclass(frozen=True, slots=True)
class Generation:
    """What a backend returns.

    ``finish_reason`` is ``"stop"`` for a finished answer and ``"length"`` when
    the token limit cut it off.  ``timings`` holds backend-specific durations in
    seconds (for example ``{"prompt_s": 0.1, "decode_s": 0.4}``).
    ``schema_enforcement`` says how this answer was held to the schema, when
    that can differ from the backend's usual way (a server that fell back).
    """

    text: str
    finish_reason: str = "stop"
    usage: Usage = field(default_factory=Usage)
    timings: Mapping[str, float] = field(default_factory=dict)
    schema_enforcement: SchemaEnforcement | None = None


class SchemaEnforcement(str, enum.Enum):
    """How a backend makes its output follow the requested JSON Schema."""

    TOKENS = "tokens"
    """Decoding is constrained token by token: output always matches the schema."""
    SERVER = "server"
    """The schema is sent to a server (``response_format``), which enforces it."""
    JSON = "json"
    """The server promises JSON (JSON mode) but not the schema; promptask validates and retries."""
    NONE = "none"
    """Nothing enforces it; promptask parses, validates and retries."""


@runtime_checkable
class Backend(Protocol):
    """Anything with ``generate(request) -> Generation`` is a backend."""

    def generate(self, request: GenerationRequest) -> Generation: ...


class _AsyncBackend(Protocol):
    def agenerate(self, request: GenerationRequest) -> Awaitable[Generation]: ...


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """A backend's optional capabilities, with their defaults filled in."""

    name: str
    schema_enforcement: SchemaEnforcement
    fingerprint: str | None
    concurrency: int
    batch_size: int


def describe(backend: Backend) -> BackendInfo:
    """Read a backend's optional capabilities (see the module docstring)."""
    name = getattr(backend, "name", None) or type(backend).__name__
    enforcement = SchemaEnforcement(getattr(backend, "schema_enforcement", SchemaEnforcement.NONE))
    fingerprint_fn = getattr(backend, "fingerprint", None)
    fingerprint = str(fingerprint_fn()) if callable(fingerprint_fn) else None
    concurrency = int(getattr(backend, "concurrency", 1) or 1)
    batch_size = (
        int(getattr(backend, "batch_size", 1) or 1) if callable(getattr(backend, "generate_batch", None)) else 1
    )
    return BackendInfo(str(name), enforcement, fingerprint, max(1, concurrency), max(1, batch_size))
