"""Tasks as a typed HTTP API, with OpenAPI, a browser playground and bounded queues.

Install it with ``pip install 'promptask[serve]'``.

``promptask serve [PROJECT_DIR]`` serves a project's tasks and the built-ins;
:func:`create_app` returns the ASGI app, to mount in your own service or to
test without a socket:

>>> import promptask
>>> from promptask.serve import create_app
>>> from starlette.testclient import TestClient
>>> backend = promptask.ScriptedBackend.always({"label": "negative"})
>>> client = TestClient(create_app([promptask.tasks.sentiment], backend=backend, cache=False))
>>> answer = client.post("/tasks/sentiment", json={"text": "Never again."}).json()
>>> answer["output"], answer["cached"], len(answer["attempts"])
({'label': 'negative'}, False, 1)

Endpoints: ``GET /tasks``, ``POST /tasks/{name}``, ``POST /tasks/{name}/batch``,
``GET /healthz``, ``GET /openapi.json``, the playground at ``/`` and the API
docs at ``/docs``.  Errors are JSON: 400 malformed body, 401 missing or wrong
key, 404 unknown task, 413 body too large, 422 invalid inputs or an output
that never validated, 502 backend failure, 503 queue full (with
``Retry-After``), 504 timeout.

:mod:`promptask.serve.app` is the app, :mod:`promptask.serve.gate` the
per-backend worker threads and queue, :mod:`promptask.serve.schemas` the
wire format, and :mod:`promptask.serve.server` the process (uvicorn,
loopback by default, graceful stop on SIGTERM).
"""

from promptask.serve.app import create_app
from promptask.serve.gate import Gate
from promptask.serve.server import check_bind, is_loopback, project_tasks, serve, serve_project

__all__ = ["Gate", "check_bind", "create_app", "is_loopback", "project_tasks", "serve", "serve_project"]
