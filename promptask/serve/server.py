"""The process around the app: which tasks, which address, uvicorn, and a graceful stop.

``promptask serve`` calls :func:`serve_project`; :func:`serve` runs any app
made by :func:`~promptask.serve.create_app`.  Both bind loopback unless told
otherwise, and refuse a non-loopback address without an API key unless
``insecure`` is set.  SIGTERM (or Ctrl-C) stops accepting connections, lets
the requests in flight finish within ``grace`` seconds, and returns 0 (130
after Ctrl-C).

>>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("::1"), is_loopback("0.0.0.0")
(True, True, True, False)
>>> check_bind("0.0.0.0", api_key=None, insecure=False)
Traceback (most recent call last):
  ...
promptask.errors.UserError: refusing to serve on 0.0.0.0 without an API key: anyone who can reach it could \
run tasks. Pass --api-key-env VAR (clients then send Authorization: Bearer KEY), or --insecure if this is intended
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import os
import signal
import socket
import sys
import threading
from collections.abc import Generator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from promptask.config import CacheSetting
from promptask.errors import ConfigurationError, UserError
from promptask.serve.app import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_QUEUE, DEFAULT_TIMEOUT_S, create_app
from promptask.serve.schemas import missing_dependency
from promptask.tasks.catalog import builtin_task, builtin_task_names
from promptask.tasks.loader import load_tasks
from promptask.tasks.task import Task

try:
    import uvicorn
except ImportError as exc:
    raise missing_dependency(exc) from None

__all__ = ["check_bind", "is_loopback", "project_tasks", "serve", "serve_project"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, *, api_key: str | None, insecure: bool) -> None:
    """Refuse to serve a non-loopback address without an API key, unless ``insecure``."""
    if api_key is None and not insecure and not is_loopback(host):
        raise UserError(
            f"refusing to serve on {host} without an API key: anyone who can reach it could run tasks. "
            "Pass --api-key-env VAR (clients then send Authorization: Bearer KEY), or --insecure if this is intended"
        )


def project_tasks(project: str | Path = ".") -> dict[str, Task[..., Any]]:
    """The project's tasks (``PROJECT/tasks/*.yaml``) and the built-ins; a project task overrides a built-in."""
    folder = Path(project)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such project folder")
    tasks = load_tasks(folder / "tasks") if (folder / "tasks").is_dir() else {}
    for name in builtin_task_names():
        tasks.setdefault(name, builtin_task(name))
    return dict(sorted(tasks.items()))


def api_key_from_env(variable: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The key held by ``variable`` (stripped), or ``None`` without a variable; an unset or empty one is an error."""
    if variable is None:
        return None
    key = environ.get(variable, "").strip()
    if not key:
        raise UserError(f"--api-key-env {variable}: that environment variable is not set, or empty")
    return key


class _Server(uvicorn.Server):
    """uvicorn's server, except that a signal that stopped it gracefully is not raised again afterwards.

    uvicorn re-raises SIGTERM once it has shut down, so the process would die
    by the signal; a graceful stop should exit 0.
    """

    signals: list[int]

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        self.signals = []
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.signals.append(sig)
        super().handle_exit(sig, frame)


def _listen(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port}: not a port number (0-65535; 0 picks a free one)")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UserError(f"--host {host}: cannot resolve it ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def serve(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    grace: float = DEFAULT_TIMEOUT_S,
    api_key: str | None = None,
    insecure: bool = False,
    access_log: bool = True,
) -> int:
    """Run ``app`` with uvicorn until SIGTERM or Ctrl-C; returns the exit code (0, or 130 after Ctrl-C).

    ``api_key`` is only checked for presence here (the app enforces it):
    without one, a non-loopback ``host`` is refused unless ``insecure``.
    """
    check_bind(host, api_key=api_key, insecure=insecure)
    sock = _listen(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    print(
        f"promptask: serving on http://{shown}:{bound_port} (playground: /, API docs: /docs); "
        "SIGTERM or Ctrl-C stops it",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(
        app,
        log_level="info",
        access_log=access_log,
        ws="none",
        lifespan="on",
        timeout_graceful_shutdown=max(0, math.ceil(grace)),
        server_header=False,
    )
    server = _Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    code = 130 if signal.SIGINT in getattr(server, "signals", ()) else 0
    orphans = sum(gate.state().running for gate in getattr(getattr(app, "state", None), "gates", ()))
    if orphans:
        # Calls whose clients already got their answer (a 504) or left: a model call cannot be
        # interrupted, and waiting for it would hold the exit past the grace period.
        print(f"promptask: exiting without {orphans} abandoned call(s) still running", file=sys.stderr, flush=True)
        os._exit(code)
    return code


def serve_project(
    project: str | Path = ".",
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    backend: str | None = None,
    api_key_env: str | None = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
    timeout: float = DEFAULT_TIMEOUT_S,
    grace: float | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    cache: CacheSetting | None = None,
    insecure: bool = False,
) -> int:
    """``promptask serve``: the project's tasks and the built-ins, on ``host:port``."""
    if max_queue < 0:
        raise UserError(f"--max-queue {max_queue}: must be 0 or more")
    if timeout <= 0:
        raise UserError(f"--timeout {timeout:g}: must be more than 0 seconds")
    if grace is not None and grace < 0:
        raise UserError(f"--grace {grace:g}: must be 0 or more seconds")
    if max_body_bytes < 1:
        raise UserError(f"--max-body {max_body_bytes}: must be at least 1 byte")
    api_key = api_key_from_env(api_key_env)
    check_bind(host, api_key=api_key, insecure=insecure)
    app = create_app(
        project_tasks(project),
        backend=backend,
        api_key=api_key,
        max_queue=max_queue,
        timeout=timeout,
        max_body_bytes=max_body_bytes,
        cache=cache,
    )
    return serve(
        app,
        host=host,
        port=port,
        grace=timeout if grace is None else grace,
        api_key=api_key,
        insecure=insecure,
    )
