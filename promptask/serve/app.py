"""The ASGI app: tasks as typed HTTP endpoints, a playground page, and JSON errors.

:func:`create_app` is the whole server minus the process around it (see
:mod:`promptask.serve.server` for that), so it can be mounted in another
service or tested without a socket:

>>> import promptask
>>> from starlette.testclient import TestClient
>>> app = create_app([promptask.tasks.sentiment], backend=promptask.ScriptedBackend.always({"label": "positive"}))
>>> client = TestClient(app)
>>> client.post("/tasks/sentiment", json={"text": "I love it"}).json()["output"]
{'label': 'positive'}
>>> client.post("/tasks/sentiment", json={"txt": "I love it"}).status_code
422
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Future
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, TypeVar

from promptask._version import __version__
from promptask.backends.base import Backend, BaseBackend
from promptask.backends.registry import resolve_backend
from promptask.config import CacheSetting
from promptask.errors import ConfigurationError, PromptaskError
from promptask.serve.gate import Gate
from promptask.serve.schemas import (
    ATTEMPT_SCHEMA,
    ERROR_SCHEMA,
    USAGE_SCHEMA,
    ApiError,
    component_names,
    error_body,
    input_schema,
    missing_dependency,
    output_schema,
    relocate,
    result_body,
    result_schema,
    to_api_error,
)
from promptask.tasks import runner
from promptask.tasks.result import TaskResult
from promptask.tasks.task import Task

try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.openapi.utils import get_openapi
    from fastapi.responses import JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError as exc:
    raise missing_dependency(exc) from None

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_QUEUE", "DEFAULT_TIMEOUT_S", "MAX_BATCH_ROWS", "create_app"]

logger = logging.getLogger("promptask.serve")

T = TypeVar("T")

DEFAULT_MAX_QUEUE = 64
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_BODY_BYTES = 1_000_000
MAX_BATCH_ROWS = 256

STATIC = resources.files("promptask.serve") / "static"
# The playground needs nothing but this server: no CDN, no inline script, no outside request.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# Served without the key: the playground's own files hold no data (they ask for the key), and health checks.
OPEN_PATHS = frozenset({"/", "/docs", "/healthz"})
OPEN_PREFIXES = ("/static/",)


def create_app(
    tasks: Iterable[Task[..., Any]] | Mapping[str, Task[..., Any]],
    *,
    backend: Backend | str | None = None,
    api_key: str | None = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
    timeout: float = DEFAULT_TIMEOUT_S,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_batch_rows: int = MAX_BATCH_ROWS,
    cache: CacheSetting | None = None,
) -> FastAPI:
    """The ASGI app serving ``tasks`` over HTTP.

    Args:
        tasks: the tasks to serve (a mapping is keyed by task name).
        backend: the backend every task runs on (object or URI); by default
            each task's own backend, else the process default.
        api_key: when given, every route but ``/healthz`` and the
            playground's static files needs ``Authorization: Bearer KEY``.
        max_queue: requests that may wait for each backend beyond those it is
            running; more get 503 with ``Retry-After``.
        timeout: seconds a request may take, waiting included; then 504.
        max_body_bytes: the largest request body; larger ones get 413.
        max_batch_rows: the most rows in one batch request.
        cache: the cache setting for every call (default: the process default).

    Routes: ``GET /tasks``, ``POST /tasks/{name}``, ``POST /tasks/{name}/batch``,
    ``GET /healthz``, ``GET /openapi.json``, and the playground (``GET /``)
    and API docs (``GET /docs``) pages.

    >>> import promptask
    >>> app = create_app([promptask.tasks.sentiment], backend=promptask.ScriptedBackend.always({"label": "neutral"}))
    >>> sorted(path for path in app.openapi()["paths"])
    ['/healthz', '/tasks', '/tasks/sentiment', '/tasks/sentiment/batch']
    """
    if max_queue < 0 or timeout <= 0 or max_body_bytes < 1 or max_batch_rows < 1:
        raise ConfigurationError("max_queue must be >= 0, and timeout, max_body_bytes and max_batch_rows > 0")
    by_name = _by_name(tasks)
    gates: dict[int, Gate] = {}
    routes: dict[str, _TaskRoute] = {}
    shared = resolve_backend(backend) if backend is not None else None  # once: one gate for every task on it
    for name, task in by_name.items():
        chosen = shared or task.resolve_backend(None)
        if id(chosen) not in gates:
            info = chosen.info()
            gates[id(chosen)] = Gate(info.name, concurrency=info.concurrency, max_queue=max_queue)
        routes[name] = _TaskRoute(task, chosen, gates[id(chosen)], cache, timeout)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            for gate in gates.values():
                gate.close()

    app = FastAPI(
        title="promptask",
        version=__version__,
        description="Declarative NLP tasks as typed endpoints: each task's inputs in, its validated output back.",
        docs_url=None,  # FastAPI's docs pages load their scripts from a CDN; /docs is served from the package
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.gates = list(gates.values())
    _add_error_handlers(app)
    if api_key is not None:
        if not api_key:
            raise ConfigurationError("the API key is empty")
        app.add_middleware(_BearerAuth, key=api_key)

    @app.get("/healthz", summary="Health", tags=["server"])
    async def healthz() -> dict[str, Any]:
        """Whether the server is up, and each backend's queue."""
        return {"status": "ok", "tasks": len(routes), "backends": [g.state().to_dict() for g in gates.values()]}

    @app.get("/tasks", summary="List the tasks", tags=["tasks"])
    async def list_tasks() -> dict[str, Any]:
        """Every task: its name, description, endpoint, and input and output JSON Schemas."""
        return {"tasks": [route.describe() for route in routes.values()]}

    for name, route in routes.items():
        names = component_names(route.task)
        app.add_api_route(
            f"/tasks/{name}",
            _single_endpoint(route, max_body_bytes),
            methods=["POST"],
            name=f"run_{name}",
            summary=f"Run {name}",
            description=route.task.description or None,
            tags=["tasks"],
            openapi_extra=_operation(names["Input"], names["Result"], api_key is not None),
        )
        app.add_api_route(
            f"/tasks/{name}/batch",
            _batch_endpoint(route, max_body_bytes, max_batch_rows),
            methods=["POST"],
            name=f"batch_{name}",
            summary=f"Run {name} on many inputs",
            description=f"Up to {max_batch_rows} inputs in one request; answers in input order, with per-row errors.",
            tags=["tasks"],
            openapi_extra=_operation(names["Input"], names["BatchResult"], api_key is not None, batch=max_batch_rows),
        )

    async def unknown_task(name: str) -> Response:
        raise ApiError(404, "unknown_task", f"unknown task {name!r}; tasks: {', '.join(routes) or 'none'}")

    app.add_api_route("/tasks/{name}", unknown_task, methods=["POST"], include_in_schema=False)
    app.add_api_route("/tasks/{name}/batch", unknown_task, methods=["POST"], include_in_schema=False)
    _add_pages(app)
    app.openapi = _openapi_builder(app, by_name, api_key is not None)  # type: ignore[method-assign]
    return app


