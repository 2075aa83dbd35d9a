"""The contract between tasks and models: one required method, optional capabilities with defaults.

A backend needs one method, ``generate(request) -> Generation``, so a
ten-line class is a complete backend:

>>> from promptask.backends import Generation, GenerationRequest, Usage
>>> class Echo:
...     def generate(self, request: GenerationRequest) -> Generation:
...         return Generation(text=request.messages[-1].content, usage=Usage(1, 1))

Everything else is an optional capability, declared on :class:`BaseBackend`
with its default.  The built-in backends subclass it; any other object with
``generate`` is wrapped once, where backends are resolved
(:func:`promptask.resolve_backend`), by an adapter that reads the same
capabilities from it.  Callers therefore ask a :class:`BaseBackend` and never
probe a backend's attributes themselves.

``name``
    A short identifier shown in ``TaskResult.backend``.
``schema_enforcement``
    How the backend makes output follow ``request.schema``: a
    :class:`SchemaEnforcement` value.  Defaults to ``NONE``.
``fingerprint()``
    A string that changes whenever the same request could get another answer
    (model content digest, settings), or ``None``.  Results are cached only
    for backends that have one.  It must never contain credentials.
``agenerate(request)``
    A coroutine.  By default ``generate`` runs in a worker thread; a backend
    with real asynchronous I/O sets ``native_async`` and ``map`` then keeps
    ``concurrency`` requests in flight on an event loop instead of threads.
``concurrency``
    How many requests ``Task.map`` keeps in flight by default.
``generate_batch(requests, batch_size)`` and ``batch_size``
    Generate for several requests in one go, decoding up to ``batch_size``
    of them together.  By default requests run one by one; a backend that
    decodes rows together sets ``batch_size`` above 1, and ``Task.map`` then
    hands it a few batches' worth of rows at a time.
``context_tokens``
    The backend's context length in tokens, when it has a fixed one.
``confidence``
    Whether and how the backend scores answers (``Generation.scores``, asked
    for with ``GenerationRequest.scores``): ``"sequence"`` (whole-sequence
    scores of every allowed value, the local backends), ``"logprobs"`` (a
    server's token log-probabilities), or ``"none"`` (the default: results
    then have ``confidence=None``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from promptask.types import (
    Generation,
    GenerationRequest,
    Message,
    Role,
    Sampling,
    SchemaEnforcement,
    Usage,
)

__all__ = [
    "Backend",
    "BackendInfo",
    "BaseBackend",
    "Generation",
    "GenerationRequest",
    "Message",
    "Role",
    "Sampling",
    "SchemaEnforcement",
    "Usage",
    "adapt",
    "describe",
]


@runtime_checkable
class Backend(Protocol):
    """Anything with ``generate(request) -> Generation`` is a backend."""

    def generate(self, request: GenerationRequest) -> Generation: ...


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """A backend's capabilities, as the call loop and the runner read them."""

    name: str
    schema_enforcement: SchemaEnforcement
    fingerprint: str | None
    concurrency: int
    batch_size: int
    native_async: bool = False
    context_tokens: int | None = None
    confidence: str = "none"


