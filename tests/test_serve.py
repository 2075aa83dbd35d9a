"""``promptask serve`` in this process, without a socket: endpoints, OpenAPI, errors, auth, backpressure.

The app is driven through httpx's ASGI transport (and Starlette's TestClient),
so nothing listens here; tests/test_serve_server.py runs the real server.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from starlette.testclient import TestClient

import promptask
from promptask import BackendError, Generation, GenerationRequest, ScriptedBackend, Usage
from promptask.backends import BaseBackend, ExampleBackend
from promptask.serve import Gate, check_bind, create_app, is_loopback, project_tasks
from promptask.serve.schemas import input_schema, output_schema, result_body, wraps_output
from promptask.tasks.result import TaskResult

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "promptask" / "serve" / "static"
KEY = "pt-serve-test-K3y-never-shown"


def write_project(root: Path) -> Path:
    """A project folder with tasks that cover the shapes a server must describe."""
    (root / "tasks").mkdir(parents=True)
    (root / "tasks" / "echo.yaml").write_text(
        "name: echo\ndescription: Repeat the text.\ninputs:\n  text: str\noutput: str\ntemplate: 'Echo: {{ text }}'\n"
    )
    (root / "tasks" / "profile.yaml").write_text(
        """name: profile
description: Describe a person.
inputs:
  name: {type: string, maxLength: 100}
  tags: {type: "list[str]", default: []}
  age: {type: integer, minimum: 0, maximum: 150}
  height: {type: "float | None", default: null}
  verified: {type: boolean, default: false}
  tone: {type: string, enum: [formal, casual], default: formal}
output:
  type: object
  properties:
    people:
      type: array
      items: {$ref: "#/$defs/Person"}
      maxItems: 3
  required: [people]
  $defs:
    Person:
      type: object
      properties:
        name: {type: string, maxLength: 50}
        role: {type: string, enum: [author, reader]}
      required: [name, role]
template: "Describe {{ name }} ({{ age }}), tags {{ tags | text }}, tone {{ tone }}."
"""
    )
    (root / "tasks" / "picky.yaml").write_text(
        "name: picky\ninputs:\n  text: str\noutput: bool\nretries: 1\ntemplate: '{{ text }}'\n"
        "checks: 'never good enough'\n"
    )
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "project")


def echo_reply(request: GenerationRequest) -> dict[str, Any]:
    """The echo task's answer: its text back; other tasks get an example of their schema."""
    content = request.messages[-1].content
    if content.startswith("Echo: "):
        return {"answer": content.removeprefix("Echo: ")}
    assert request.schema is not None
    example: dict[str, Any] = json.loads(str(ExampleBackend._example(request)))
    return example


def client_for(app: Any) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def served(project: Path) -> Iterator[tuple[TestClient, ScriptedBackend]]:
    backend = ScriptedBackend(echo_reply)
    with client_for(create_app(project_tasks(project), backend=backend, cache=False)) as client:
        yield client, backend


# ---------------------------------------------------------------------- endpoints


def test_tasks_lists_every_task_with_its_schemas(served: tuple[TestClient, ScriptedBackend], project: Path) -> None:
    client, _ = served
    answer = client.get("/tasks")
    assert answer.status_code == 200
    listed = {t["name"]: t for t in answer.json()["tasks"]}
    tasks = project_tasks(project)
    assert set(listed) == set(tasks) == {"echo", "profile", "picky", *promptask.builtin_task_names()}
    for name, task in tasks.items():
        assert listed[name]["description"] == task.description
        assert listed[name]["endpoint"] == f"/tasks/{name}"
        assert listed[name]["input_schema"] == task.input_model.model_json_schema()
        assert listed[name]["output_schema"] == output_schema(task)


