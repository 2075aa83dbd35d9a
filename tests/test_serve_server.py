"""``promptask serve`` as a real process on 127.0.0.1: load, overload, faults, SIGTERM, bad input, the default model.

Every server here is the real command (``promptask serve``) started by
:func:`launch`, which first registers two test backends: ``echo:`` (answers at
once with the request's own text) and ``slow:SECONDS:CONCURRENCY``.  Every
loop is bounded in count and time, and only loopback is ever contacted.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_serve import KEY, deref, echo_reply, write_project

import promptask
from promptask import Generation, GenerationRequest, ScriptedBackend, Usage
from promptask.backends import BaseBackend

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent


class Slow(BaseBackend):
    """Echoes after ``seconds``, ``concurrency`` calls at a time."""

    name = "slow"

    def __init__(self, seconds: float, concurrency: int) -> None:
        self.seconds = seconds
        self._concurrency = concurrency

    @property
    def concurrency(self) -> int:
        return self._concurrency

    def generate(self, request: GenerationRequest) -> Generation:
        calls = os.environ.get("PT_SLOW_CALLS")
        if calls:  # the tests read which requests reached the backend
            with open(calls, "a") as out:
                out.write(request.messages[-1].content + "\n")
        time.sleep(self.seconds)
        return Generation(text=json.dumps(echo_reply(request)), usage=Usage(1, 1))


def launch() -> None:
    """The servers' entry point: ``promptask`` itself, with the test backends registered."""
    from promptask.cli import main

    def slow(rest: str) -> Slow:
        seconds, _, concurrency = rest.partition(":")
        return Slow(float(seconds), int(concurrency or 1))

    promptask.register_backend("echo", lambda rest: ScriptedBackend(echo_reply))
    promptask.register_backend("slow", slow)
    sys.exit(main(sys.argv[1:]))


class Server:
    """A ``promptask serve`` process; its log is a file, so a full pipe can never stall it."""

    def __init__(self, project: Path, *args: str, log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        environment = {**os.environ, **(env or {})}
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), environment.get("PYTHONPATH")]))
        command = [sys.executable, "-c", "import test_serve_server; test_serve_server.launch()",
                   "serve", str(project), "--port", "0", "--cache", "off", *args]  # fmt: skip
        with log.open("w") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=environment)
        deadline = time.monotonic() + 60
        self.url = ""
        while not self.url:
            text = log.read_text()
            for line in text.splitlines():
                if line.startswith("promptask: serving on "):
                    self.url = line.split()[3]
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited with {self.process.returncode}:\n{text}")
            assert time.monotonic() < deadline, f"the server did not start:\n{text}"
            time.sleep(0.05)
        wait_until(lambda: self.get("/healthz").status_code == 200, "the server answers /healthz", 30)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.url + path, timeout=kwargs.pop("timeout", 60), **kwargs)

    def busy(self) -> int:
        return sum(b["running"] + b["queued"] for b in self.get("/healthz").json()["backends"])

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise


def wait_until(condition: Callable[[], bool], what: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "project")


@pytest.fixture
def start(tmp_path: Path, project: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def starter(*args: str, env: dict[str, str] | None = None) -> Server:
        servers.append(Server(project, *args, log=tmp_path / f"server{len(servers)}.log", env=env))
        return servers[-1]

    yield starter
    for server in servers:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=10)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ---------------------------------------------------------------------- load