def _by_name(tasks: Iterable[Task[..., Any]] | Mapping[str, Task[..., Any]]) -> dict[str, Task[..., Any]]:
    listed = list(tasks.values()) if isinstance(tasks, Mapping) else list(tasks)
    by_name: dict[str, Task[..., Any]] = {}
    for task in listed:
        if not isinstance(task, Task):
            raise ConfigurationError(f"create_app takes tasks, got {type(task).__name__}")
        if task.name in by_name:
            raise ConfigurationError(f"two tasks are named {task.name!r}")
        by_name[task.name] = task
    return by_name


class _TaskRoute:
    """One served task: its backend, that backend's gate, and how a call runs."""

    def __init__(
        self, task: Task[..., Any], backend: BaseBackend, gate: Gate, cache: CacheSetting | None, timeout: float
    ) -> None:
        self.task = task
        self.backend = backend
        self.gate = gate
        self.cache = cache
        self.timeout = timeout

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.task.name,
            "description": self.task.description,
            "endpoint": f"/tasks/{self.task.name}",
            "input_schema": input_schema(self.task),
            "output_schema": output_schema(self.task),
        }

    def run_one(self, inputs: Any) -> TaskResult[Any]:
        """One call, in a worker thread."""
        return runner.run(self.task.prepare(inputs, self.backend.info()), self.backend, self.cache)

    def run_many(self, rows: list[dict[str, Any]]) -> dict[int, TaskResult[Any] | PromptaskError]:
        """A batch, in a worker thread: the backend's batching where it has it, else its concurrency."""
        return dict(self.task.stream(rows, backend=self.backend, cache=self.cache))

    async def call(self, fn: Callable[[], T], request: Request) -> T:
        """Run ``fn`` through the gate: 503 if the queue is full, 504 past the timeout; cancelled if the client goes."""
        future = self.gate.submit(fn)
        if future is None:
            retry = self.gate.retry_after()
            raise ApiError(
                503,
                "overloaded",
                f"backend {self.gate.name} is busy ({self.gate.concurrency} running, {self.gate.max_queue} waiting); "
                f"retry after {retry} s",
                headers={"Retry-After": str(retry)},
            )
        return await _settle(future, request, self.timeout, self.task.name)


