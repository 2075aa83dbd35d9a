"""Backpressure: each backend runs a bounded number of calls in worker threads and queues a bounded number more.

A :class:`Gate` owns the worker threads of one backend: ``concurrency`` of
them (what the backend can do at once: 1 for a local model, the server's
request limit for an HTTP backend), so a blocking model call never runs on
the event loop.  Up to ``max_queue`` more calls wait their turn; beyond that
:meth:`Gate.submit` refuses at once, and the server answers 503 with a
``Retry-After`` estimated from how long calls have been taking.

>>> gate = Gate("demo", concurrency=1, max_queue=0)
>>> first = gate.submit(lambda: 42)
>>> first.result(timeout=5)
42
>>> gate.close()
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["Gate", "GateState"]

T = TypeVar("T")

_SMOOTHING = 0.2  # weight of the newest call in the moving average of call time


@dataclass(frozen=True)
class GateState:
    """A snapshot of a gate: calls running, calls waiting, and the limits."""

    backend: str
    running: int
    queued: int
    concurrency: int
    max_queue: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "running": self.running,
            "queued": self.queued,
            "concurrency": self.concurrency,
            "max_queue": self.max_queue,
        }


class Gate:
    """Admission control and worker threads for one backend.

    Args:
        name: the backend's name (shown in ``/healthz``).
        concurrency: calls run at once, each in its own worker thread.
        max_queue: calls that may wait for a worker; more are refused.
    """

    def __init__(self, name: str, *, concurrency: int, max_queue: int) -> None:
        if concurrency < 1 or max_queue < 0:
            raise ValueError("concurrency must be >= 1 and max_queue >= 0")
        self.name = name
        self.concurrency = concurrency
        self.max_queue = max_queue
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"promptask-serve-{name}")
        self._lock = threading.Lock()
        self._admitted = 0  # running + waiting
        self._running = 0
        self._mean_s: float | None = None

    def submit(self, fn: Callable[[], T]) -> Future[T] | None:
        """Queue ``fn`` for a worker thread; ``None`` when the queue is full (or the gate is closed).

        Cancelling the returned future before it starts takes it off the queue.
        """
        with self._lock:
            if self._admitted >= self.concurrency + self.max_queue:
                return None
            self._admitted += 1
        try:
            future = self._pool.submit(self._timed, fn)
        except RuntimeError:  # closed: shutting down
            self._release(None)
            return None
        future.add_done_callback(self._release)
        return future

    def _timed(self, fn: Callable[[], T]) -> T:
        with self._lock:
            self._running += 1
        start = time.perf_counter()
        try:
            return fn()
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                self._running -= 1
                mean = self._mean_s
                self._mean_s = elapsed if mean is None else (1 - _SMOOTHING) * mean + _SMOOTHING * elapsed

    def _release(self, _future: Future[Any] | None) -> None:
        with self._lock:
            self._admitted -= 1

    def retry_after(self) -> int:
        """Whole seconds after which a refused call has a fair chance: the queue's expected drain time, at least 1."""
        with self._lock:
            mean, waiting = self._mean_s or 0.0, self._admitted
        return max(1, min(3600, math.ceil(mean * (waiting + 1) / self.concurrency)))

    def state(self) -> GateState:
        with self._lock:
            running, admitted = self._running, self._admitted
        return GateState(self.name, running, max(0, admitted - running), self.concurrency, self.max_queue)

    def close(self) -> None:
        """Refuse new calls and drop the waiting ones; calls already running finish in their threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)
