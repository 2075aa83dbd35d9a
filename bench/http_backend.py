"""The OpenAI-compatible HTTP backend, measured in one run.

Prints one JSON object:

* ``overhead_vs_raw_client``: the median wall time of a promptask task call
  against a local llama.cpp server (``python -m llama_cpp.server``, default
  model), divided by the median of a direct ``httpx`` POST of the same request
  body; calls alternate so both see the same server state (goal <= 1.05).
* ``concurrency_speedup``: throughput of a 64-item ``map`` with 8 requests in
  flight divided by 1 in flight, against a local server that answers every
  request after 200 ms, standing in for a server with many slots (goal >= 7).
  Each backend answers one request first, so starting its HTTP client and
  event loop (about 0.1 s, once per backend) is not counted as throughput.

    python bench/http_backend.py [--repeats 30]
"""

from __future__ import annotations

import sys
from pathlib import Path

# The fake server lives with the tests.
sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))

import argparse
import json
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from fake_openai import Answer, FakeOpenAI

import promptask
from promptask.backends import GenerationRequest
from promptask.backends.model_files import default_model_path
from promptask.backends.openai import OpenAIBackend

TEXTS = ["I love this phone!", "The battery died after a day.", "It works, I guess.", "Worst purchase ever."]


@contextmanager
def llama_server() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(default_model_path()), "--model_alias",
               "smollm2", "--host", "127.0.0.1", "--port", str(port), "--verbose", "False"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/models").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait()


def overhead(url: str, repeats: int) -> dict[str, Any]:
    task = promptask.tasks.sentiment
    with OpenAIBackend(url, "smollm2") as backend, httpx.Client() as raw:
        task.run(text=TEXTS[0], backend=backend, cache=False)  # settles the response format (see the backend)
        times: dict[str, list[float]] = {"promptask": [], "raw": []}
        for i in range(repeats):
            text = TEXTS[i % len(TEXTS)]
            inputs = task.validate_inputs((), {"text": text})
            request = GenerationRequest(task.messages_for(inputs), task.request_schema(inputs), task.sampling)
            body = backend.request_body(request)
            calls = {
                "promptask": lambda text=text: task.run(text=text, backend=backend, cache=False),
                "raw": lambda body=body: raw.post(f"{url}/chat/completions", json=body).raise_for_status(),
            }
            # The server reuses the KV cache of the previous prompt, so the second of two calls
            # with the same prompt is faster: take turns at going first.
            for name in ("promptask", "raw") if i % 2 == 0 else ("raw", "promptask"):
                start = time.perf_counter()
                calls[name]()
                times[name].append(time.perf_counter() - start)
        promptask_ms = statistics.median(times["promptask"]) * 1000
        raw_ms = statistics.median(times["raw"]) * 1000
        return {
            "response_format": backend.response_format,
            "call_ms_promptask": promptask_ms,
            "call_ms_raw": raw_ms,
            "overhead_vs_raw_client": promptask_ms / raw_ms,
        }


def concurrency() -> dict[str, Any]:
    rows = [{"text": f"review {i}"} for i in range(64)]
    seconds = {}
    with FakeOpenAI(lambda body, n: Answer.completion('{"label":"positive"}', delay=0.2)) as server:
        for in_flight in (1, 8):
            with OpenAIBackend(server.url, "fake", max_concurrency=in_flight) as backend:
                promptask.tasks.sentiment.run(text="warm up", backend=backend, cache=False)  # client and loop start
                start = time.perf_counter()
                promptask.tasks.sentiment.map(rows, backend=backend, cache=False)
                seconds[in_flight] = time.perf_counter() - start
    return {"map_s_1_in_flight": seconds[1], "map_s_8_in_flight": seconds[8],
            "concurrency_speedup": seconds[1] / seconds[8]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    repeats = parser.parse_args().repeats
    figures: dict[str, Any] = {"benchmark": "http"}
    with llama_server() as url:
        figures |= overhead(url, repeats)
    figures |= concurrency()
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