async def _settle(future: Future[T], request: Request, timeout: float, task: str) -> T:
    result: asyncio.Future[T] = asyncio.wrap_future(future)
    gone: asyncio.Future[None] = asyncio.ensure_future(_disconnected(request.receive))
    try:
        either: list[asyncio.Future[Any]] = [result, gone]
        await asyncio.wait(either, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if result.done():
        return result.result()
    result.cancel()  # off the queue if it has not started; a running model call finishes in its thread
    if gone.done() and not gone.cancelled():
        raise _ClientGoneError
    raise ApiError(504, "timeout", f"task {task!r} did not finish within {timeout:g} s")


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class _ClientGoneError(Exception):
    """The client closed the connection before its answer was ready."""


async def _read_json(request: Request, limit: int) -> Any:
    """The request body as JSON: 413 past ``limit`` bytes (read no further), 400 if not UTF-8 JSON."""
    declared = request.headers.get("content-length")
    too_large = ApiError(413, "body_too_large", f"the request body is larger than {limit} bytes")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "malformed_body", f"the request body is not UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise ApiError(400, "malformed_body", "the request body is empty; send the task's inputs as a JSON object")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, "malformed_body", f"the request body is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise ApiError(400, "malformed_body", "the request body is nested too deeply") from None


def _single_endpoint(route: _TaskRoute, max_body_bytes: int) -> Callable[[Request], Awaitable[Response]]:
    task = route.task

    async def run_task(request: Request) -> Response:
        body = await _read_json(request, max_body_bytes)
        if not isinstance(body, dict):
            raise ApiError(
                422,
                "invalid_input",
                f"task {task.name!r} takes a JSON object of its inputs, not {_json_type(body)}",
                fields=[{"field": "body", "message": f"expected an object, got {_json_type(body)}"}],
            )
        inputs = task.validate_inputs((), body)  # 422 naming each field, before any queueing
        result = await route.call(lambda: route.run_one(inputs), request)
        return JSONResponse(result_body(result))

    return run_task


def _batch_endpoint(route: _TaskRoute, max_body_bytes: int, max_rows: int) -> Callable[[Request], Awaitable[Response]]:
    task = route.task

    async def run_batch(request: Request) -> Response:
        body = await _read_json(request, max_body_bytes)
        if not isinstance(body, list):
            raise ApiError(
                422,
                "invalid_input",
                f"a batch for task {task.name!r} is a JSON array of input objects, not {_json_type(body)}",
                fields=[{"field": "body", "message": f"expected an array, got {_json_type(body)}"}],
            )
        if len(body) > max_rows:
            raise ApiError(413, "batch_too_large", f"a batch has at most {max_rows} rows; this one has {len(body)}")
        results: list[dict[str, Any] | None] = [None] * len(body)
        valid: list[tuple[int, dict[str, Any]]] = []
        for i, row in enumerate(body):  # every row's input errors at once, before any queueing
            if not isinstance(row, dict):
                got = _json_type(row)
                problem = ApiError(422, "invalid_input", f"row {i}: expected an object of inputs, got {got}",
                                   fields=[{"field": "row", "message": f"expected an object, got {got}"}])  # fmt: skip
                results[i] = _row_error(problem.body(), i)
                continue
            try:
                task.validate_inputs((), row)
            except PromptaskError as exc:
                results[i] = _row_error(error_body(exc), i)
                continue
            valid.append((i, row))
        if valid:
            outcomes = await route.call(lambda: route.run_many([row for _, row in valid]), request)
            for position, outcome in outcomes.items():
                i = valid[position][0]
                results[i] = (
                    result_body(outcome) if isinstance(outcome, TaskResult) else _row_error(error_body(outcome), i)
                )
        rows = [r for r in results if r is not None]
        return JSONResponse({"results": rows, "failed": sum(1 for r in rows if "error" in r)})

    return run_batch


def _row_error(body: dict[str, Any], row: int) -> dict[str, Any]:
    body["error"]["row"] = row
    return body


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _operation(input_name: str, result_name: str, secured: bool, *, batch: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"$ref": f"#/components/schemas/{input_name}"}
    if batch is not None:
        body = {"type": "array", "items": body, "maxItems": batch}
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    responses: dict[str, Any] = {
        "200": {
            "description": "Every row's answer or error, in input order" if batch else "The validated output",
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{result_name}"}}},
        },
        "400": {"description": "The body is not UTF-8 JSON", **error},
        "413": {"description": "The body is too large", **error},
        "422": {"description": "Invalid inputs, or an output that never validated", **error},
        "502": {"description": "The backend failed", **error},
        "503": {"description": "The backend's queue is full: retry after Retry-After seconds", **error},
        "504": {"description": "The task took longer than the server's timeout", **error},
    }
    if secured:
        responses["401"] = {"description": "A missing or wrong API key", **error}
    operation: dict[str, Any] = {
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": responses,
    }
    if secured:
        operation["security"] = [{"bearer": []}]
    return operation


def _openapi_builder(app: FastAPI, tasks: Mapping[str, Task[..., Any]], secured: bool) -> Callable[[], dict[str, Any]]:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = document.setdefault("components", {})
            schemas = components.setdefault("schemas", {})
            schemas.update({"Usage": USAGE_SCHEMA, "Attempt": ATTEMPT_SCHEMA, "Error": ERROR_SCHEMA})
            for task in tasks.values():
                names = component_names(task)
                for kind, schema in (("Input", input_schema(task)), ("Output", output_schema(task))):
                    schemas[names[kind]] = relocate(schema, f"#/components/schemas/{names[kind]}")
                schemas[names["Result"]] = result_schema(f"#/components/schemas/{names['Output']}")
                row = {
                    "oneOf": [
                        {"$ref": f"#/components/schemas/{names['Result']}"},
                        {"$ref": "#/components/schemas/Error"},
                    ]
                }
                schemas[names["BatchResult"]] = {
                    "type": "object",
                    "properties": {"results": {"type": "array", "items": row}, "failed": {"type": "integer"}},
                    "required": ["results", "failed"],
                }
            if secured:
                components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
                document["security"] = [{"bearer": []}]
                document["paths"]["/healthz"]["get"]["security"] = []
            app.openapi_schema = document
        return app.openapi_schema

    return openapi


def _add_pages(app: FastAPI) -> None:
    pages = {"/": "index.html", "/docs": "docs.html"}

    def page(file: str) -> Callable[[], Awaitable[Response]]:
        content = (STATIC / file).read_bytes()

        async def serve_page() -> Response:
            return Response(content, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

        return serve_page

    for path, file in pages.items():
        app.add_api_route(path, page(file), methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")


def _add_error_handlers(app: FastAPI) -> None:
    async def api_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    async def promptask_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PromptaskError)
        error = to_api_error(exc)
        if error.status >= 500:
            logger.warning("%s", exc)
        return JSONResponse(error.body(), status_code=error.status)

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        kinds = {404: "not_found", 405: "method_not_allowed"}
        kind = kinds.get(exc.status_code, "http_error")
        message = {404: "no such route", 405: "method not allowed"}.get(exc.status_code, str(exc.detail))
        body = ApiError(exc.status_code, kind, message).body()
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    async def validation_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        fields = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "message": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        return JSONResponse(ApiError(422, "invalid_input", "invalid request", fields=fields).body(), status_code=422)

    async def gone(_request: Request, _exc: Exception) -> Response:
        return Response(status_code=499)  # nobody is listening

    async def internal(_request: Request, exc: Exception) -> Response:
        logger.error("internal error: %s: %s", type(exc).__name__, exc, exc_info=exc)
        body = ApiError(500, "internal_error", "internal server error; the server's log has the details").body()
        return JSONResponse(body, status_code=500)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(PromptaskError, promptask_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(_ClientGoneError, gone)
    app.add_exception_handler(Exception, internal)


def _route_path(scope: Scope) -> str:
    """The path below where the app is mounted (Starlette keeps the mount prefix in ``path`` and ``root_path``)."""
    path, root = str(scope.get("path", "")), str(scope.get("root_path", ""))
    return path[len(root) :] or "/" if root and path.startswith(root) else path


class _BearerAuth:
    """Every route but the open ones needs ``Authorization: Bearer KEY``, compared in constant time."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        # Digests of equal length: the comparison takes the same time whatever the key's length and content.
        self._digest = hashlib.sha256(key.encode()).digest()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._open(_route_path(scope)) or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            ApiError(401, "unauthorized", "a missing or wrong API key: send Authorization: Bearer KEY").body()
        ).encode()
        start: Message = {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="promptask"'),
            ],
        }
        await send(start)
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _open(path: str) -> bool:
        return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)

    def _authorized(self, scope: Scope) -> bool:
        header = next((value for name, value in scope.get("headers", ()) if name == b"authorization"), b"")
        scheme, _, token = bytes(header).partition(b" ")
        given = hashlib.sha256(token.strip()).digest()
        return hmac.compare_digest(given, self._digest) and scheme.lower() == b"bearer"
