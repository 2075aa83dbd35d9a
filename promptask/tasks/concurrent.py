"""Running one task over many inputs, with a bound on the work in flight.

:func:`run_many` is the one implementation behind ``Task.map``, ``Task.stream``
and batch runs over files.  Results come back as they finish, so callers can
write them out at once and lose nothing if the run is interrupted.
"""

from __future__ import annotations

from collections.abc import Generator, Hashable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from promptask.backends.base import Backend
from promptask.config import CacheSetting
from promptask.errors import PromptaskError
from promptask.tasks.loop import run_lockstep, run_sync
from promptask.tasks.result import TaskResult

if TYPE_CHECKING:
    from promptask.tasks.task import Task

__all__ = ["run_many"]

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
    a backend with ``generate_batch``), rows go to the backend that many at a time.
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
        if len(chunk) == batch_size:
            yield from run_lockstep(task, chunk, backend, cache)
            chunk = []
    if chunk:
        yield from run_lockstep(task, chunk, backend, cache)