def test_a_task_answers_with_output_cached_attempts_latency_usage_confidence(
    served: tuple[TestClient, ScriptedBackend], project: Path
) -> None:
    client, backend = served
    answer = client.post("/tasks/echo", json={"text": "hello there"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"output", "cached", "attempts", "latency_s", "usage", "confidence"}
    assert body["output"] == "hello there"  # a plain output type comes back as the plain value
    assert body["cached"] is False and body["confidence"] is None
    assert len(body["attempts"]) == 1 and body["attempts"][0]["error"] is None
    assert body["usage"]["completion_tokens"] > 0 and body["latency_s"] >= 0
    assert backend.requests[-1].messages[-1].content == "Echo: hello there"

    profile = client.post("/tasks/profile", json={"name": "Ada", "age": 36, "tags": ["maths"]})
    assert profile.status_code == 200, profile.text
    jsonschema.validate(profile.json()["output"], output_schema(project_tasks(project)["profile"]))


def test_confidence_is_passed_through_when_the_backend_scores() -> None:
    result = TaskResult(task="t", output={"label": "positive"}, raw="", attempts=(), usage=Usage(), latency_s=0.1,
                        cached=False, backend="b", confidence=0.93)  # fmt: skip
    assert result_body(result)["confidence"] == 0.93


def test_batch_answers_in_input_order_with_per_row_errors(served: tuple[TestClient, ScriptedBackend]) -> None:
    client, _ = served
    rows: list[Any] = [{"text": f"row {i}"} for i in range(5)]
    rows[1] = {"txt": "typo"}
    rows[3] = "not an object"
    answer = client.post("/tasks/echo/batch", json=rows)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    results = body["results"]
    assert len(results) == 5 and body["failed"] == 2
    assert [r["output"] for i, r in enumerate(results) if i not in (1, 3)] == ["row 0", "row 2", "row 4"]
    assert results[1]["error"]["status"] == 422 and results[1]["error"]["row"] == 1
    assert {f["field"] for f in results[1]["error"]["fields"]} == {"text", "txt"}
    assert results[3]["error"]["type"] == "invalid_input" and results[3]["error"]["row"] == 3
    assert client.post("/tasks/echo/batch", json=[]).json() == {"results": [], "failed": 0}


class BatchingBackend(BaseBackend):
    """Decodes rows together: records each batch it is handed."""

    name = "batching"
    batch_size = 4

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.singles = 0

    def generate(self, request: GenerationRequest) -> Generation:
        self.singles += 1
        return self.generate_batch([request])[0]

    def generate_batch(self, requests: Sequence[GenerationRequest], batch_size: int | None = None) -> list[Generation]:
        self.batches.append(len(requests))
        return [Generation(text=json.dumps(echo_reply(r)), usage=Usage(1, 1)) for r in requests]


def test_a_batch_request_uses_the_backends_batching(project: Path) -> None:
    backend = BatchingBackend()
    client = client_for(create_app(project_tasks(project), backend=backend, cache=False))
    answer = client.post("/tasks/echo/batch", json=[{"text": f"t{i}"} for i in range(10)])
    assert [r["output"] for r in answer.json()["results"]] == [f"t{i}" for i in range(10)]
    assert backend.singles == 0 and sum(backend.batches) == 10 and max(backend.batches) == 10  # one window of rows


def test_healthz_and_openapi_and_pages(served: tuple[TestClient, ScriptedBackend]) -> None:
    client, _ = served
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["backends"][0]["running"] == 0
    assert client.get("/openapi.json").status_code == 200
    for path in ("/", "/docs"):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("common.js", "playground.js", "docs.js", "playground.css"):
        assert client.get(f"/static/{name}").status_code == 200


def test_local_backends_run_in_worker_threads_not_on_the_event_loop(project: Path) -> None:
    threads: list[str] = []

    def reply(request: GenerationRequest) -> dict[str, Any]:
        threads.append(threading.current_thread().name)
        try:
            asyncio.get_running_loop()
            threads.append("on an event loop!")
        except RuntimeError:
            pass
        return echo_reply(request)

    client = client_for(create_app(project_tasks(project), backend=ScriptedBackend(reply), cache=False))
    assert client.post("/tasks/echo", json={"text": "x"}).status_code == 200
    assert client.post("/tasks/echo/batch", json=[{"text": "y"}]).status_code == 200
    assert len(threads) == 2 and all(name.startswith("promptask-serve-scripted") for name in threads), threads


# ---------------------------------------------------------------------- OpenAPI


def deref(node: Any, document: dict[str, Any], depth: int = 0) -> Any:
    """``node`` with every local ``$ref`` inlined (resolved against ``document``) and ``$defs`` dropped."""
    assert depth < 50, "a recursive schema"
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            target: Any = document
            for part in ref.removeprefix("#/").split("/"):
                target = target[part]
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return deref({**target, **rest}, document, depth + 1)
        return {k: deref(v, document, depth + 1) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [deref(item, document, depth + 1) for item in node]
    return node


def test_openapi_request_and_response_schemas_equal_each_tasks_schemas(
    served: tuple[TestClient, ScriptedBackend], project: Path
) -> None:
    client, _ = served
    document = client.get("/openapi.json").json()
    tasks = project_tasks(project)
    assert any(wraps_output(t) for t in tasks.values()) and any("$defs" in output_schema(t) for t in tasks.values())
    for name, task in tasks.items():
        operation = document["paths"][f"/tasks/{name}"]["post"]
        request = operation["requestBody"]["content"]["application/json"]["schema"]
        assert deref(request, document) == deref(
            task.input_model.model_json_schema(), task.input_model.model_json_schema()
        )
        response = deref(operation["responses"]["200"]["content"]["application/json"]["schema"], document)
        own_output = task.json_schema()
        if wraps_output(task):
            own_output = {**own_output["properties"]["answer"], "$defs": own_output.get("$defs", {})}
        assert response["properties"]["output"] == deref(own_output, own_output), name
        assert set(response["required"]) == {"output", "cached", "attempts", "latency_s", "usage", "confidence"}
        batch = document["paths"][f"/tasks/{name}/batch"]["post"]
        rows = deref(batch["requestBody"]["content"]["application/json"]["schema"], document)
        assert rows["type"] == "array" and rows["items"] == deref(input_schema(task), input_schema(task))
        for status in ("400", "413", "422", "502", "503", "504"):
            assert status in operation["responses"] and status in batch["responses"]
    # The components hold each schema exactly, $defs and all, with references moved into the document.
    profile = json.dumps(document["components"]["schemas"]["ProfileOutput"])
    assert json.loads(profile.replace("#/components/schemas/ProfileOutput/$defs/", "#/$defs/")) == output_schema(
        tasks["profile"]
    )


def test_answers_validate_against_the_openapi_document(served: tuple[TestClient, ScriptedBackend]) -> None:
    client, _ = served
    document = client.get("/openapi.json").json()
    for path, inputs in (("/tasks/echo", {"text": "a"}), ("/tasks/sentiment", {"text": "b"})):
        body = client.post(path, json=inputs).json()
        schema = document["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
        jsonschema.validate(body, deref(schema, document))
    error = client.post("/tasks/echo", json={}).json()
    jsonschema.validate(error, deref({"$ref": "#/components/schemas/Error"}, document))


# ---------------------------------------------------------------------- errors


def error_of(answer: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    error: dict[str, Any] = answer.json()["error"]
    assert error["status"] == status and error["type"] == kind and error["message"]
    assert "Traceback" not in answer.text
    return error


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"text": "missing required input"}),
        ({"text": 3}, {"text": "Input should be a valid string"}),
        ({"text": "x", "colour": "red"}, {"colour": "unknown input (this task takes: text)"}),
        (["text"], {"body": "expected an object, got an array"}),
    ],
)
def test_invalid_inputs_are_422_naming_each_field(
    served: tuple[TestClient, ScriptedBackend], body: Any, fields: dict[str, str]
) -> None:
    client, backend = served
    before = len(backend.requests)
    error = error_of(client.post("/tasks/echo", json=body), 422, "invalid_input")
    assert {f["field"]: f["message"] for f in error["fields"]} == fields
    assert len(backend.requests) == before  # rejected before any backend call


