"""How the output validator was chosen: `jsonschema` against `jsonschema-rs` on task-sized outputs.

Times compiling a validator once and validating one output, on schemas like the
ones tasks use (a flat label, a nested record with formats, a recursive tree),
for a valid and an invalid output.  Prints one JSON object of medians in
microseconds.  `jsonschema` comes with the test extra.

    python bench/validators.py
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import jsonschema
import jsonschema_rs

LABEL = {
    "type": "object",
    "properties": {"label": {"enum": ["positive", "negative", "neutral"]}},
    "required": ["label"],
}
RECORD = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "email": {"type": "string", "format": "email"},
        "created": {"type": "string", "format": "date-time"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 5, "uniqueItems": True},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
            "required": ["city"],
        },
        "score": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["id", "email", "created", "tags"],
}
NODE = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
    "required": ["name"],
}
TREE = {"$defs": {"node": NODE}, "$ref": "#/$defs/node"}
CASES: dict[str, tuple[dict[str, Any], Any, Any]] = {
    "label": (LABEL, {"label": "positive"}, {"label": "great"}),
    "record": (
        RECORD,
        {
            "id": "123e4567-e89b-42d3-a456-426614174000",
            "email": "a@b.co",
            "created": "2024-01-01T12:00:00Z",
            "tags": ["x", "y"],
            "address": {"city": "Lyon", "zip": "69001"},
            "score": 0.5,
        },
        {"id": "nope", "email": "a@b.co", "created": "yesterday", "tags": ["x", "x"], "score": 2},
    ),
    "tree": (TREE, {"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]}, {"children": [{}]}),
}


def median_us(fn: Callable[[], object], n: int = 2000) -> float:
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(samples)


def measure(schema: dict[str, Any], good: Any, bad: Any) -> dict[str, dict[str, float]]:
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    py = jsonschema.Draft202012Validator(schema, format_checker=checker)
    rs = jsonschema_rs.validator_for(schema, validate_formats=True)
    if not (py.is_valid(good) and rs.is_valid(good)) or py.is_valid(bad) or rs.is_valid(bad):
        raise SystemExit(f"the validators disagree on {schema}")
    return {
        "compile_us": {
            "jsonschema": median_us(lambda: jsonschema.Draft202012Validator(schema, format_checker=checker), 200),
            "jsonschema_rs": median_us(lambda: jsonschema_rs.validator_for(schema, validate_formats=True), 200),
        },
        "valid_us": {
            "jsonschema": median_us(lambda: list(py.iter_errors(good))),
            "jsonschema_rs": median_us(lambda: list(rs.iter_errors(good))),
        },
        "invalid_us": {
            "jsonschema": median_us(lambda: list(py.iter_errors(bad)), 500),
            "jsonschema_rs": median_us(lambda: list(rs.iter_errors(bad)), 500),
        },
    }


def main() -> None:
    print(json.dumps({name: measure(*case) for name, case in CASES.items()}, indent=1))


if __name__ == "__main__":
    main()
