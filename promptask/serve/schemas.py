"""What the HTTP API speaks: each task's input and output JSON Schemas, answers and errors as JSON.

Nothing here needs a web framework, so the wire format can be read (and
tested) on its own.

>>> import promptask
>>> task = promptask.tasks.sentiment
>>> output_schema(task)["properties"]["label"]["enum"]
['positive', 'negative', 'neutral']
>>> sorted(result_schema("#/components/schemas/SentimentOutput")["required"])
['attempts', 'cached', 'confidence', 'latency_s', 'output', 'usage']
>>> error_body(promptask.InputValidationError("sentiment", [("text", "missing required input")]))
{'error': {'status': 422, 'type': 'invalid_input', 'message': "invalid input for task 'sentiment': text: \
missing required input", 'fields': [{'field': 'text', 'message': 'missing required input'}]}}
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from promptask.errors import (
    BackendError,
    ConfigurationError,
    InputValidationError,
    OutputValidationError,
    PromptaskError,
    TemplateError,
    UserError,
)
from promptask.tasks.result import TaskResult, to_jsonable
from promptask.tasks.schema import ANSWER_FIELD, camel_case
from promptask.tasks.task import Task

__all__ = [
    "ATTEMPT_SCHEMA",
    "ERROR_SCHEMA",
    "USAGE_SCHEMA",
    "ApiError",
    "component_names",
    "error_body",
    "input_schema",
    "missing_dependency",
    "output_schema",
    "relocate",
    "result_body",
    "result_schema",
    "status_of",
    "to_api_error",
    "wraps_output",
]


def missing_dependency(exc: ImportError) -> ConfigurationError:
    """The one-line error for a missing web-server package, naming the extra that installs it."""
    if (exc.name or "").startswith("promptask"):
        raise exc  # not a missing dependency
    return ConfigurationError(
        f"promptask serve needs {exc.name or 'fastapi and uvicorn'}, which is not installed: "
        "pip install 'promptask[serve]'"
    )


class ApiError(Exception):
    """An HTTP error answer: a status, a machine-readable ``type``, a message and extra JSON fields."""

    def __init__(
        self, status: int, type: str, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": {"status": self.status, "type": self.type, "message": self.message, **self.extra}}


def wraps_output(task: Task[..., Any]) -> bool:
    """Whether the task's answer is a plain value wrapped as ``{"answer": ...}`` for the model."""
    return task.output_model is not task.output_type


def input_schema(task: Task[..., Any]) -> dict[str, Any]:
    """The JSON Schema of a request body: the task's input model."""
    return task.input_model.model_json_schema()


def output_schema(task: Task[..., Any]) -> dict[str, Any]:
    """The JSON Schema of ``output`` in an answer: the schema of ``TaskResult.output``.

    That is the task's output schema, or for a plain output type (``str``,
    ``Literal``...) the schema of the value inside ``{"answer": ...}``, since
    the answer carries the plain value as ``task.run`` returns it.
    """
    schema = task.json_schema()
    if not wraps_output(task):
        return schema
    inner: dict[str, Any] = dict(schema["properties"][ANSWER_FIELD])
    if "$defs" in schema:
        inner["$defs"] = schema["$defs"]
    return inner


def component_names(task: Task[..., Any]) -> dict[str, str]:
    """The OpenAPI component names of a task's schemas."""
    base = camel_case(task.name, suffix="")
    return {kind: f"{base}{kind}" for kind in ("Input", "Output", "Result", "BatchResult")}


def relocate(schema: Any, pointer: str) -> Any:
    """A copy of ``schema`` whose local ``#/...`` references point below ``pointer`` in another document.

    OpenAPI resolves ``$ref`` against the whole document, so a schema placed at
    ``#/components/schemas/X`` keeps its ``$defs`` and its ``#/$defs/Y``
    references become ``#/components/schemas/X/$defs/Y``.
    """
    if isinstance(schema, dict):
        moved = {key: relocate(value, pointer) for key, value in schema.items()}
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            moved["$ref"] = pointer + ref[1:]
        return moved
    if isinstance(schema, list):
        return [relocate(item, pointer) for item in schema]
    return copy.deepcopy(schema)


USAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "prompt_tokens": {"type": "integer", "minimum": 0},
        "completion_tokens": {"type": "integer", "minimum": 0},
        "cached_tokens": {"type": "integer", "minimum": 0},
    },
    "required": ["prompt_tokens", "completion_tokens", "cached_tokens"],
}

ATTEMPT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One generation: its raw text and, if it was rejected, why.",
    "properties": {
        "raw": {"type": "string"},
        "error": {"type": ["string", "null"]},
        "finish_reason": {"type": "string"},
        "usage": {"$ref": "#/components/schemas/Usage"},
        "timings": {"type": "object", "additionalProperties": {"type": "number"}},
    },
    "required": ["raw", "error", "finish_reason", "usage", "timings"],
}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "status": {"type": "integer"},
                "type": {"type": "string"},
                "message": {"type": "string"},
                "fields": {
                    "type": "array",
                    "description": "For invalid inputs: each field and what is wrong with it.",
                    "items": {
                        "type": "object",
                        "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                        "required": ["field", "message"],
                    },
                },
                "attempts": {
                    "type": "array",
                    "description": "For outputs that never validated: every attempt.",
                    "items": {"$ref": "#/components/schemas/Attempt"},
                },
                "usage": {"$ref": "#/components/schemas/Usage"},
            },
            "required": ["status", "type", "message"],
        }
    },
    "required": ["error"],
}


def result_schema(output_ref: str) -> dict[str, Any]:
    """The JSON Schema of one answer, whose ``output`` is the schema at ``output_ref``."""
    return {
        "type": "object",
        "properties": {
            "output": {"$ref": output_ref},
            "cached": {"type": "boolean"},
            "attempts": {"type": "array", "items": {"$ref": "#/components/schemas/Attempt"}},
            "latency_s": {"type": "number"},
            "usage": {"$ref": "#/components/schemas/Usage"},
            "confidence": {
                "type": ["number", "null"],
                "description": "Probability of the output's scored fields; null where the backend cannot score.",
            },
        },
        "required": ["output", "cached", "attempts", "latency_s", "usage", "confidence"],
    }


def result_body(result: TaskResult[Any]) -> dict[str, Any]:
    """One answer as JSON data."""
    return {
        "output": to_jsonable(result.output),
        "cached": result.cached,
        "attempts": [attempt.to_dict() for attempt in result.attempts],
        "latency_s": result.latency_s,
        "usage": result.usage.to_dict(),
        "confidence": result.confidence,
    }


def status_of(exc: PromptaskError) -> tuple[int, str]:
    """The HTTP status and error type for one of promptask's errors."""
    if isinstance(exc, InputValidationError):
        return 422, "invalid_input"
    if isinstance(exc, TemplateError):
        return 422, "template_error"
    if isinstance(exc, OutputValidationError):
        return 422, "output_validation"
    if isinstance(exc, BackendError):
        return 502, "backend_error"
    if isinstance(exc, UserError):
        return 422, "user_error"
    return 500, "execution_error"


def to_api_error(exc: PromptaskError) -> ApiError:
    """The HTTP error for one of promptask's errors (fields or attempts included)."""
    status, kind = status_of(exc)
    extra: dict[str, Any] = {}
    if isinstance(exc, InputValidationError):
        extra["fields"] = [{"field": field, "message": message} for field, message in exc.errors]
    if isinstance(exc, OutputValidationError):
        extra["attempts"] = [attempt.to_dict() for attempt in exc.attempts]
        extra["usage"] = exc.usage.to_dict()
    return ApiError(status, kind, str(exc), **extra)


def error_body(exc: PromptaskError) -> dict[str, Any]:
    """The JSON answer for one of promptask's errors."""
    return to_api_error(exc).body()