def test_400_requests_from_16_clients_all_answered_correctly(
    start: Callable[..., Server], capsys: pytest.CaptureFixture[str]
) -> None:
    server = start("--backend", "echo:")
    errors: list[str] = []
    latencies: list[float] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for i in range(25):
                text = f"client {number} request {i} {os.urandom(4).hex()}"
                began = time.perf_counter()
                answer = http.post("/tasks/echo", json={"text": text})
                elapsed = time.perf_counter() - began
                with lock:
                    latencies.append(elapsed)
                    if answer.status_code != 200 or answer.json()["output"] != text:
                        errors.append(f"{answer.status_code}: {answer.text[:200]}")

    began = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(client, range(16)))
    wall = time.perf_counter() - began
    assert len(latencies) == 400 and errors == []
    with capsys.disabled():
        print(f"\nserve load: 400 requests, 16 clients: p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
              f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, {400 / wall:.0f} requests/s")  # fmt: skip
    assert server.stop() == 0


# ---------------------------------------------------------------------- overload


def test_overload_gets_503_quickly_while_healthz_answers_and_memory_stays_flat(start: Callable[..., Server]) -> None:
    server = start("--backend", "slow:0.4:1", "--max-queue", "4")
    health: list[tuple[int, float]] = []
    stop = threading.Event()

    def watch() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for _ in range(2000):  # bounded: about 60 s at most
                if stop.is_set():
                    return
                began = time.perf_counter()
                status = http.get("/healthz").status_code
                health.append((status, time.perf_counter() - began))
                time.sleep(0.03)

    def burst() -> list[tuple[int, float, str | None, Any]]:
        clients = [httpx.Client(base_url=server.url, timeout=30) for _ in range(20)]
        ready = threading.Barrier(20, timeout=30)  # all 20 requests leave together

        def one(i: int) -> tuple[int, float, str | None, Any]:
            ready.wait()
            began = time.perf_counter()
            answer = clients[i].post("/tasks/echo", json={"text": f"burst {i}"})
            return answer.status_code, time.perf_counter() - began, answer.headers.get("retry-after"), answer.json()

        try:
            with ThreadPoolExecutor(20) as pool:
                return list(pool.map(one, range(20)))
        finally:
            for client in clients:
                client.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        first = burst()
        baseline = server.rss_kb()
        later = [burst() for _ in range(3)]
    finally:
        stop.set()
        watcher.join(30)
    grown_kb = server.rss_kb() - baseline
    for outcome in [first, *later]:
        statuses = sorted(status for status, *_ in outcome)
        assert statuses == [200] * 5 + [503] * 15  # one running and four waiting; the excess refused
        slowest_ok = max(elapsed for status, elapsed, *_ in outcome if status == 200)
        for status, elapsed, retry_after, body in outcome:
            if status == 503:
                assert body["error"]["type"] == "overloaded" and retry_after is not None and int(retry_after) >= 1
                assert elapsed < 1.0 < slowest_ok  # refused at once, not after waiting for the backend
            else:
                assert body["output"].startswith("burst ")
    assert health and all(status == 200 for status, _ in health)
    assert max(elapsed for _, elapsed in health) < 1.0
    assert grown_kb < 10_000, f"resident memory grew by {grown_kb} kB over three more bursts"
    assert server.stop() == 0


# ---------------------------------------------------------------------- faults


def raw_request(url: str, body: bytes, *, send: int | None = None) -> socket.socket:
    """Open a connection and send a POST (only ``send`` bytes of it, if given); the caller closes it."""
    host, port = url.removeprefix("http://").split(":")
    head = (f"POST /tasks/echo HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall((head + body)[: send if send is not None else None])
    return sock


def test_clients_that_disconnect_mid_request_do_not_break_later_ones(
    start: Callable[..., Server], tmp_path: Path
) -> None:
    calls = tmp_path / "calls.txt"
    server = start("--backend", "slow:0.5:1", env={"PT_SLOW_CALLS": str(calls)})
    running = raw_request(server.url, b'{"text": "gone while running"}')
    wait_until(lambda: server.busy() == 1, "the first request runs", 10)
    queued = raw_request(server.url, b'{"text": "gone while queued"}')
    wait_until(lambda: server.busy() == 2, "the second request waits", 10)
    half = raw_request(server.url, b'{"text": "never fully sent"}', send=60)
    for sock in (running, queued, half):
        sock.close()
    wait_until(lambda: server.busy() == 0, "the server is idle again", 10)
    answer = server.post("/tasks/echo", json={"text": "still here"})
    assert answer.status_code == 200 and answer.json()["output"] == "still here"
    # The one that left while waiting never reached the backend; the running one finished.
    assert calls.read_text().splitlines() == ["Echo: gone while running", "Echo: still here"]
    assert "Traceback" not in server.log.read_text()
    assert server.stop() == 0


def test_sigterm_lets_8_requests_in_flight_finish_refuses_new_ones_and_exits_0(start: Callable[..., Server]) -> None:
    server = start("--backend", "slow:1.0:4", "--grace", "20")

    def one(i: int) -> tuple[int, Any]:
        answer = httpx.post(server.url + "/tasks/echo", json={"text": f"in flight {i}"}, timeout=30)
        return answer.status_code, answer.json()

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(one, i) for i in range(8)]
        wait_until(lambda: server.busy() == 8, "8 requests are in flight", 10)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(httpx.TransportError):
            httpx.post(server.url + "/tasks/echo", json={"text": "too late"}, timeout=5)
        outcomes = [future.result(timeout=30) for future in futures]
    assert [status for status, _ in outcomes] == [200] * 8
    assert sorted(body["output"] for _, body in outcomes) == sorted(f"in flight {i}" for i in range(8))
    assert server.process.wait(timeout=30) == 0


# ---------------------------------------------------------------------- bad input


def test_bad_input_gets_its_status_and_a_json_error_and_the_server_keeps_serving(
    start: Callable[..., Server],
) -> None:
    server = start("--backend", "echo:", "--api-key-env", "PT_SERVE_KEY", env={"PT_SERVE_KEY": KEY})
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}

    def huge() -> Iterator[bytes]:
        yield b'{"text": "'
        for _ in range(40):
            yield b"x" * 50_000
        yield b'"}'

    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("malformed JSON", {"content": b'{"text": '}, 400, "malformed_body"),
        ("wrong types", {"json": {"text": ["a", "list"]}}, 422, "invalid_input"),
        ("huge body", {"content": b'{"text": "' + b"x" * 2_000_000 + b'"}'}, 413, "body_too_large"),
        ("huge chunked body", {"content": huge()}, 413, "body_too_large"),
        ("unknown field", {"json": {"text": "x", "mood": "sunny"}}, 422, "invalid_input"),
        ("non-UTF-8 bytes", {"content": b'{"text": "\xff\xfe\xfa"}'}, 400, "malformed_body"),
        ("no key", {"json": {"text": "x"}, "headers": {}}, 401, "unauthorized"),
        ("wrong key", {"json": {"text": "x"}, "headers": {"Authorization": "Bearer nope"}}, 401, "unauthorized"),
    ]
    seen: list[str] = []
    for what, request, status, kind in cases:
        request.setdefault("headers", auth)
        answer = server.post("/tasks/echo", **request)
        assert (answer.status_code, answer.json()["error"]["type"]) == (status, kind), what
        assert answer.headers["content-type"] == "application/json", what
        seen.append(answer.text + json.dumps(dict(answer.headers)))
        assert server.get("/healthz").status_code == 200, what
        good = server.post("/tasks/echo", json={"text": what}, headers=auth)
        assert good.status_code == 200 and good.json()["output"] == what
    assert server.stop() == 0
    log = server.log.read_text()
    assert "Traceback" not in log
    assert KEY not in log and all(KEY not in text for text in seen)