class BaseBackend:
    """The base of every backend: ``generate`` plus the optional capabilities, with their defaults.

    Subclass it and implement :meth:`generate`; override what your backend
    can do better.

    >>> class Shout(BaseBackend):
    ...     name = "shout"
    ...     def generate(self, request: GenerationRequest) -> Generation:
    ...         return Generation(text=request.messages[-1].content.upper())
    >>> Shout().info()
    BackendInfo(name='shout', schema_enforcement=<SchemaEnforcement.NONE: 'none'>, fingerprint=None, \
concurrency=1, batch_size=1, native_async=False, context_tokens=None, confidence='none')
    """

    name: str = ""
    batch_size: int = 1
    native_async: bool = False

    # Properties, so a backend may set a class attribute or compute the value (a server steps down).
    @property
    def schema_enforcement(self) -> SchemaEnforcement:
        return SchemaEnforcement.NONE

    @property
    def concurrency(self) -> int:
        return 1

    @property
    def context_tokens(self) -> int | None:
        return None

    @property
    def confidence(self) -> str:
        return "none"

    def generate(self, request: GenerationRequest) -> Generation:
        raise NotImplementedError(f"{type(self).__name__} does not implement generate(request)")

    def fingerprint(self) -> str | None:
        """What identifies this backend's answers for the cache; ``None``: do not cache."""
        return None

    async def agenerate(self, request: GenerationRequest) -> Generation:
        """``generate`` in a worker thread, unless the backend has real asynchronous I/O."""
        return await asyncio.to_thread(self.generate, request)

    def generate_batch(self, requests: Sequence[GenerationRequest], batch_size: int | None = None) -> list[Generation]:
        """One generation per request, in order; by default one request at a time."""
        return [self.generate(request) for request in requests]

    def info(self) -> BackendInfo:
        """The capabilities in one record (the fingerprint is computed here)."""
        return BackendInfo(
            name=str(self.name or type(self).__name__),
            schema_enforcement=SchemaEnforcement(self.schema_enforcement),
            fingerprint=self.fingerprint(),
            concurrency=max(1, int(self.concurrency or 1)),
            batch_size=max(1, int(self.batch_size or 1)),
            native_async=bool(self.native_async),
            context_tokens=self.context_tokens,
            confidence=str(self.confidence),
        )


class _Adapted(BaseBackend):
    """A plain object with ``generate``, seen through the :class:`BaseBackend` contract."""

    context_tokens: int | None = None

    def __init__(self, backend: Any) -> None:
        self.wrapped = backend
        self.name = str(getattr(backend, "name", None) or type(backend).__name__)
        self._generate: Callable[[GenerationRequest], Generation] = backend.generate
        self._fingerprint: Callable[[], Any] | None = _callable(backend, "fingerprint")
        self._agenerate: Callable[[GenerationRequest], Any] | None = _callable(backend, "agenerate")
        self._generate_batch: Callable[..., Sequence[Generation]] | None = _callable(backend, "generate_batch")
        self.native_async = self._agenerate is not None
        self.batch_size = int(getattr(backend, "batch_size", 1) or 1) if self._generate_batch else 1
        self.context_tokens = getattr(backend, "context_tokens", None)

    @property
    def schema_enforcement(self) -> SchemaEnforcement:  # read at every call: a server may step down
        return SchemaEnforcement(getattr(self.wrapped, "schema_enforcement", SchemaEnforcement.NONE))

    @property
    def concurrency(self) -> int:
        return int(getattr(self.wrapped, "concurrency", 1) or 1)

    @property
    def confidence(self) -> str:
        return str(getattr(self.wrapped, "confidence", "none") or "none")

    def generate(self, request: GenerationRequest) -> Generation:
        return self._generate(request)

    def fingerprint(self) -> str | None:
        return str(self._fingerprint()) if self._fingerprint is not None else None

    async def agenerate(self, request: GenerationRequest) -> Generation:
        if self._agenerate is None:
            return await super().agenerate(request)
        generation: Generation = await self._agenerate(request)
        return generation

    def generate_batch(self, requests: Sequence[GenerationRequest], batch_size: int | None = None) -> list[Generation]:
        if self._generate_batch is None:
            return super().generate_batch(requests, batch_size)
        return list(self._generate_batch(list(requests), batch_size or self.batch_size))

    def __repr__(self) -> str:
        return repr(self.wrapped)


def _callable(backend: Any, name: str) -> Callable[..., Any] | None:
    attribute = getattr(backend, name, None)
    return attribute if callable(attribute) else None


def adapt(backend: Backend) -> BaseBackend:
    """``backend`` itself when it is a :class:`BaseBackend`, else the adapter around it."""
    return backend if isinstance(backend, BaseBackend) else _Adapted(backend)


def describe(backend: Backend) -> BackendInfo:
    """A backend's capabilities, with their defaults filled in (see the module docstring)."""
    return adapt(backend).info()
