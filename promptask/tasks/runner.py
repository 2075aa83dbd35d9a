"""Running calls on a backend: one at a time, awaited, in lockstep batches, or many in flight.

Every driver feeds the same :func:`~promptask.tasks.loop.call_loop`:

* :func:`run` asks ``backend.generate`` for each request;
* :func:`arun` awaits ``backend.agenerate``;
* :func:`run_lockstep` advances many loops together, one ``generate_batch``
  call per step, for backends that decode rows together;
* :func:`stream` runs a task over many rows and yields each outcome as it
  finishes: in lockstep batches where the backend batches, else as plain
  calls, ``concurrency`` of them in flight (on the event-loop bridge for
  backends with real asynchronous I/O, in threads otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Hashable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, TypeVar

from promptask.backends.base import BackendInfo, BaseBackend
from promptask.bridge import portal
from promptask.config import CacheSetting, resolve_cache
from promptask.errors import BackendError, PromptaskError
from promptask.tasks.loop import CallLoop, call_loop
from promptask.tasks.prepared import PreparedCall, Preparer
from promptask.tasks.result import TaskResult
from promptask.types import Generation, GenerationRequest

__all__ = ["WINDOW", "arun", "run", "run_lockstep", "stream"]

R = TypeVar("R")
K = TypeVar("K", bound=Hashable)
Outcome = tuple[K, "TaskResult[R] | PromptaskError"]

WINDOW = 4
"""Batches' worth of rows handed to a batching backend at once: it keeps ``batch_size`` of
them decoding and starts the next as soon as one finishes."""


def run(call: PreparedCall[R], backend: BaseBackend, cache: CacheSetting | None = None) -> TaskResult[R]:
    """Drive one call with ``backend.generate``."""
    info = backend.info()
    loop = _start(call, info, cache)
    try:
        request = next(loop)
        while True:
            with _backend_call(info):
                generation = backend.generate(request)
            request = loop.send(_checked(generation, info))
    except StopIteration as done:
        result: TaskResult[R] = done.value
        return result


async def arun(call: PreparedCall[R], backend: BaseBackend, cache: CacheSetting | None = None) -> TaskResult[R]:
    """Drive one call with ``backend.agenerate``."""
    info = backend.info()
    loop = _start(call, info, cache)
    try:
        request = next(loop)
        while True:
            with _backend_call(info):
                generation = await backend.agenerate(request)
            request = loop.send(_checked(generation, info))
    except StopIteration as done:
        result: TaskResult[R] = done.value
        return result


def run_lockstep(
    calls: Sequence[tuple[K, PreparedCall[R]]],
    backend: BaseBackend,
    cache: CacheSetting | None = None,
    batch_size: int | None = None,
) -> list[tuple[K, TaskResult[R] | PromptaskError]]:
    """Drive one call loop per item together, one ``backend.generate_batch`` call per step.

    Cache hits finish at once; rows that need a retry go into the next batch
    with the rows still on their first attempt.  A failed batch fails each row
    in it.  Outcomes come back in the order of ``calls``.
    """
    info = backend.info()
    store, mode = resolve_cache(cache)
    loops: dict[K, CallLoop[R]] = {}
    pending: dict[K, GenerationRequest] = {}
    outcomes: dict[K, TaskResult[R] | PromptaskError] = {}

    def advance(key: K, generation: Generation | None) -> None:
        loop = loops[key]
        try:
            pending[key] = next(loop) if generation is None else loop.send(_checked(generation, info))
        except StopIteration as done:
            outcomes[key] = done.value
        except PromptaskError as exc:
            outcomes[key] = exc

    for key, call in calls:
        loops[key] = call_loop(call, info, store, mode)
        advance(key, None)
    while pending:
        keys, batch = list(pending), list(pending.values())
        pending.clear()
        try:
            with _backend_call(info):
                generations = list(backend.generate_batch(batch, batch_size or info.batch_size))
            if len(generations) != len(batch):
                raise BackendError(f"backend {info.name} returned {len(generations)} generations for {len(batch)}")
        except PromptaskError as exc:
            outcomes.update(dict.fromkeys(keys, exc))
            continue
        for key, generation in zip(keys, generations, strict=True):
            advance(key, generation)
    return [(key, outcomes[key]) for key, _ in calls]


def stream(
    task: Preparer[R],
    rows: Iterable[tuple[K, Mapping[str, Any]]],
    backend: BaseBackend,
    *,
    concurrency: int | None = None,
    batch_size: int | None = None,
    cache: CacheSetting | None = None,
) -> Generator[tuple[K, TaskResult[R] | PromptaskError], None, None]:
    """Run ``task`` on each ``(key, inputs)``; yield ``(key, result or error)`` as each finishes.

    Input errors and failed runs are yielded, not raised, so one bad row never
    stops the others.  Rows are read only as work frees up, so an endless
    iterable is fine, and closing the generator early cancels what has not
    finished.  A backend that decodes rows together gets them in windows of
    ``WINDOW * batch_size``; any other backend gets plain calls, ``concurrency``
    at a time (default: the backend's own ``concurrency``), whatever
    ``batch_size`` says.
    """
    info = backend.info()

    def prepare(key: K, row: Mapping[str, Any]) -> PreparedCall[R]:
        return task.prepare_row(row, label=f"row {key}", backend=info)

    batch = batch_size or info.batch_size
    if info.batch_size > 1 and batch > 1:
        return _in_batches(prepare, rows, backend, batch, cache)
    return _in_flight(prepare, rows, backend, max(1, concurrency or info.concurrency), cache, info.native_async)


def _in_batches(
    prepare: Callable[[K, Mapping[str, Any]], PreparedCall[R]],
    rows: Iterable[tuple[K, Mapping[str, Any]]],
    backend: BaseBackend,
    batch_size: int,
    cache: CacheSetting | None,
) -> Generator[tuple[K, TaskResult[R] | PromptaskError], None, None]:
    chunk: list[tuple[K, PreparedCall[R]]] = []
    for key, row in rows:
        try:
            chunk.append((key, prepare(key, row)))
        except PromptaskError as exc:
            yield key, exc
        if len(chunk) == WINDOW * batch_size:
            yield from run_lockstep(chunk, backend, cache, batch_size)
            chunk = []
    if chunk:
        yield from run_lockstep(chunk, backend, cache, batch_size)


def _in_flight(
    prepare: Callable[[K, Mapping[str, Any]], PreparedCall[R]],
    rows: Iterable[tuple[K, Mapping[str, Any]]],
    backend: BaseBackend,
    concurrency: int,
    cache: CacheSetting | None,
    native_async: bool,
) -> Generator[tuple[K, TaskResult[R] | PromptaskError], None, None]:
    def one(key: K, row: Mapping[str, Any]) -> tuple[K, TaskResult[R] | PromptaskError]:
        try:
            return key, run(prepare(key, row), backend, cache)
        except PromptaskError as exc:
            return key, exc

    async def one_async(key: K, row: Mapping[str, Any]) -> tuple[K, TaskResult[R] | PromptaskError]:
        try:
            return key, await arun(prepare(key, row), backend, cache)
        except PromptaskError as exc:
            return key, exc

    if concurrency == 1:
        for key, row in rows:
            yield one(key, row)
        return
    if native_async:  # requests in flight on the event-loop bridge, not in threads
        bridge = portal()
        yield from _windowed(rows, lambda key, row: bridge.start_task_soon(one_async, key, row), concurrency)
        return
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="promptask") as pool:
        yield from _windowed(rows, lambda key, row: pool.submit(one, key, row), 2 * concurrency)


def _windowed(
    rows: Iterable[tuple[K, Mapping[str, Any]]],
    submit: Callable[[K, Mapping[str, Any]], Future[Outcome[K, R]]],
    window: int,
) -> Iterator[tuple[K, TaskResult[R] | PromptaskError]]:
    """Keep at most ``window`` rows submitted; yield outcomes as they finish; cancel the rest on close."""
    pending: set[Future[Outcome[K, R]]] = set()
    try:
        for key, row in rows:
            pending.add(submit(key, row))
            if len(pending) >= window:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in done)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield from (future.result() for future in done)
    finally:
        for future in pending:
            future.cancel()


def _start(call: PreparedCall[R], info: BackendInfo, cache: CacheSetting | None) -> CallLoop[R]:
    store, mode = resolve_cache(cache)
    return call_loop(call, info, store, mode)


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