def test_wrong_types_in_several_fields_are_all_named(served: tuple[TestClient, ScriptedBackend]) -> None:
    client, _ = served
    answer = client.post("/tasks/profile", json={"name": 5, "age": "old", "verified": "perhaps", "tone": "rude"})
    fields = {f["field"] for f in error_of(answer, 422, "invalid_input")["fields"]}
    assert fields == {"name", "age", "verified", "tone"}


def test_unknown_task_is_404(served: tuple[TestClient, ScriptedBackend]) -> None:
    client, _ = served
    error = error_of(client.post("/tasks/nosuch", json={"text": "x"}), 404, "unknown_task")
    assert "nosuch" in error["message"] and "echo" in error["message"]
    error_of(client.post("/tasks/nosuch/batch", json=[]), 404, "unknown_task")
    error_of(client.get("/nowhere"), 404, "not_found")
    error_of(client.get("/tasks/echo"), 405, "method_not_allowed")


def test_output_that_never_validates_is_422_with_the_attempts(served: tuple[TestClient, ScriptedBackend]) -> None:
    client, _ = served
    error = error_of(client.post("/tasks/picky", json={"text": "x"}), 422, "output_validation")
    assert len(error["attempts"]) == 2 and all("never good enough" in a["error"] for a in error["attempts"])
    assert error["usage"]["completion_tokens"] > 0


