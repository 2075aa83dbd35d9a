"""The core value types: chat messages, sampling settings, requests, generations and token usage.

Prompts, the call loop, the cache, results and every backend speak in these
small frozen types; nothing here imports anything else from promptask.

>>> Usage(10, 3) + Usage(5, 2, cached_tokens=4)
Usage(prompt_tokens=15, completion_tokens=5, cached_tokens=4)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Generation",
    "GenerationRequest",
    "Message",
    "Role",
    "Sampling",
    "SchemaEnforcement",
    "Scores",
    "Usage",
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
    """Sampling settings.  ``temperature=0`` means greedy decoding.

    ``repeat_penalty`` (above 1) and ``frequency_penalty`` (above 0) discourage
    tokens an answer has already used inside its string values: the first
    divides a repeated token's positive logit (and multiplies a negative one)
    by the penalty, the second subtracts the penalty once per earlier use.
    Local backends apply them while decoding; servers get them as request
    parameters.
    """

    temperature: float = 0.0
    max_tokens: int = 512
    seed: int | None = 0
    top_p: float = 1.0
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "top_p": self.top_p,
            "repeat_penalty": self.repeat_penalty,
            "frequency_penalty": self.frequency_penalty,
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
    scores: bool = False
    """Ask for :class:`Scores` of the answer's fields (backends that cannot score ignore it)."""


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

    ``finish_reason`` is ``"stop"`` for a finished answer, ``"length"`` when
    the token limit cut it off, and ``"repetition"`` when the backend stopped a
    degenerate loop early; ``note`` then says where (``"repetition loop in field
    summary"``).  ``timings`` holds backend-specific durations in seconds (for
    example ``{"prompt_s": 0.1, "decode_s": 0.4}``).  ``schema_enforcement`` says
    how this answer was held to the schema, when that can differ from the
    backend's usual way (a server that fell back).
    """

    text: str
    finish_reason: str = "stop"
    usage: Usage = field(default_factory=Usage)
    timings: Mapping[str, float] = field(default_factory=dict)
    schema_enforcement: SchemaEnforcement | None = None
    note: str = ""
    scores: Scores | None = None


@dataclass(frozen=True, slots=True)
class Scores:
    """How likely the fields of one answer were, as a backend scored them.

    ``choices`` maps the path of each field with a finite set of allowed values
    (``"label"``, ``"labels[0]"``, ``"order.team"``) to ``{value: probability}``
    over those values (summing to 1; a value is keyed by itself when it is a
    string, else by its JSON text).  ``text`` maps the path of each other
    scored field (free strings, and finite fields over the candidate limit) to
    the mean log-probability of the tokens generated for it: a proxy, not a
    probability.  ``method`` says how the choices were computed:
    ``"sequence"`` (whole-sequence scores of every candidate) or
    ``"logprobs"`` (a server's token log-probabilities, approximate).
    """

    choices: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    text: Mapping[str, float] = field(default_factory=dict)
    method: str = "sequence"

    def to_dict(self) -> dict[str, Any]:
        return {
            "choices": {path: dict(values) for path, values in self.choices.items()},
            "text": dict(self.text),
            "method": self.method,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scores:
        choices = {str(p): {str(k): float(v) for k, v in values.items()} for p, values in data["choices"].items()}
        return cls(choices, {str(p): float(v) for p, v in data["text"].items()}, str(data.get("method", "sequence")))


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
