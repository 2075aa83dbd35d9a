"""promptask's own time per call: render, hash, parse, validate, cache.

The backend answers instantly with a fixed valid reply, so every microsecond
measured is the framework's.  Prints one JSON object of medians in
microseconds, for a task with a 10-field output model:

    python bench/overhead.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field

import promptask
from promptask.backends import Generation, GenerationRequest, SchemaEnforcement, Usage


class Review(BaseModel):
    sentiment: Literal["positive", "negative", "neutral"]
    score: float = Field(ge=0, le=1)
    stars: int = Field(ge=1, le=5)
    summary: str = Field(max_length=200)
    keywords: list[str] = Field(max_length=5)
    language: str
    spam: bool
    product: str
    aspects: list[str]
    reply_needed: bool


REPLY = Review(
    sentiment="positive", score=0.9, stars=5, summary="Great battery.", keywords=["battery", "screen"],
    language="en", spam=False, product="phone", aspects=["battery"], reply_needed=False,
).model_dump_json()  # fmt: skip


class InstantBackend:
    """Answers every request at once with the same valid reply."""

    name = "instant"
    schema_enforcement = SchemaEnforcement.TOKENS

    def __init__(self) -> None:
        self._generation = Generation(text=REPLY, usage=Usage(100, 40))

    def fingerprint(self) -> str:
        return "instant-v1"

    def generate(self, request: GenerationRequest) -> Generation:
        return self._generation


@promptask.task(
    template="Analyse this product review.\nReview: {{ review }}\nShop: {{ shop }}",
    system="You analyse product reviews.",
    examples=[{"input": {"review": "Love it", "shop": "A"}, "output": json.loads(REPLY)}],
)
def analyse(review: str, shop: str) -> Review: ...


def median_us(fn: Callable[[int], object], calls: int) -> float:
    samples = []
    for i in range(calls):
        start = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    calls = parser.parse_args().calls
    backend = InstantBackend()
    request = GenerationRequest(messages=analyse.render(review="r", shop="s"))

    with tempfile.TemporaryDirectory() as cache_dir:
        promptask.configure(cache_dir=cache_dir)
        for i in range(200):  # warm up imports, pydantic and SQLite
            analyse.run(review=f"warm {i}", shop="s", backend=backend, cache=False)
        figures = {
            "backend_only_us": median_us(lambda i: backend.generate(request), calls),
            "render_only_us": median_us(lambda i: analyse.render(review=f"review {i}", shop="s"), calls),
            "cache_off_us": median_us(
                lambda i: analyse.run(review=f"review {i}", shop="s", backend=backend, cache=False), calls
            ),
            "cache_miss_us": median_us(lambda i: analyse.run(review=f"miss {i}", shop="s", backend=backend), calls),
            "cache_hit_us": median_us(lambda i: analyse.run(review=f"miss {i}", shop="s", backend=backend), calls),
        }
        hit = analyse.run(review="miss 0", shop="s", backend=backend)
        assert hit.cached, "the cache-hit figure must come from hits"
    result = {
        "benchmark": "overhead",
        "output_fields": len(Review.model_fields),
        "calls": calls,
        **{k: round(v, 1) for k, v in figures.items()},
        "goal_us": 1000,
        "python": sys.version.split()[0],
        "promptask": promptask.__version__,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