def test_a_backend_failure_is_502(project: Path) -> None:
    def broken(request: GenerationRequest) -> str:
        raise BackendError("the model file is corrupt")

    client = client_for(create_app(project_tasks(project), backend=ScriptedBackend(broken), cache=False))
    error = error_of(client.post("/tasks/echo", json={"text": "x"}), 502, "backend_error")
    assert "corrupt" in error["message"]
    rows = client.post("/tasks/echo/batch", json=[{"text": "x"}, {"text": "y"}]).json()["results"]
    assert [r["error"]["status"] for r in rows] == [502, 502]


def test_a_bug_in_a_backend_is_a_502_too_and_never_a_traceback(project: Path) -> None:
    def buggy(request: GenerationRequest) -> str:
        raise ZeroDivisionError("division by zero")

    client = client_for(create_app(project_tasks(project), backend=ScriptedBackend(buggy), cache=False))
    error = error_of(client.post("/tasks/echo", json={"text": "x"}), 502, "backend_error")
    assert "ZeroDivisionError" in error["message"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"text": "x"', "not JSON"),
        (b"", "empty"),
        (b'{"text": "caf\xe9"}', "not UTF-8"),
        (b"[" * 200_000, "nested too deeply"),
    ],
)
def test_malformed_bodies_are_400(served: tuple[TestClient, ScriptedBackend], content: bytes, message: str) -> None:
    client, _ = served
    answer = client.post("/tasks/echo", content=content, headers={"content-type": "application/json"})
    assert message in error_of(answer, 400, "malformed_body")["message"]


