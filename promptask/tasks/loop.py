"""One task call, from rendered messages to a validated result.

::

    messages --cache lookup--> hit: validate the stored output again --> TaskResult(cached=True)
             --miss--> Backend.generate(request with the output JSON Schema)
             --parse JSON--> validate (output model + task validators)
             --invalid--> append the answer and the error, generate again (``retries`` times)
             --valid--> cache store --> TaskResult

The loop is written once, as a generator that yields each
:class:`GenerationRequest` and is sent back the :class:`Generation`; the sync
and async drivers below differ only in how they obtain a generation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator, Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pydantic import BaseModel

from promptask import __version__
from promptask.backends.base import (
    Backend,
    BackendInfo,
    Generation,
    GenerationRequest,
    Message,
    SchemaEnforcement,
    Usage,
    describe,
)
from promptask.cache import CacheMode, ResultCache, cache_key
from promptask.config import CacheSetting, resolve_cache
from promptask.errors import BackendError, OutputValidationError, PromptaskError
from promptask.tasks.dynamic import schema_digest
from promptask.tasks.parsing import extract_json
from promptask.tasks.result import Attempt, TaskResult

if TYPE_CHECKING:
    from promptask.tasks.task import Task

__all__ = ["call_loop", "run_async", "run_lockstep", "run_sync"]

R = TypeVar("R")
K = TypeVar("K", bound=Hashable)
CallLoop = Generator[GenerationRequest, Generation, TaskResult[R]]

RETRY_MESSAGE = "That answer was rejected: {error}. Reply again with only the corrected JSON object."


def call_loop(
    task: Task[Any, R],
    inputs: BaseModel,
    info: BackendInfo,
    cache: ResultCache | None,
    mode: CacheMode,
) -> CallLoop[R]:
    """The data path of one call; see the module docstring."""
    started = time.perf_counter()
    messages = task.messages_for(inputs)
    schema = task.request_schema(inputs)
    key = None
    if cache is not None and info.fingerprint is not None:
        key = cache_key(
            task_digest=task.digest if schema is task.schema else f"{task.digest}:{schema_digest(schema)}",
            messages=messages,
            sampling=task.sampling,
            backend_fingerprint=info.fingerprint,
            version=__version__,
        )
        if mode is CacheMode.ON:
            hit = _from_cache(task, inputs, cache, key, info, started)
            if hit is not None:
                return hit

    conversation = list(messages)
    attempts: list[Attempt] = []
    usage = Usage()
    for _ in range(task.retries + 1):
        generation = yield GenerationRequest(tuple(conversation), schema, task.sampling)
        usage += generation.usage
        enforcement = generation.schema_enforcement or info.schema_enforcement
        lenient = enforcement not in (SchemaEnforcement.TOKENS, SchemaEnforcement.SERVER)
        try:
            model, value = task.check_output(extract_json(generation.text, lenient=lenient), inputs)
        except ValueError as exc:
            error = str(exc)
            if generation.finish_reason == "length":
                tokens = generation.usage.completion_tokens or task.sampling.max_tokens
                error = f"output truncated at {tokens} tokens; raise max_tokens ({error})"
            attempts.append(Attempt(generation.text, error, generation.finish_reason, generation.usage,
                                    generation.timings))  # fmt: skip
            conversation += [
                Message("assistant", generation.text),
                Message("user", RETRY_MESSAGE.format(error=error)),
            ]
            continue
        attempts.append(Attempt(generation.text, None, generation.finish_reason, generation.usage, generation.timings))
        if cache is not None and key is not None:
            cache.set(key, {"output": model.model_dump(mode="json", by_alias=True), "raw": generation.text})
        return TaskResult(
            task=task.name,
            output=value,
            raw=generation.text,
            attempts=tuple(attempts),
            usage=usage,
            latency_s=time.perf_counter() - started,
            cached=False,
            backend=info.name,
            schema_enforcement=enforcement,
        )
    raise OutputValidationError(task.name, attempts, usage)


def _from_cache(
    task: Task[Any, R], inputs: BaseModel, cache: ResultCache, key: str, info: BackendInfo, started: float
) -> TaskResult[R] | None:
    record = cache.get(key)
    if record is None:
        return None
    try:
        _, value = task.check_output(record.get("output"), inputs)
    except ValueError:
        cache.delete(key)  # stale or tampered: recompute
        return None
    return TaskResult(
        task=task.name,
        output=value,
        raw=str(record.get("raw", "")),
        attempts=(),
        usage=Usage(),
        latency_s=time.perf_counter() - started,
        cached=True,
        backend=info.name,
        schema_enforcement=info.schema_enforcement,
    )


def _checked(generation: Any, info: BackendInfo) -> Generation:
    if not isinstance(generation, Generation):
        raise BackendError(f"backend {info.name} returned {type(generation).__name__}, not a Generation")
    return generation


@contextmanager
def _backend_call(info: BackendInfo) -> Iterator[None]:
    """Let promptask's own errors through; turn anything else a backend raises into a BackendError."""
    try:
        yield
    except PromptaskError:
        raise
    except Exception as exc:
        raise BackendError(f"backend {info.name} failed: {type(exc).__name__}: {exc}") from exc


