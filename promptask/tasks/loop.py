"""One task call, from a prepared call to a validated result: the data path.

::

    prepared call --cache lookup--> hit: check the stored output again --> TaskResult(cached=True)
                  --miss--> GenerationRequest (messages, JSON Schema, sampling) --> the backend
                  --parse JSON--> check (schema, validators, checks)
                  --invalid--> append the answer and the error, generate again (``retries`` times,
                               sampled as ``PreparedCall.sampling_for`` says); an answer cut at
                               max_tokens or stopped in a loop is not shown again: the original
                               messages are sent with a note asking for a shorter answer
                  --valid--> cache store --> TaskResult

The loop is written once, as a generator that yields each
:class:`~promptask.GenerationRequest` and is sent back the
:class:`~promptask.Generation`; it does no I/O but the cache's.  The drivers
in :mod:`promptask.tasks.runner` differ only in how they obtain generations
(one at a time, awaited, or in batches).
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any, TypeVar

from promptask._version import __version__
from promptask.backends.base import BackendInfo
from promptask.cache import CacheMode, ResultCache, cache_key
from promptask.errors import OutputValidationError
from promptask.tasks.parsing import extract_json
from promptask.tasks.prepared import PreparedCall
from promptask.tasks.result import Attempt, TaskResult
from promptask.types import Generation, GenerationRequest, Message, SchemaEnforcement, Usage

__all__ = ["CallLoop", "call_loop"]

R = TypeVar("R")
CallLoop = Generator[GenerationRequest, Generation, TaskResult[R]]

RETRY_MESSAGE = "That answer was rejected: {error}. Reply again with only the corrected JSON object."
SHORTER_MESSAGE = ("An earlier answer was stopped: {error}. Answer again with a shorter JSON object: brief strings, "
                   "few list items, and optional fields only where the text gives them.")  # fmt: skip


def call_loop(call: PreparedCall[R], info: BackendInfo, cache: ResultCache | None, mode: CacheMode) -> CallLoop[R]:
    """The data path of one call; see the module docstring."""
    started = time.perf_counter()
    key = None
    if cache is not None and info.fingerprint is not None:
        key = cache_key(
            task_digest=call.digest,
            messages=call.messages,
            sampling=call.sampling,
            backend_fingerprint=info.fingerprint,
            version=__version__,
        )
        if mode is CacheMode.ON:
            hit = _from_cache(call, cache, key, info, started)
            if hit is not None:
                return hit

    conversation = list(call.messages)
    attempts: list[Attempt] = []
    usage = Usage()
    for attempt in range(call.retries + 1):
        generation = yield GenerationRequest(tuple(conversation), call.schema, call.sampling_for(attempt))
        usage += generation.usage
        enforcement = generation.schema_enforcement or info.schema_enforcement
        lenient = enforcement not in (SchemaEnforcement.TOKENS, SchemaEnforcement.SERVER)
        try:
            if generation.finish_reason == "repetition":  # stopped early: a string value was looping
                raise ValueError(generation.note or "the answer fell into a repetition loop")
            stored, value = call.check(extract_json(generation.text, lenient=lenient))
        except ValueError as exc:
            error = str(exc)
            if generation.finish_reason == "length":
                tokens = generation.usage.completion_tokens or call.sampling.max_tokens
                error = f"output truncated at {tokens} tokens; raise max_tokens ({error})"
            attempts.append(_attempt(generation, error))
            if generation.finish_reason in ("length", "repetition"):
                conversation = _start_again(call.messages, error)  # a cut answer is long and only invites a copy
            else:
                conversation += [
                    Message("assistant", generation.text),
                    Message("user", RETRY_MESSAGE.format(error=error)),
                ]
            continue
        attempts.append(_attempt(generation, None))
        if cache is not None and key is not None:
            cache.set(key, {"output": stored, "raw": generation.text})
        return TaskResult(
            task=call.task,
            output=value,
            raw=generation.text,
            attempts=tuple(attempts),
            usage=usage,
            latency_s=time.perf_counter() - started,
            cached=False,
            backend=info.name,
            schema_enforcement=enforcement,
        )
    raise OutputValidationError(call.task, attempts, usage)


def _start_again(messages: tuple[Message, ...], error: str) -> list[Message]:
    """The original conversation with a note on the last user turn: the cut answer is not shown again."""
    *head, last = messages
    if last.role != "user":
        return [*messages, Message("user", SHORTER_MESSAGE.format(error=error))]
    return [*head, Message("user", f"{last.content}\n\n{SHORTER_MESSAGE.format(error=error)}")]


def _attempt(generation: Generation, error: str | None) -> Attempt:
    return Attempt(generation.text, error, generation.finish_reason, generation.usage, generation.timings)


def _from_cache(
    call: PreparedCall[R], cache: ResultCache, key: str, info: BackendInfo, started: float
) -> TaskResult[R] | None:
    record: dict[str, Any] | None = cache.get(key)
    if record is None:
        return None
    try:
        _, value = call.check(record.get("output"))
    except ValueError:
        cache.delete(key)  # stale or tampered: recompute
        return None
    return TaskResult(
        task=call.task,
        output=value,
        raw=str(record.get("raw", "")),
        attempts=(),
        usage=Usage(),
        latency_s=time.perf_counter() - started,
        cached=True,
        backend=info.name,
        schema_enforcement=info.schema_enforcement,
    )