def test_bodies_over_the_cap_are_413(project: Path) -> None:
    client = client_for(create_app(project_tasks(project), backend=ScriptedBackend(echo_reply), max_body_bytes=1000,
                                   max_batch_rows=3, cache=False))  # fmt: skip
    error_of(client.post("/tasks/echo", json={"text": "x" * 1000}), 413, "body_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        yield b'{"text": "'
        yield b"x" * 2000
        yield b'"}'

    error_of(client.post("/tasks/echo", content=chunks()), 413, "body_too_large")
    assert client.post("/tasks/echo", json={"text": "x" * 900}).status_code == 200
    error_of(client.post("/tasks/echo/batch", json=[{"text": "x"}] * 4), 413, "batch_too_large")


def test_the_default_body_cap_is_one_megabyte(served: tuple[TestClient, ScriptedBackend]) -> None:
    client, _ = served
    error_of(client.post("/tasks/echo", json={"text": "x" * 1_000_001}), 413, "body_too_large")


# ---------------------------------------------------------------------- backpressure and timeouts


class Blocking(BaseBackend):
    """Answers once released; counts the calls that started."""

    name = "blocking"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = 0

    def generate(self, request: GenerationRequest) -> Generation:
        self.started += 1
        self.release.wait(10)
        return Generation(text=json.dumps(echo_reply(request)), usage=Usage(1, 1))


async def burst(app: Any, count: int, path: str = "/tasks/echo") -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://serve.test", timeout=20) as client:
        return list(await asyncio.gather(*(client.post(path, json={"text": f"r{i}"}) for i in range(count))))


def test_a_full_queue_answers_503_with_retry_after_and_recovers(project: Path) -> None:
    backend = Blocking()
    app = create_app(project_tasks(project), backend=backend, max_queue=2, cache=False)

    async def scenario() -> tuple[list[httpx.Response], float, list[httpx.Response]]:
        start = time.perf_counter()
        pending = asyncio.ensure_future(burst(app, 8))
        while sum(g.state().running + g.state().queued for g in app.state.gates) < 3:
            await asyncio.sleep(0.01)
            assert time.perf_counter() - start < 10
        refused_after = time.perf_counter() - start
        backend.release.set()
        first = await pending
        return first, refused_after, await burst(app, 3)

    first, refused_after, later = asyncio.run(scenario())
    statuses = sorted(r.status_code for r in first)
    assert statuses == [200] * 3 + [503] * 5  # one running, two waiting, the rest refused
    for refused in (r for r in first if r.status_code == 503):
        error_of(refused, 503, "overloaded")
        assert int(refused.headers["retry-after"]) >= 1
    assert refused_after < 5  # the refusals did not wait for the backend
    assert [r.status_code for r in later] == [200] * 3
    assert all(g.state().queued == 0 and g.state().running == 0 for g in app.state.gates)


def test_a_request_past_the_timeout_is_504_and_its_queued_work_is_dropped(project: Path) -> None:
    backend = Blocking()
    app = create_app(project_tasks(project), backend=backend, timeout=0.3, max_queue=4, cache=False)
    answers = asyncio.run(burst(app, 3))
    assert [r.status_code for r in answers] == [504] * 3
    error_of(answers[0], 504, "timeout")
    backend.release.set()
    deadline = time.monotonic() + 10
    while any(g.state().running or g.state().queued for g in app.state.gates):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert backend.started == 1  # the two still waiting when their clients got 504 never ran


def test_gate_admits_concurrency_plus_queue_and_releases_on_finish_or_cancel() -> None:
    gate = Gate("g", concurrency=1, max_queue=1)
    release = threading.Event()
    running = gate.submit(lambda: release.wait(5))
    waiting = gate.submit(lambda: 2)
    assert running is not None and waiting is not None
    assert gate.submit(lambda: 3) is None
    assert waiting.cancel() and gate.state().queued == 0
    again = gate.submit(lambda: 4)
    assert again is not None and gate.retry_after() >= 1
    release.set()
    assert running.result(5) is True and again.result(5) == 4
    gate.close()
    assert gate.submit(lambda: 5) is None
    with pytest.raises(ValueError, match="concurrency"):
        Gate("bad", concurrency=0, max_queue=0)


# ---------------------------------------------------------------------- access


def test_with_a_key_every_route_but_healthz_and_the_page_files_needs_it(project: Path) -> None:
    client = client_for(create_app(project_tasks(project), backend=ScriptedBackend(echo_reply), api_key=KEY,
                                   cache=False))  # fmt: skip
    seen: list[httpx.Response] = []
    wrong = ["", "Bearer wrong", f"Bearer {KEY}x", f"Basic {KEY}", KEY, f"Bearer {KEY[:-1]}"]
    for headers in [{"Authorization": value} if value else {} for value in wrong]:
        for method, path in (("GET", "/tasks"), ("POST", "/tasks/echo"), ("POST", "/tasks/echo/batch"),
                             ("GET", "/openapi.json"), ("POST", "/tasks/nosuch"), ("GET", "/nowhere")):  # fmt: skip
            answer = client.request(method, path, headers=headers, json={"text": "x"})
            error_of(answer, 401, "unauthorized")
            assert answer.headers["www-authenticate"].startswith("Bearer")
            seen.append(answer)
    good = {"Authorization": f"Bearer {KEY}"}
    assert client.post("/tasks/echo", json={"text": "x"}, headers=good).json()["output"] == "x"
    assert client.get("/tasks", headers={"authorization": f"bearer {KEY}"}).status_code == 200
    document = client.get("/openapi.json", headers=good).json()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path in ("/healthz", "/", "/docs", "/static/playground.js"):
        seen.append(client.get(path))
        assert seen[-1].status_code == 200, path
    for answer in seen:
        assert KEY not in answer.text and all(KEY not in v for v in answer.headers.values())


def test_binding_beyond_loopback_needs_a_key_or_insecure() -> None:
    for host in ("127.0.0.1", "127.8.0.1", "localhost", "::1", "[::1]"):
        assert is_loopback(host), host
        check_bind(host, api_key=None, insecure=False)
    for host in ("0.0.0.0", "::", "192.168.1.4", "example.com"):
        assert not is_loopback(host), host
        with pytest.raises(promptask.UserError, match="without an API key"):
            check_bind(host, api_key=None, insecure=False)
        check_bind(host, api_key=KEY, insecure=False)
        check_bind(host, api_key=None, insecure=True)


def serve_command(
    *args: str, env: dict[str, str] | None = None, code: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "promptask", *args]
    return subprocess.run(command, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["serve", "--host", "0.0.0.0"], {}, "refusing to serve on 0.0.0.0 without an API key"),
        (["serve", "--api-key-env", "PT_NO_SUCH_VAR"], {}, "PT_NO_SUCH_VAR: that environment variable is not set"),
        (["serve", "--max-queue", "-1"], {}, "--max-queue -1: must be 0 or more"),
        (["serve", "--timeout", "0"], {}, "--timeout 0: must be more than 0"),
        (["serve", "/no/such/project"], {}, "no such project folder"),
        (["serve", "--backend", "warp:9"], {}, "unknown backend scheme"),
    ],
)
def test_serve_mistakes_exit_2_with_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    out = serve_command(*args, env=env)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_a_missing_web_server_package_names_the_extra() -> None:
    code = "import sys; sys.modules['fastapi'] = None; from promptask.cli import main; sys.exit(main(sys.argv[1:]))"
    out = serve_command("serve", code=code)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "promptask: error: promptask serve needs fastapi, which is not installed: pip install 'promptask[serve]'"
    )


