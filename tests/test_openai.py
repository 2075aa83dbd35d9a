"""The OpenAI-compatible HTTP backend, against real servers on 127.0.0.1.

* llama-cpp-python's own server (``python -m llama_cpp.server``) with the default
  SmolLM2 model, started once for this module: tasks end to end.
* :class:`FakeOpenAI`, a server that misbehaves on purpose: the network faults.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import shlex
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_openai import Answer, FakeOpenAI
from shapes import CASES

import promptask
import promptask.batch
from promptask import BackendError, TaskResult
from promptask.backends import SchemaEnforcement, resolve_backend
from promptask.backends.model_files import default_model_path
from promptask.backends.openai import OpenAIBackend

pytestmark = pytest.mark.slow

KEY = "sk-test-5ecret-d0-not-leak"
README_URL = "http://127.0.0.1:8080/v1"
POSITIVE = '{"label":"positive"}'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real llama.cpp server with the default model, requiring the key ``KEY``; yields its base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(default_model_path()),
               "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
               "--api_key", KEY, "--verbose", "False"]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {process.returncode}:\n{log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def server_backend(llama_server: str) -> Iterator[OpenAIBackend]:
    with OpenAIBackend(llama_server, "smollm2", api_key=KEY) as backend:
        yield backend


def fast(url: str, **options: Any) -> OpenAIBackend:
    """A backend that retries quickly, for the fault tests."""
    settings: dict[str, Any] = {"backoff": 0.01, "max_backoff": 0.05, "max_retries": 2, "timeout": 5.0}
    return OpenAIBackend(url, "fake", **(settings | options))


# -- a real server ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "output", "question"), CASES, ids=[c[0] for c in CASES])
def test_tasks_return_valid_outputs_through_a_llama_cpp_server(
    server_backend: OpenAIBackend, name: str, output: object, question: str
) -> None:
    def stub(question: str) -> Any: ...

    stub.__name__ = name
    stub.__doc__ = "Answer the question.\n\n{{ question }}"
    stub.__annotations__["return"] = output
    task = promptask.task(max_tokens=80, retries=2)(stub)
    result = task.run(question, backend=server_backend, cache=False)
    task.output_model.model_validate_json(result.raw)
    assert result.backend == "openai"
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
    assert all(a.timings["request_s"] > 0 for a in result.attempts)


def test_a_server_without_json_schema_support_falls_back_once_to_json_mode(llama_server: str) -> None:
    """llama-cpp-python's server knows response_format json_object (with a schema), not json_schema."""
    with OpenAIBackend(llama_server, "smollm2", api_key=KEY) as backend:
        assert backend.response_format == "json_schema_strict"
        assert backend.schema_enforcement is SchemaEnforcement.SERVER
        result = promptask.tasks.sentiment.run(text="I love this phone!", backend=backend, cache=False)
        assert result.output.label == "positive"
        assert backend.response_format == "json_object"
        assert result.schema_enforcement is SchemaEnforcement.JSON
        assert promptask.backends.describe(backend).schema_enforcement is SchemaEnforcement.JSON


