"""The OpenAI-compatible backend without a server: request bodies, configuration, and a mock transport."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

import promptask
from promptask import resolve_backend
from promptask.backends.openai import OpenAIBackend


def test_strict_only_for_schemas_strict_mode_can_take() -> None:
    from promptask.backends import GenerationRequest, Message

    def closed(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
        return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}

    person = closed({"name": {"type": "string"}}, ["name"])
    cases = [
        (closed({"label": {"enum": ["a", "b"]}}, ["label"]), True),
        (closed({"people": {"type": "array", "items": person}}, ["people"]), True),
        (closed({"title": {"type": "string"}, "year": {"type": "integer"}}, ["title"]), False),  # optional year
        (closed({"people": {"type": "array", "items": {**person, "additionalProperties": True}}}, ["people"]), False),
    ]
    backend = OpenAIBackend("http://127.0.0.1:9/v1", "m")
    for schema, strict in cases:
        body = backend.request_body(GenerationRequest((Message("user", "x"),), schema))
        assert body["response_format"]["json_schema"]["strict"] is strict, schema
    assert backend.response_format == "json_schema_strict"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: OpenAIBackend("localhost:8080/v1", "m"), "base_url must be an http:// or https:// URL"),
        (lambda: OpenAIBackend("http://h/v1", "m", max_concurrency=0), "max_concurrency >= 1"),
        (lambda: OpenAIBackend("http://h/v1", "m", response_format="xml"), "response_format must be one of"),
        (lambda: resolve_backend("openai:"), "write openai:<base URL>#<model>"),
    ],
)
def test_configuration_mistakes_are_named(make: Any, message: str) -> None:
    with pytest.raises(promptask.ConfigurationError, match=re.escape(message)):
        make()


def test_a_mock_transport_stands_in_for_a_server() -> None:
    seen: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        reply = {"label": "positive" if "love" in body["messages"][-1]["content"] else "negative"}
        completion = {"choices": [{"message": {"content": json.dumps(reply)}, "finish_reason": "stop"}],
                      "usage": {"prompt_tokens": 12, "completion_tokens": 4}}  # fmt: skip
        return httpx.Response(200, json=completion)

    with OpenAIBackend("http://api.invalid/v1", "m", transport=httpx.MockTransport(answer)) as backend:
        result = promptask.tasks.sentiment.run(text="I love it", backend=backend, cache=False)
        rows = promptask.tasks.sentiment.map([{"text": "love"}, {"text": "hate"}], backend=backend, cache=False)
    assert result.output.label == "positive" and result.usage.prompt_tokens == 12
    assert [r.output.label for r in rows] == ["positive", "negative"]
    assert len(seen) == 3 and seen[0]["model"] == "m"
    assert seen[0]["response_format"]["json_schema"]["schema"] == promptask.tasks.sentiment.json_schema()