# ---------------------------------------------------------------------- the package


def test_the_playground_needs_nothing_but_this_server() -> None:
    files = sorted(STATIC.iterdir())
    assert {f.name for f in files} >= {"index.html", "docs.html", "common.js", "playground.js", "docs.js"}
    for file in files:
        text = file.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, file.name
        assert "localStorage" not in text and "sessionStorage" not in text and "document.cookie" not in text
    for page in ("index.html", "docs.html"):
        assert "<script>" not in (STATIC / page).read_text()  # scripts are files: the CSP allows no inline script


def test_the_wheel_ships_the_playground_files(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(tmp_path),
         str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("promptask-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"promptask/serve/static/{f.name}" for f in STATIC.iterdir()} <= names
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Provides-Extra: serve" in metadata and "extra == 'serve'" in metadata


def test_the_app_mounts_in_another_service_with_its_key_check_intact(project: Path) -> None:
    from fastapi import FastAPI

    service = FastAPI()
    service.mount("/nlp", create_app(project_tasks(project), backend=ScriptedBackend(echo_reply), api_key=KEY))
    client = client_for(service)
    assert client.get("/nlp/healthz").status_code == 200 and client.get("/nlp/").status_code == 200
    error_of(client.post("/nlp/tasks/echo", json={"text": "x"}), 401, "unauthorized")
    answer = client.post("/nlp/tasks/echo", json={"text": "x"}, headers={"Authorization": f"Bearer {KEY}"})
    assert answer.json()["output"] == "x"


def test_tasks_on_one_plain_backend_object_share_one_queue(project: Path) -> None:
    class Plain:  # not a BaseBackend: wrapped by an adapter
        def generate(self, request: GenerationRequest) -> Generation:
            return Generation(text=json.dumps(echo_reply(request)))

    app = create_app(project_tasks(project), backend=Plain(), max_queue=3)
    assert len(app.state.gates) == 1
    assert client_for(app).post("/tasks/echo", json={"text": "x"}).json()["output"] == "x"