def test_uri_with_the_key_from_the_environment(llama_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTASK_API_KEY", KEY)
    backend = resolve_backend(f"openai:{llama_server}#smollm2")
    assert isinstance(backend, OpenAIBackend) and backend.model == "smollm2"
    assert promptask.tasks.sentiment("What a wonderful day!", backend=backend, cache=False).label == "positive"
    backend.close()


def test_a_wrong_key_fails_at_once_with_the_status_and_without_the_key(llama_server: str) -> None:
    wrong = "sk-wrong-key-12345"
    with OpenAIBackend(llama_server, "smollm2", api_key=wrong) as backend:
        started = time.perf_counter()
        with pytest.raises(BackendError, match=r"answered HTTP 401") as caught:
            promptask.tasks.sentiment("fine", backend=backend, cache=False)
        assert time.perf_counter() - started < 5  # not retried
        assert llama_server in str(caught.value) and wrong not in str(caught.value)


def test_map_async_and_sync_calls_from_inside_an_event_loop(server_backend: OpenAIBackend) -> None:
    texts = ["I love it", "I hate it", "Terrible service", "Wonderful!"]
    results = promptask.tasks.sentiment.map([{"text": t} for t in texts], backend=server_backend, cache=False)
    assert all(isinstance(r, TaskResult) for r in results)

    async def inside_a_loop() -> tuple[str, str]:
        sync = promptask.tasks.sentiment("I love it", backend=server_backend, cache=False)  # no deadlock
        result = await promptask.tasks.sentiment.arun(text="I love it", backend=server_backend, cache=False)
        return sync.label, result.output.label

    assert asyncio.run(inside_a_loop()) == ("positive", "positive")


def test_batch_size_falls_back_to_plain_calls_against_a_real_server(server_backend: OpenAIBackend) -> None:
    rows = [{"text": t} for t in ("I love it", "It broke", "It is a phone", "Best day ever")]
    batched = promptask.tasks.sentiment.map(rows, backend=server_backend, batch_size=8, cache=False)
    plain = promptask.tasks.sentiment.map(rows, backend=server_backend, cache=False)
    assert [r.output for r in batched] == [r.output for r in plain]


def test_the_readme_server_examples_run(llama_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### OpenAI-compatible servers", 1)[1].split("\n### ", 1)[0]
    monkeypatch.setenv("PROMPTASK_API_KEY", KEY)  # the module's server wants a key

    command = next(line.strip() for line in section.splitlines() if "promptask run" in line)
    args = shlex.split(command.replace(README_URL, llama_server))[1:]
    out = subprocess.run([sys.executable, "-m", "promptask", *args], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"label": "positive"}

    block = re.findall(r"```python\n(.*?)```", section, re.DOTALL)[0].replace(README_URL, llama_server)
    namespace = {"sentiment": promptask.tasks.sentiment, "reviews": ["Great value.", "It broke at once."]}
    exec(compile(block, "README.md", "exec", dont_inherit=True), namespace)
    assert all(isinstance(r, TaskResult) for r in namespace["results"])
    namespace["server"].close()


# -- a server that misbehaves -------------------------------------------------------------------


def test_429_with_retry_after_is_honoured() -> None:
    def respond(body: dict[str, Any], n: int) -> Answer:
        return Answer.error(429, "slow down", {"Retry-After": "1"}) if n == 0 else Answer.completion(POSITIVE)

    with FakeOpenAI(respond) as server, fast(server.url) as backend:
        started = time.perf_counter()
        assert promptask.tasks.sentiment("x", backend=backend, cache=False).label == "positive"
        assert 1.0 <= time.perf_counter() - started < 3.0
        assert len(server.bodies) == 2


def test_500_then_success_is_retried() -> None:
    def respond(body: dict[str, Any], n: int) -> Answer:
        return Answer.error(500, "upstream hiccup") if n == 0 else Answer.completion(POSITIVE)

    with FakeOpenAI(respond) as server, fast(server.url) as backend:
        result = promptask.tasks.sentiment.run(text="x", backend=backend, cache=False)
        assert result.output.label == "positive" and len(result.attempts) == 1
        assert len(server.bodies) == 2


def test_500_every_time_ends_in_an_error_with_url_status_and_message() -> None:
    with FakeOpenAI(lambda body, n: Answer.error(503, "overloaded, try later")) as server:
        with fast(server.url, max_retries=2) as backend, pytest.raises(BackendError) as caught:
            promptask.tasks.sentiment("x", backend=backend, cache=False)
        assert str(caught.value) == f"{server.url}: HTTP 503: overloaded, try later (3 attempts)"
        assert len(server.bodies) == 3


def test_a_hang_past_the_timeout_is_retried_then_reported() -> None:
    with FakeOpenAI(lambda body, n: Answer.completion(POSITIVE, delay=3.0)) as server:
        started = time.perf_counter()
        with fast(server.url, timeout=0.3, max_retries=1) as backend, pytest.raises(BackendError) as caught:
            promptask.tasks.sentiment("x", backend=backend, cache=False)
        assert time.perf_counter() - started < 2.0
        assert str(caught.value) == f"{server.url}: no response within 0.3 s (2 attempts)"


def test_a_malformed_body_is_retried() -> None:
    def respond(body: dict[str, Any], n: int) -> Answer:
        return Answer(body=b'{"choices": [{"mess') if n == 0 else Answer.completion(POSITIVE)

    with FakeOpenAI(respond) as server, fast(server.url) as backend:
        assert promptask.tasks.sentiment("x", backend=backend, cache=False).label == "positive"
        assert len(server.bodies) == 2
    with (
        FakeOpenAI(lambda body, n: Answer(body=b"<html>bad gateway</html>")) as server,
        fast(server.url, max_retries=1) as backend,
        pytest.raises(BackendError, match="malformed JSON"),
    ):
        promptask.tasks.sentiment("x", backend=backend, cache=False)


def test_a_connection_closed_mid_response_is_retried() -> None:
    def respond(body: dict[str, Any], n: int) -> Answer:
        answer = Answer.completion(POSITIVE)
        return Answer(body=answer.body, drop=True) if n == 0 else answer

    with FakeOpenAI(respond) as server, fast(server.url) as backend:
        assert promptask.tasks.sentiment("x", backend=backend, cache=False).label == "positive"
        assert len(server.bodies) == 2


def test_other_4xx_are_not_retried() -> None:
    with FakeOpenAI(lambda body, n: Answer.error(404, "model 'fake' not found")) as server:
        with fast(server.url) as backend, pytest.raises(BackendError) as caught:
            promptask.tasks.sentiment("x", backend=backend, cache=False)
        assert str(caught.value) == f"{server.url} answered HTTP 404: model 'fake' not found"
        assert len(server.bodies) == 1


def test_an_unreachable_server_says_so() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with fast(url, max_retries=1) as backend, pytest.raises(BackendError) as caught:
        promptask.tasks.sentiment("x", backend=backend, cache=False)
    assert str(caught.value).startswith(f"{url}: cannot connect")
    assert "is the server running?" in str(caught.value)


def test_response_format_steps_down_once_per_backend_to_plain_text() -> None:
    """json_schema (strict, then not) -> json_object -> no response_format, each step once."""

    def respond(body: dict[str, Any], n: int) -> Answer:
        if "response_format" in body:
            return Answer.error(400, f"response_format {body['response_format']['type']} is not supported")
        return Answer.completion("Sure! ```json\n" + POSITIVE + "\n```")  # text mode: parsed leniently

    with FakeOpenAI(respond) as server, fast(server.url) as backend:
        result = promptask.tasks.sentiment.run(text="x", backend=backend, cache=False)
        assert result.output.label == "positive" and result.schema_enforcement is SchemaEnforcement.NONE
        sent = [b.get("response_format") for b in server.bodies]
        assert [(f or {}).get("type") for f in sent] == ["json_schema", "json_schema", "json_object", None]
        assert [f["json_schema"]["strict"] for f in sent[:2] if f] == [True, False]
        assert backend.response_format == "text"
        promptask.tasks.sentiment.run(text="y", backend=backend, cache=False)
        assert len(server.bodies) == 5  # the next call goes straight to plain text


def test_map_keeps_max_concurrency_requests_in_flight() -> None:
    with FakeOpenAI(lambda body, n: Answer.completion(POSITIVE, delay=0.2)) as server:
        with fast(server.url, max_concurrency=4) as backend:
            started = time.perf_counter()
            results = promptask.tasks.sentiment.map([{"text": f"t{i}"} for i in range(16)], backend=backend,
                                                    cache=False)  # fmt: skip
            elapsed = time.perf_counter() - started
        assert all(isinstance(r, TaskResult) for r in results)
        assert server.max_in_flight == 4
        assert elapsed < 16 * 0.2 / 2  # 4 at a time: about 0.8 s, not 3.2 s


def test_a_batch_with_failures_loses_nothing_and_a_rerun_redoes_only_the_failures(tmp_path: Path) -> None:
    failing = {f"review {i}" for i in range(0, 50, 7)}  # 8 of 50
    broken = True

    def respond(body: dict[str, Any], n: int) -> Answer:
        if broken and any(text in body["messages"][-1]["content"] for text in failing):
            return Answer.error(500, "worker crashed")
        return Answer.completion(POSITIVE)

    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"id": i, "text": f"review {i}."}) + "\n" for i in range(50)))
    out = tmp_path / "out.jsonl"
    with FakeOpenAI(respond) as server, fast(server.url, max_retries=1) as backend:
        first = promptask.batch.run_file(promptask.tasks.sentiment, rows, out, backend=backend, progress=False)
        assert (first.done, first.failed) == (42, 8)
        assert len(server.bodies) == 42 + 8 * 2
        written = [json.loads(line) for line in out.read_text().splitlines()]
        assert sorted(r["id"] for r in written if "output" in r) == sorted(
            set(range(50)) - {0, 7, 14, 21, 28, 35, 42, 49}
        )

        broken = False
        server.bodies.clear()
        mapped = promptask.tasks.sentiment.map([{"text": f"review {i}."} for i in range(50)], backend=backend)
        assert len(server.bodies) == 8  # the cache served the 42 that succeeded
        assert sum(isinstance(r, TaskResult) and r.cached for r in mapped) == 42

        server.bodies.clear()
        second = promptask.batch.run_file(promptask.tasks.sentiment, rows, out, backend=backend, progress=False)
        assert second.failed == 0 and second.already_done == 42 and len(server.bodies) == 0  # cached by the map
        written = [json.loads(line) for line in out.read_text().splitlines()]
        assert sorted(r["id"] for r in written if "output" in r) == list(range(50))