# ---------------------------------------------------------------------- the default model


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The default model (llama.cpp, SmolLM2-135M) behind ``promptask serve``, started once for these tests."""
    folder = tmp_path_factory.mktemp("model-project")
    project = write_project(folder / "project")
    (project / "tasks" / "long.yaml").write_text(
        "name: long\ninputs:\n  text: str\noutput: str\ntemplate: '{{ text }}'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PROMPTASK_BACKEND"}
    server = Server(project, "--max-queue", "1", log=folder / "server.log", env=env)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()


def test_default_model_endpoints(model_server: Server) -> None:
    server = model_server
    listed = {t["name"]: t for t in server.get("/tasks").json()["tasks"]}
    assert {"sentiment", "echo", "profile", *promptask.builtin_task_names()} <= set(listed)
    answer = server.post("/tasks/sentiment", json={"text": "I love this phone, it is wonderful!"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["output"]["label"] in {"positive", "negative", "neutral"}
    assert "confidence" in body and body["usage"]["completion_tokens"] > 0 and body["attempts"][0]["error"] is None
    rows = [{"text": "Great value."}, {"txt": "typo"}, {"text": "Broke in a day."}]
    batch = server.post("/tasks/sentiment/batch", json=rows).json()
    assert batch["failed"] == 1 and batch["results"][1]["error"]["status"] == 422
    assert {batch["results"][i]["output"]["label"] for i in (0, 2)} <= {"positive", "negative", "neutral"}
    assert server.get("/healthz").json()["backends"][0]["backend"] == "llamacpp"
    document = server.get("/openapi.json").json()
    sentiment = promptask.tasks.sentiment
    request = document["paths"]["/tasks/sentiment"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert deref(request, document) == sentiment.input_model.model_json_schema()
    response = document["paths"]["/tasks/sentiment"]["post"]["responses"]["200"]["content"]["application/json"]
    assert deref(response["schema"], document)["properties"]["output"] == sentiment.json_schema()


def test_default_model_errors(model_server: Server, tmp_path: Path) -> None:
    server = model_server

    def error(answer: httpx.Response) -> tuple[int, str]:
        assert answer.headers["content-type"] == "application/json"
        return answer.status_code, answer.json()["error"]["type"]

    assert error(server.post("/tasks/sentiment", json={"text": 5})) == (422, "invalid_input")
    assert error(server.post("/tasks/nosuch", json={})) == (404, "unknown_task")
    assert error(server.post("/tasks/sentiment", content=b"{")) == (400, "malformed_body")
    assert error(server.post("/tasks/sentiment", json={"text": "x" * 1_100_000})) == (413, "body_too_large")
    picky = server.post("/tasks/picky", json={"text": "Say something."})
    assert error(picky) == (422, "output_validation") and len(picky.json()["error"]["attempts"]) == 2
    too_long = server.post("/tasks/long", json={"text": "word " * 30_000})  # beyond the 4096-token context
    assert error(too_long) == (502, "backend_error"), too_long.text

    def generate(i: int) -> httpx.Response:
        return server.post("/tasks/generate", json={"instruction": f"Write a story number {i}.", "max_words": 20})

    with ThreadPoolExecutor(6) as pool:  # one runs, one waits (--max-queue 1), the rest are refused
        statuses = sorted(answer.status_code for answer in pool.map(generate, range(6)))
    assert statuses.count(503) >= 3 and set(statuses) <= {200, 503, 504}  # 504: a wait past 60 s on a busy machine

    env = {k: v for k, v in os.environ.items() if k != "PROMPTASK_BACKEND"}
    hurried = Server(tmp_path, "--timeout", "0.05", log=tmp_path / "hurried.log", env=env)
    try:
        answer = hurried.post("/tasks/generate", json={"instruction": "Write a long story.", "max_words": 100})
        assert error(answer) == (504, "timeout")
        assert hurried.get("/healthz").status_code == 200
    finally:
        assert hurried.stop() == 0
