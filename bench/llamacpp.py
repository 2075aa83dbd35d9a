"""The llama.cpp backend against llama-cpp-python itself, on the default model, in one run.

Prints one JSON object:

* ``constrained_vs_free_tps``: decode tokens/s with the schema constraint divided
  by tokens/s without it, same prompt and token budget (goal >= 0.90).
* ``vs_raw_llama_cpp``: a promptask task call's wall time divided by llama-cpp-python's
  ``create_chat_completion`` with its built-in JSON-schema grammar, on the same
  messages, per generated token (goal <= 0.90).
* ``prefix_reuse_speedup``: 20 calls of a task with a 400+ token few-shot prefix,
  time with KV prefix reuse disabled divided by time with it (goal >= 2.0).
* ``schema_compile_ms_p50`` / ``_p99`` over the test schemas, ``mask_ms_per_token``.
* ``rss_mb`` of a fresh process after loading the default model (goal < 500).

    python bench/llamacpp.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import llama_cpp

import promptask
from promptask.backends import GenerationRequest, Message, Sampling
from promptask.backends.constraints import SchemaConstraints, TokenConstraint
from promptask.backends.llamacpp import LlamaCppBackend
from promptask.backends.model_files import default_model_path
from promptask.tasks.loader import task_from_mapping

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = json.loads((ROOT / "tests" / "schemas.json").read_text())
STORY_SCHEMA = {
    "type": "object",
    # minLength keeps the constrained answer going for the whole token budget, like the free one:
    # decode speed depends on position, so the comparison needs equal lengths.
    "properties": {"story": {"type": "string", "minLength": 1000, "maxLength": 4000}},
    "required": ["story"],
    "additionalProperties": False,
}


def constrained_vs_free(backend: LlamaCppBackend, repeats: int, budget: int = 96) -> dict[str, float]:
    messages = (Message("user", "Tell me a long story about a lighthouse keeper and a storm."),)
    rates: dict[str, list[float]] = {"free": [], "constrained": []}
    lengths: dict[str, set[int]] = {"free": set(), "constrained": set()}
    for _ in range(repeats):
        for kind, schema in (("free", None), ("constrained", STORY_SCHEMA)):
            g = backend.generate(GenerationRequest(messages, schema, Sampling(max_tokens=budget)))
            rates[kind].append(g.usage.completion_tokens / g.timings["decode_s"])
            lengths[kind].add(g.usage.completion_tokens)
    assert lengths["free"] == lengths["constrained"] == {budget}, f"unequal lengths: {lengths}"
    free, constrained = statistics.median(rates["free"]), statistics.median(rates["constrained"])
    return {
        "decode_tokens": budget,
        "free_tps": free,
        "constrained_tps": constrained,
        "constrained_vs_free_tps": constrained / free,
    }


TRIAGE = {
    "type": "object",
    "properties": {
        "team": {"type": "string", "enum": ["web", "billing", "shipping"]},
        "urgent": {"type": "boolean"},
        "summary": {"type": "string", "maxLength": 60},
    },
    "required": ["team", "urgent", "summary"],
}
TICKETS = [
    "I was charged twice for my order and want a refund.",
    "The checkout page shows an error 500 since this morning.",
    "My parcel has not arrived after two weeks.",
    "I cannot log in, the password reset email never comes.",
    "The invoice shows the wrong address.",
]


def vs_raw(backend: LlamaCppBackend, repeats: int) -> dict[str, float]:
    task = task_from_mapping(
        {
            "name": "triage",
            "inputs": {"ticket": "str"},
            "output": TRIAGE,
            "max_tokens": 80,
            "retries": 0,
            "template": "Route this support ticket.\nTicket: {{ ticket }}",
        }
    )
    raw = llama_cpp.Llama(
        str(default_model_path()),
        n_ctx=4096,
        n_threads=os.cpu_count() or 1,
        n_threads_batch=os.cpu_count() or 1,
        verbose=False,
    )
    ours: list[float] = []
    theirs: list[float] = []
    tokens = {"promptask": 0, "raw": 0}
    for _ in range(repeats):
        for ticket in TICKETS:
            messages = [m.to_dict() for m in task.render(ticket=ticket)]
            start = time.perf_counter()
            result = task.run(ticket=ticket, backend=backend, cache=False)
            ours.append((time.perf_counter() - start) / result.usage.completion_tokens)
            tokens["promptask"] += result.usage.completion_tokens
            start = time.perf_counter()
            out: Any = raw.create_chat_completion(
                messages=messages,  # type: ignore[arg-type]
                response_format={"type": "json_object", "schema": task.json_schema()},
                max_tokens=result.usage.completion_tokens,
                temperature=0.0,
            )
            n = out["usage"]["completion_tokens"]
            theirs.append((time.perf_counter() - start) / n)
            tokens["raw"] += n
    raw.close()
    return {
        "promptask_ms_per_token": statistics.median(ours) * 1e3,
        "raw_ms_per_token": statistics.median(theirs) * 1e3,
        "vs_raw_llama_cpp": statistics.median(ours) / statistics.median(theirs),
        "vs_raw_tokens_promptask": tokens["promptask"],
        "vs_raw_tokens_raw": tokens["raw"],
    }


def prefix_reuse(calls: int = 20) -> dict[str, float]:
    examples = [
        {"input": {"text": f"{t} " * 4}, "output": {"label": label}}
        for t, label in [
            ("The hotel room was spotless, the staff friendly and the breakfast generous and fresh.", "positive"),
            ("We waited two hours for a cold meal and nobody apologised for the delay at all.", "negative"),
            ("The package arrived on Tuesday in a brown box with the usual paperwork inside.", "neutral"),
            ("Absolutely loved the concert, the band played every song we hoped to hear live.", "positive"),
        ]
    ]
    task = promptask.tasks.sentiment.with_options(examples=examples, retries=0)
    prefix_tokens = LlamaCppBackend().count_tokens(task.render(text="x")[:-1])
    assert prefix_tokens >= 400, prefix_tokens
    times = {}
    for reuse in (False, True):
        backend = LlamaCppBackend(reuse_prefix=reuse)
        start = time.perf_counter()
        for i in range(calls):
            task.run(text=f"Call {i}: the film was long but the ending was worth it.", backend=backend, cache=False)
        times[reuse] = time.perf_counter() - start
    return {"prefix_tokens": prefix_tokens, "prefix_reuse_speedup": times[False] / times[True]}


def compile_and_mask(backend: LlamaCppBackend) -> dict[str, float]:
    constraints = SchemaConstraints(backend.model.constraints._tokenizer, backend.model.n_vocab)
    for item in SCHEMAS:
        schema = task_from_mapping({"name": "s", "output": item["schema"]}).json_schema()
        constraints.start(schema)
    compile_ms = sorted(s * 1e3 for s in constraints.compile_seconds)

    spent: list[float] = []
    original = TokenConstraint.allowed

    def timed(self: TokenConstraint) -> Any:
        start = time.perf_counter()
        try:
            return original(self)
        finally:
            spent.append(time.perf_counter() - start)

    TokenConstraint.allowed = timed  # type: ignore[method-assign]
    try:
        for item in SCHEMAS[:12]:
            schema = task_from_mapping({"name": "s", "output": item["schema"]}).json_schema()
            backend.generate(GenerationRequest((Message("user", item["prompt"]),), schema, Sampling(max_tokens=64)))
    finally:
        TokenConstraint.allowed = original  # type: ignore[method-assign]
    return {
        "schemas": len(compile_ms),
        "schema_compile_ms_p50": statistics.median(compile_ms),
        "schema_compile_ms_p99": compile_ms[min(len(compile_ms) - 1, int(0.99 * len(compile_ms)))],
        "mask_ms_per_token": statistics.median(spent) * 1e3,
    }


RSS_PROBE = """
from promptask.backends.llamacpp import LlamaCppBackend
backend = LlamaCppBackend()
backend.model.constraints
for line in open("/proc/self/status"):
    if line.startswith("VmRSS:"):
        print(int(line.split()[1]) / 1024)
"""


def rss_mb() -> float:
    out = subprocess.run([sys.executable, "-c", RSS_PROBE], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    backend = LlamaCppBackend()
    promptask.tasks.sentiment.run(text="warm up", backend=backend, cache=False)
    figures: dict[str, Any] = {"benchmark": "llamacpp", "model": default_model_path().name}
    figures |= constrained_vs_free(backend, repeats)
    figures |= vs_raw(backend, repeats)
    figures |= prefix_reuse()
    figures |= compile_and_mask(backend)
    figures["rss_mb"] = rss_mb()
    figures["threads"] = os.cpu_count()
    figures["llama_cpp_python"] = llama_cpp.__version__
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
