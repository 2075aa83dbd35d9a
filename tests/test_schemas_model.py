"""The user's JSON Schema on the real default model (SmolLM2-135M-Instruct, CPU).

Every construct of tests/test_schemas.py is decoded under its own schema; what
comes back must pass the reference validator.  Then the free-string case
(no attempt may run to the token limit through a loop), a pattern decoding
cannot follow, and a schema too large to paste into the prompt.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
from test_schemas import CONSTRUCTS, reference

import promptask
from promptask import OutputValidationError
from promptask.backends.llamacpp import LlamaCppBackend
from promptask.backends.repetition import JsonWatch
from promptask.tasks.loader import task_from_mapping
from promptask.tasks.result import to_jsonable

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backend() -> LlamaCppBackend:
    return LlamaCppBackend()


def example_task(schema: Any, *, max_tokens: int = 160, retries: int = 2, **options: Any) -> promptask.Task[..., Any]:
    return task_from_mapping(
        {
            "name": "example",
            "inputs": {"what": "str"},
            "output": schema,
            "template": "Write a realistic example of {{ what }}.",
            "max_tokens": max_tokens,
            "retries": retries,
            **options,
        }
    )


@pytest.mark.parametrize(("schema", "good", "bad"), CONSTRUCTS.values(), ids=CONSTRUCTS)
def test_every_construct_decodes_to_output_the_standard_validator_accepts(
    backend: LlamaCppBackend, schema: Any, good: Any, bad: Any
) -> None:
    task = example_task(schema)
    result = task.run(what=json.dumps(good), backend=backend, cache=False)
    output = to_jsonable(result.output)
    assert reference(schema).is_valid(output), f"{output!r} breaks {schema}"


FREE_STRINGS = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string"},
        "client_token": {"type": "string"},
        "customer": {"type": "object", "properties": {"name": {"type": "string"}, "note": {"type": "string"}}},
        "summary": {"type": "string"},
    },
    "required": ["order_id", "client_token", "customer", "summary"],
}

ORDERS = [
    "a refund request for a broken kettle",
    "an order of three blue notebooks for an office",
    "a late pizza delivery complaint",
    "a subscription upgrade for a music service",
    "a hotel booking for two nights in Lyon",
    "a replacement part for a bicycle",
]


def test_free_strings_never_run_to_the_token_limit_through_a_loop(backend: LlamaCppBackend) -> None:
    task = example_task(FREE_STRINGS, max_tokens=200, retries=2)
    stopped: list[bool] = []
    for order in ORDERS:
        try:
            result = task.run(what=order, backend=backend, cache=False)
            attempts = result.attempts
        except OutputValidationError as exc:
            attempts = tuple(exc.attempts)
        for attempt in attempts:
            if attempt.finish_reason == "length":  # a long answer may reach the limit; a loop must not
                assert JsonWatch().feed(attempt.raw) is None, f"a loop ran to the token limit: {attempt.raw[-80:]!r}"
            stopped.append(attempt.finish_reason == "repetition")
    print(f"attempts stopped as loops: {sum(stopped)} of {len(stopped)}")


def test_a_pattern_decoding_cannot_follow_is_validated_afterwards_with_one_warning(backend: LlamaCppBackend) -> None:
    schema = {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^(?!XX)[A-Z]{2}[0-9]{2}$"}},
        "required": ["code"],
    }
    task = example_task(schema, max_tokens=32, retries=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = [{"what": "a product code such as AB12"}]
        outcome = task.map(rows, backend=backend, cache=False, on_error="return")[0]
    if isinstance(outcome, OutputValidationError):  # the model may miss the pattern: an error then, never "valid"
        assert all("does not match" in (a.error or "") for a in outcome.attempts)
    else:
        assert reference(schema).is_valid(to_jsonable(outcome.output))
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1
    assert "field code" in messages[0]
    assert "cannot be enforced while decoding" in messages[0]


def big_schema(fields: int) -> dict[str, Any]:
    """A configuration document with many described fields: thousands of tokens as text."""
    properties = {
        f"setting_{i}": {
            "type": "string",
            "description": f"Setting number {i}: a long human description of what this option controls, "
            "when to change it, and what its default means for the deployment as a whole.",
            "maxLength": 12,
        }
        for i in range(fields)
    }
    return {"type": "object", "properties": properties, "required": ["setting_0", "setting_1"], "maxProperties": 3}


def test_a_schema_larger_than_the_context_share_is_shown_as_an_outline(backend: LlamaCppBackend) -> None:
    small_context = LlamaCppBackend(n_ctx=2048)
    schema = big_schema(60)
    task = example_task(schema, max_tokens=64, retries=1)
    full = task.format_text()
    assert len(full) > 8000  # far more than a quarter of a 2048-token context
    shown = task.prepare(task.validate_inputs(("a web server",), {}), small_context.info()).messages[0].content
    assert "shaped like this" in shown
    assert len(shown) < len(full) / 3
    assert small_context.count_tokens(list(task.prepare(task.validate_inputs(("x",), {}),
                                                        small_context.info()).messages)) < 2048  # fmt: skip
    result = task.run(what="a web server", backend=small_context, cache=False)
    assert reference(schema).is_valid(to_jsonable(result.output))