def test_the_key_never_appears_in_logs_errors_reprs_or_the_cache(
    caplog: pytest.LogCaptureFixture, cache_dir: Path
) -> None:
    def respond(body: dict[str, Any], n: int) -> Answer:
        if n % 3 == 0:  # a server that echoes the request headers into its error message
            return Answer.error(500, f"bad header: {server.headers[n].get('Authorization')}")
        if n % 3 == 1:
            return Answer.error(401, f"invalid key {server.headers[n].get('Authorization')}")
        return Answer.completion(POSITIVE)

    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    seen: list[str] = []
    sent: list[str] = []
    with FakeOpenAI(respond) as server:
        for url, api_key in ((server.url, KEY), (server.url.replace("http://", "http://user:pa55word@"), None)):
            server.bodies.clear()
            server.headers.clear()
            with fast(url, api_key=api_key, max_retries=1) as backend:
                seen += [repr(backend), backend.fingerprint(), str(promptask.backends.describe(backend))]
                with pytest.raises(BackendError) as caught:
                    promptask.tasks.sentiment("first", backend=backend)
                seen += [str(caught.value), repr(caught.value), "".join(traceback.format_exception(caught.value))]
                result = promptask.tasks.sentiment.run(text="second", backend=backend)
                seen.append(json.dumps(result.to_dict()))
            sent.append(server.headers[0]["Authorization"])
    assert sent == [f"Bearer {KEY}", "Basic " + base64.b64encode(b"user:pa55word").decode()]  # they were sent
    assert "bad header: Bearer ***" in caplog.text and "bad header: Basic ***" in caplog.text  # echoes, scrubbed
    seen.append(caplog.text)
    seen += [p.read_bytes().decode("latin-1") for p in cache_dir.rglob("*") if p.is_file()]
    for text in seen:
        assert KEY not in text and "pa55word" not in text and "dXNlcjpwYTU1d29yZA" not in text


def test_stopping_a_stream_early_cancels_what_has_not_started() -> None:
    with FakeOpenAI(lambda body, n: Answer.completion(POSITIVE, delay=0.3)) as server:
        with fast(server.url, max_concurrency=4) as backend:
            stream = promptask.tasks.sentiment.stream([{"text": f"t{i}"} for i in range(40)], backend=backend,
                                                      cache=False)  # fmt: skip
            next(stream)
            started = time.perf_counter()
            stream.close()
            assert time.perf_counter() - started < 0.5
        time.sleep(0.5)
        assert len(server.bodies) <= 8  # the first four, perhaps the next four; not 40