def _start(
    task: Task[Any, R], inputs: BaseModel, backend: Backend, cache_setting: CacheSetting | None
) -> tuple[CallLoop[R], BackendInfo]:
    info = describe(backend)
    cache, mode = resolve_cache(cache_setting)
    return call_loop(task, inputs, info, cache, mode), info


def run_sync(
    task: Task[Any, R], inputs: BaseModel, backend: Backend, cache_setting: CacheSetting | None = None
) -> TaskResult[R]:
    """Drive :func:`call_loop` with ``backend.generate``."""
    loop, info = _start(task, inputs, backend, cache_setting)
    try:
        request = next(loop)
        while True:
            with _backend_call(info):
                generation = backend.generate(request)
            request = loop.send(_checked(generation, info))
    except StopIteration as done:
        result: TaskResult[R] = done.value
        return result


async def run_async(
    task: Task[Any, R], inputs: BaseModel, backend: Backend, cache_setting: CacheSetting | None = None
) -> TaskResult[R]:
    """Drive :func:`call_loop` with ``backend.agenerate``, or ``generate`` in a worker thread."""
    loop, info = _start(task, inputs, backend, cache_setting)
    agenerate = getattr(backend, "agenerate", None)
    try:
        request = next(loop)
        while True:
            with _backend_call(info):
                if agenerate is not None:
                    generation = await agenerate(request)
                else:
                    generation = await asyncio.to_thread(backend.generate, request)
            request = loop.send(_checked(generation, info))
    except StopIteration as done:
        result: TaskResult[R] = done.value
        return result


def run_lockstep(
    task: Task[Any, R],
    items: Sequence[tuple[K, BaseModel]],
    backend: Backend,
    cache_setting: CacheSetting | None = None,
    batch_size: int | None = None,
) -> list[tuple[K, TaskResult[R] | PromptaskError]]:
    """Drive one :func:`call_loop` per item together, one ``backend.generate_batch`` call per step.

    The backend decodes up to ``batch_size`` rows together (default: its own).

    Cache hits finish at once; rows that need a retry go into the next batch with
    the rows still on their first attempt.  A failed batch fails each row in it.
    """
    info = describe(backend)
    cache, mode = resolve_cache(cache_setting)
    generate_batch: Callable[[list[GenerationRequest], int], Sequence[Generation]] = cast(Any, backend).generate_batch
    batch_size = batch_size or info.batch_size
    loops: dict[K, CallLoop[R]] = {}
    pending: dict[K, GenerationRequest] = {}
    results: dict[K, TaskResult[R] | PromptaskError] = {}

    def advance(key: K, generation: Generation | None) -> None:
        loop = loops[key]
        try:
            pending[key] = next(loop) if generation is None else loop.send(_checked(generation, info))
        except StopIteration as done:
            results[key] = done.value
        except PromptaskError as exc:
            results[key] = exc

    for key, inputs in items:
        loops[key] = call_loop(task, inputs, info, cache, mode)
        advance(key, None)
    while pending:
        keys, batch = list(pending), list(pending.values())
        pending.clear()
        try:
            with _backend_call(info):
                generations = list(generate_batch(batch, batch_size))
            if len(generations) != len(batch):
                raise BackendError(f"backend {info.name} returned {len(generations)} generations for {len(batch)}")
        except PromptaskError as exc:
            results.update(dict.fromkeys(keys, exc))
            continue
        for key, generation in zip(keys, generations, strict=True):
            advance(key, generation)
    return [(key, results[key]) for key, _ in items]
