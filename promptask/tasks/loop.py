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

Scores.  When the call wants confidence and the backend can score
(``BackendInfo.confidence`` is not ``"none"``), each request asks for
:class:`~promptask.Scores`; the result's ``confidence`` is computed from them
(:func:`promptask.scoring.confidence_of`), and with ``choose_by_score`` each
scored field is set to its most probable value before the answer is checked
(an answer that then fails its checks is kept as decoded).  The scores are
cached with the output, and a cached entry without them is recomputed when
they are wanted.

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
from promptask.scoring import choose_by_score, confidence_of
from promptask.tasks.parsing import extract_json
from promptask.tasks.prepared import PreparedCall
from promptask.tasks.result import Attempt, TaskResult
from promptask.types import Generation, GenerationRequest, Message, SchemaEnforcement, Scores, Usage

__all__ = ["CallLoop", "call_loop"]

R = TypeVar("R")
CallLoop = Generator[GenerationRequest, Generation, TaskResult[R]]

RETRY_MESSAGE = "That answer was rejected: {error}. Reply again with only the corrected JSON object."
SHORTER_MESSAGE = ("An earlier answer was stopped: {error}. Answer again with a shorter JSON object: brief strings, "
                   "few list items, and optional fields only where the text gives them.")  # fmt: skip


def call_loop(call: PreparedCall[R], info: BackendInfo, cache: ResultCache | None, mode: CacheMode) -> CallLoop[R]:
    """The data path of one call; see the module docstring."""
    started = time.perf_counter()
    scored = call.confidence and info.confidence != "none"
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
            hit = _from_cache(call, cache, key, info, started, scored)
            if hit is not None:
                return hit

    conversation = list(call.messages)
    attempts: list[Attempt] = []
    usage = Usage()
    for attempt in range(call.retries + 1):
        request = GenerationRequest(tuple(conversation), call.schema, call.sampling_for(attempt), scores=scored)
        generation = yield request
        usage += generation.usage
        enforcement = generation.schema_enforcement or info.schema_enforcement
        lenient = enforcement not in (SchemaEnforcement.TOKENS, SchemaEnforcement.SERVER)
        try:
            if generation.finish_reason == "repetition":  # stopped early: a string value was looping
                raise ValueError(generation.note or "the answer fell into a repetition loop")
            data = extract_json(generation.text, lenient=lenient)
            scores = generation.scores if scored else None
            stored, value, data = _check(call, data, scores)
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
            record: dict[str, Any] = {"output": stored, "raw": generation.text}
            if scores is not None:
                record["scores"] = scores.to_dict()
            cache.set(key, record)
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
            confidence=confidence_of(scores, data),
            scores=dict(scores.choices) if scores is not None else {},
            text_logprobs=dict(scores.text) if scores is not None else {},
        )
    raise OutputValidationError(call.task, attempts, usage)


def _start_again(messages: tuple[Message, ...], error: str) -> list[Message]:
    """The original conversation with a note on the last user turn: the cut answer is not shown again."""
    *head, last = messages
    if last.role != "user":
        return [*messages, Message("user", SHORTER_MESSAGE.format(error=error))]
    return [*head, Message("user", f"{last.content}\n\n{SHORTER_MESSAGE.format(error=error)}")]


def _check(call: PreparedCall[R], data: Any, scores: Scores | None) -> tuple[Any, R, Any]:
    """Check the answer (each scored field set to its most probable value, with ``choose_by_score``)."""
    if scores is not None and scores.choices and call.choose_by_score:
        chosen = choose_by_score(data, scores)
        if chosen != data:
            try:
                stored, value = call.check(chosen)
                return stored, value, chosen
            except ValueError:
                pass  # the most probable combination breaks a check: keep the answer as decoded
    stored, value = call.check(data)
    return stored, value, data


def _attempt(generation: Generation, error: str | None) -> Attempt:
    return Attempt(generation.text, error, generation.finish_reason, generation.usage, generation.timings)


def _from_cache(
    call: PreparedCall[R], cache: ResultCache, key: str, info: BackendInfo, started: float, scored: bool
) -> TaskResult[R] | None:
    record: dict[str, Any] | None = cache.get(key)
    if record is None:
        return None
    scores: Scores | None = None
    try:
        _, value = call.check(record.get("output"))
        if record.get("scores") is not None:
            scores = Scores.from_dict(record["scores"])
    except (ValueError, KeyError, TypeError, AttributeError):
        cache.delete(key)  # stale or tampered: recompute
        return None
    if scored and scores is None:
        return None  # stored without scores: recompute them (the new entry replaces this one)
    if not scored:
        scores = None
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
        confidence=confidence_of(scores, record.get("output")),
        scores=dict(scores.choices) if scores is not None else {},
        text_logprobs=dict(scores.text) if scores is not None else {},
    )
