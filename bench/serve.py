"""``promptask serve`` measured in one run: the framework's ceiling, its HTTP overhead, and the default model.

Prints one JSON object:

* ``scripted_rps_1_client`` / ``scripted_rps_16_clients`` and their p50/p99
  latencies in ms: requests/s through a real server (uvicorn, 127.0.0.1) on a
  backend that answers at once, so every microsecond is the server's own.
* ``http_overhead_ms_p50``: the 1-client median latency minus the median of
  the same task call in this process (goal <= 2 ms).
* ``model_rps_8_clients``: requests/s with 8 clients on the default model
  (llama.cpp, SmolLM2-135M), and ``model_rps_in_process``: the same calls one
  after another in this process.  llama.cpp runs one call at a time, so the
  ratio says what serving costs, not what concurrency gains.

    python bench/serve.py [--requests 400] [--model-requests 32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

import promptask

SCRIPTED = 'scripted:{"label": "positive"}'
TEXTS = ["I love this phone!", "The battery died after a day.", "It works, I guess.", "Worst purchase ever."]


@contextmanager
def server(*args: str) -> Iterator[str]:
    """A ``promptask serve`` process on a free loopback port; yields its URL."""
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "server.log"
        env = {k: v for k, v in os.environ.items() if k != "PROMPTASK_BACKEND"}
        command = [sys.executable, "-m", "promptask", "serve", folder, "--port", "0", "--cache", "off", *args]
        with log.open("w") as err:
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env)
        try:
            url = ""
            for _ in range(600):  # 60 s at most
                line = next((ln for ln in log.read_text().splitlines() if ln.startswith("promptask: serving on")), "")
                if line:
                    url = line.split()[3]
                    break
                if process.poll() is not None:
                    raise SystemExit(f"the server exited: {log.read_text()}")
                time.sleep(0.1)
            if not url:
                raise SystemExit("the server did not start")
            yield url
        finally:
            process.terminate()
            process.wait(timeout=60)


def load(url: str, clients: int, requests: int, path: str = "/tasks/sentiment") -> dict[str, float]:
    """``requests`` POSTs spread over ``clients`` threads (one connection each): requests/s, p50, p99."""
    latencies: list[float] = []
    lock = threading.Lock()
    per_client = requests // clients

    def client(number: int) -> None:
        with httpx.Client(base_url=url, timeout=300) as http:
            for i in range(per_client):
                start = time.perf_counter()
                answer = http.post(path, json={"text": f"{TEXTS[i % len(TEXTS)]} ({number}.{i})"})
                elapsed = time.perf_counter() - start
                answer.raise_for_status()
                with lock:
                    latencies.append(elapsed)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    wall = time.perf_counter() - start
    ordered = sorted(latencies)
    return {
        "rps": len(ordered) / wall,
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000,
    }


def in_process_ms(requests: int) -> float:
    backend = promptask.ScriptedBackend.always({"label": "positive"})
    task = promptask.tasks.sentiment
    times = []
    for i in range(requests):
        start = time.perf_counter()
        task.run(text=f"{TEXTS[i % len(TEXTS)]} ({i})", backend=backend, cache=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--model-requests", type=int, default=32)
    args = parser.parse_args()
    figures: dict[str, Any] = {"benchmark": "serve"}
    with server("--backend", SCRIPTED) as url:
        load(url, 4, 40)  # warm up: connections, first-call imports
        one = load(url, 1, args.requests)
        many = load(url, 16, args.requests * 2)
    figures |= {f"scripted_{k}_1_client": v for k, v in one.items()}
    figures |= {f"scripted_{k}_16_clients": v for k, v in many.items()}
    figures["in_process_call_ms_p50"] = in_process_ms(args.requests)
    figures["http_overhead_ms_p50"] = one["p50_ms"] - figures["in_process_call_ms_p50"]

    with server("--timeout", "900") as url:  # the default backend; its 8 clients queue behind one another
        load(url, 1, 2)  # loads the model
        model = load(url, 8, args.model_requests)
    figures |= {f"model_{k}_8_clients": v for k, v in model.items()}
    task = promptask.tasks.sentiment
    task.run(text="warm up", cache=False)
    start = time.perf_counter()
    for i in range(args.model_requests):
        task.run(text=f"{TEXTS[i % len(TEXTS)]} ({i % 8}.{i // 8})", cache=False)
    figures["model_rps_in_process"] = args.model_requests / (time.perf_counter() - start)
    figures["model_serve_vs_in_process"] = figures["model_rps_8_clients"] / figures["model_rps_in_process"]
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
