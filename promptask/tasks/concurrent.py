"""Running one task over many inputs, with a bound on the work in flight.

:func:`run_many` is the one implementation behind ``Task.map``, ``Task.stream``
and batch runs over files.  Results come back as they finish, so callers can
write them out at once and lose nothing if the run is interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Generator, Hashable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from promptask.backends.base import Backend
from promptask.config import CacheSetting
from promptask.errors import PromptaskError
from promptask.tasks.loop import run_async, run_lockstep, run_sync
from promptask.tasks.result import TaskResult

if TYPE_CHECKING:
    from promptask.tasks.task import Task

__all__ = ["run_many"]

# Rows handed to a batching backend at once, in batches: it keeps ``batch_size``
# of them decoding and starts the next as soon as one finishes.
WINDOW = 4

R = TypeVar("R")
K = TypeVar("K", bound=Hashable)
Outcome = tuple[K, "TaskResult[R] | PromptaskError"]


def run_many(
    task: Task[Any, R],
    items: Iterable[tuple[K, Mapping[str, Any]]],
    backend: Backend,
    *,
    concurrency: int = 1,
    batch_size: int = 1,
    cache: CacheSetting | None = None,
) -> Generator[tuple[K, TaskResult[R] | PromptaskError], None, None]:
    """Run ``task`` on each ``(key, inputs)``; yield ``(key, result or error)`` as each finishes.

    Input errors and failed runs are yielded, not raised, so one bad row never
    stops the others.  At most ``concurrency`` calls run at once and at most
    twice that many are queued, so an endless iterable is fine.  Closing the
    iterator early cancels what has not started.  With ``batch_size`` > 1 (for
    a backend with ``generate_batch``), rows go to the backend in windows of
    ``WINDOW * batch_size``, decoded ``batch_size`` at a time.
    """
    if batch_size > 1:
        yield from _batches(task, items, backend, batch_size, cache)
        return

    def one(key: K, row: Mapping[str, Any]) -> tuple[K, TaskResult[R] | PromptaskError]:
        try:
            inputs = task.validate_inputs((), dict(row), row_label=f"row {key}")
            return key, run_sync(task, inputs, backend, cache)
        except PromptaskError as exc:
            return key, exc

    if concurrency <= 1:
        for key, row in items:
            yield one(key, row)
        return
    if callable(getattr(backend, "agenerate", None)):
        yield from _on_event_loop(task, items, backend, concurrency, cache)
        return

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="promptask") as pool:
        pending: set[Future[tuple[K, TaskResult[R] | PromptaskError]]] = set()
        try:
            for key, row in items:
                pending.add(pool.submit(one, key, row))
                if len(pending) >= 2 * concurrency:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    yield from (future.result() for future in done)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in done)
        finally:
            for future in pending:
                future.cancel()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


def _on_event_loop(
    task: Task[Any, R],
    items: Iterable[tuple[K, Mapping[str, Any]]],
    backend: Backend,
    concurrency: int,
    cache: CacheSetting | None,
) -> Generator[tuple[K, TaskResult[R] | PromptaskError], None, None]:
    """Rows as asyncio tasks (``backend.agenerate``) on a private event loop, ``concurrency`` in flight.

    The loop runs on its own thread, so this works from plain code and from
    code already inside an event loop; a row is read only when a slot is free.
    """
    outcomes: queue.SimpleQueue[Any] = queue.SimpleQueue()
    running: set[asyncio.Task[None]] = set()
    loop = asyncio.new_event_loop()

    async def one(key: K, row: Mapping[str, Any], slots: asyncio.Semaphore) -> None:
        try:
            inputs = task.validate_inputs((), dict(row), row_label=f"row {key}")
            outcomes.put((key, await run_async(task, inputs, backend, cache)))
        except PromptaskError as exc:
            outcomes.put((key, exc))
        finally:
            slots.release()

    async def drive() -> None:
        slots = asyncio.Semaphore(concurrency)
        try:
            for key, row in items:
                await slots.acquire()
                job = asyncio.create_task(one(key, row, slots))
                running.add(job)
                job.add_done_callback(running.discard)
            while running:
                await asyncio.gather(*running)
        except BaseException as exc:  # reading the rows failed, a row hit a bug, or the caller stopped
            for job in running:
                job.cancel()
            outcomes.put(_Failed(exc))
        finally:
            outcomes.put(_DONE)

    def cancel() -> None:
        for job in asyncio.all_tasks():
            job.cancel()

    def run() -> None:
        try:
            loop.run_until_complete(drive())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="promptask-map", daemon=True)
    thread.start()
    try:
        while (outcome := outcomes.get()) is not _DONE:
            if isinstance(outcome, _Failed):
                raise outcome.error
            yield outcome
    finally:
        if thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(cancel)
        thread.join()


def _batches(
    task: Task[Any, R],
    items: Iterable[tuple[K, Mapping[str, Any]]],
    backend: Backend,
    batch_size: int,
    cache: CacheSetting | None,
) -> Generator[tuple[K, TaskResult[R] | PromptaskError], None, None]:
    chunk: list[tuple[K, BaseModel]] = []
    for key, row in items:
        try:
            chunk.append((key, task.validate_inputs((), dict(row), row_label=f"row {key}")))
        except PromptaskError as exc:
            yield key, exc
        if len(chunk) == WINDOW * batch_size:
            yield from run_lockstep(task, chunk, backend, cache, batch_size)
            chunk = []
    if chunk:
        yield from run_lockstep(task, chunk, backend, cache, batch_size)
