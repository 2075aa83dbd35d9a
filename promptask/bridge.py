"""One event loop for the whole process, on a background thread, reached through anyio's blocking portal.

Asynchronous work (HTTP requests, ``map`` over a backend with real async I/O)
runs on this loop, whether the caller is plain synchronous code or code that
is itself inside another event loop (a notebook).  There is exactly one such
thread, started on first use, stopped at interpreter exit, and started again
in a child process that inherited a stopped one.

>>> import asyncio
>>> async def double(x: int) -> int:
...     await asyncio.sleep(0)
...     return 2 * x
>>> portal().call(double, 21)
42
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
from contextlib import AbstractContextManager

from anyio.from_thread import BlockingPortal, start_blocking_portal

__all__ = ["on_bridge", "portal"]

_lock = threading.Lock()
_state: tuple[int, AbstractContextManager[BlockingPortal], BlockingPortal, asyncio.AbstractEventLoop] | None = None


def portal() -> BlockingPortal:
    """The process-wide portal (started on first use)."""
    global _state
    with _lock:
        if _state is None or _state[0] != os.getpid():
            manager = start_blocking_portal()
            started = manager.__enter__()
            loop = started.call(asyncio.get_running_loop)
            _state = (os.getpid(), manager, started, loop)
        return _state[2]


def on_bridge() -> bool:
    """Whether the caller runs on the bridge's own event loop."""
    state = _state
    if state is None:
        return False
    try:
        return asyncio.get_running_loop() is state[3]
    except RuntimeError:
        return False


@atexit.register
def _stop() -> None:
    global _state
    with _lock:
        state, _state = _state, None
    if state is not None and state[0] == os.getpid():
        state[1].__exit__(None, None, None)
