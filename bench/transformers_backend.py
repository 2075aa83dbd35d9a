"""The transformers backend on the CPU with the default model, in one run.

Prints one JSON object:

* ``batch_speedup``: completion tokens/s of ``map`` over 32 inputs with ``batch_size=8``
  divided by tokens/s of 32 single calls (greedy: both give the same answers; goal >= 3.0).
* ``batch_speedup_decode``: the same ratio for bare decoding, 32 tokens a request
  (16 single requests, 32 in batches of 8).
* ``constrained_vs_free_tps_single`` / ``_batched``: decode tokens/s with a schema
  constraint divided by tokens/s without, same prompts and lengths (goal >= 0.90);
  medians over three rounds in alternating order.

    python bench/transformers_backend.py [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import promptask
from promptask import TaskResult
from promptask.backends import GenerationRequest, Message, Sampling
from promptask.backends.transformers import TransformersBackend

TOPICS = ["the sea", "a forest", "the moon", "a city at night", "a garden", "the desert", "a library", "winter"]
STORY = {
    "type": "object",
    "properties": {"story": {"type": "string", "minLength": 1000}},  # keeps every row going to the budget
    "required": ["story"],
    "additionalProperties": False,
}


def tokens_per_second(fn: Any) -> tuple[float, int]:
    start = time.perf_counter()
    tokens = fn()
    return tokens / (time.perf_counter() - start), tokens


def task_level(backend: TransformersBackend) -> dict[str, Any]:
    rows = [{"instruction": f"Write two sentences about {topic} for reader {i}.", "max_words": 20}
            for i in range(4) for topic in TOPICS]  # fmt: skip
    generate = promptask.tasks.generate

    def batched() -> int:
        results = generate.map(rows, backend=backend, batch_size=8, cache=False)
        return sum(r.usage.completion_tokens for r in results if isinstance(r, TaskResult))

    def single() -> int:
        return sum(generate.run(backend=backend, cache=False, **row).usage.completion_tokens for row in rows)

    batched_tps, batched_tokens = tokens_per_second(batched)
    single_tps, single_tokens = tokens_per_second(single)
    return {
        "map_rows": len(rows),
        "map_tokens_batched": batched_tokens,
        "map_tokens_single": single_tokens,
        "batch_speedup": batched_tps / single_tps,
    }


def requests(schema: dict[str, Any] | None, n: int = 32, budget: int = 32) -> list[GenerationRequest]:
    return [
        GenerationRequest(
            (Message("user", f"Tell me a long story about {TOPICS[i % 8]}."),), schema, Sampling(max_tokens=budget)
        )
        for i in range(n)
    ]


def decode_level(backend: TransformersBackend, rounds: int = 3) -> dict[str, Any]:
    """Free and constrained decoding take turns going first, ``rounds`` times; medians of tokens/s.

    The machine is shared and noisy: one pass of each gave batched ratios from 0.85 to 1.17
    for the same code, while the constraint's own work is about 2% of a batched step.
    """
    # The first batch of eight pays torch's one-time setup for that shape: keep it out of the figures.
    backend.generate_batch(requests(None, n=8, budget=4))
    ways = {
        "single": lambda r: sum(backend.generate(q).usage.completion_tokens for q in r[:16]),
        "batched": lambda r: sum(
            g.usage.completion_tokens for i in range(0, len(r), 8) for g in backend.generate_batch(r[i : i + 8])
        ),
    }
    rates: dict[str, list[float]] = {}
    for n in range(rounds):
        kinds = [("free", None), ("constrained", STORY)]
        for kind, schema in kinds if n % 2 == 0 else kinds[::-1]:
            reqs = requests(schema)
            for way, run in ways.items():
                rates.setdefault(f"{kind}_tps_{way}", []).append(tokens_per_second(lambda r=reqs, f=run: f(r))[0])
    figures: dict[str, Any] = {name: statistics.median(values) for name, values in rates.items()}
    figures["batch_speedup_decode"] = figures["free_tps_batched"] / figures["free_tps_single"]
    for way in ways:
        figures[f"constrained_vs_free_tps_{way}"] = figures[f"constrained_tps_{way}"] / figures[f"free_tps_{way}"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    backend = TransformersBackend(device=parser.parse_args().device)
    start = time.perf_counter()
    backend.loaded  # noqa: B018 - load before timing
    figures: dict[str, Any] = {"benchmark": "transformers", "device": backend.loaded.spec.device,
                               "load_s": time.perf_counter() - start}  # fmt: skip
    promptask.tasks.sentiment.run(text="warm up", backend=backend, cache=False)
    figures |= decode_level(backend)
    figures |= task_level(backend)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
