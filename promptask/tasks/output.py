"""A task's output: the schema the model answers in, and how an answer is checked and returned.

Two kinds, by how the output was declared:

* :class:`ModelOutput`, for Python types (a pydantic model, or a plain type
  such as ``str`` or ``Literal[...]`` wrapped as ``{"answer": ...}``): the
  model's JSON Schema is the contract and pydantic validates it.
* :class:`SchemaOutput`, for a JSON Schema (every YAML task with an
  ``output:`` mapping): the user's schema is the contract.  A standard
  validator checks each answer against it, decoding follows a schema that
  admits the same values or fewer (:mod:`promptask.schemas.decoding`), and
  the caller gets a typed view where the schema has an exact one
  (:mod:`promptask.schemas.typed`), else the validated JSON value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from promptask.errors import TaskDefinitionError
from promptask.schemas.decoding import ANSWER, decoding_schema, is_object_schema
from promptask.schemas.typed import typed_view
from promptask.schemas.validation import SchemaValidator
from promptask.tasks.schema import ANSWER_FIELD, camel_case, is_model, json_schema, output_model_for, tidy

__all__ = ["Checked", "ModelOutput", "SchemaOutput", "TaskOutput"]


@dataclass(frozen=True, slots=True)
class Checked:
    """A valid answer: ``stored`` is the JSON kept in the cache, ``value`` what the caller gets,
    ``data`` the JSON a task's ``checks`` template sees as ``output``."""

    stored: Any
    value: Any
    data: Any


class TaskOutput:
    """What every output kind offers the task."""

    schema: dict[str, Any]
    """The JSON Schema the model answers in (for the prompt and for decoding)."""
    model: type[BaseModel] | None
    """The pydantic model of the answer, or ``None`` when answers are plain JSON values."""
    output_type: Any
    """The type of what the caller gets."""
    wrapped: bool
    """Whether the model answers ``{"answer": ...}`` around the value."""
    contract: Any
    """What the cache digest records of the declaration."""

    def check(self, data: Any) -> Checked:
        """Validate parsed JSON; raises ``ValueError`` with a message meant for the model."""
        raise NotImplementedError

    def request_schema(self, resolved: Mapping[str, Any]) -> dict[str, Any]:
        """The decoding schema for one call, from the schema with its ``$eval`` values filled in."""
        raise NotImplementedError


class ModelOutput(TaskOutput):
    """An output declared as a Python type: pydantic validates, as the type says."""

    def __init__(self, output_type: Any, *, name: str) -> None:
        self.output_type = output_type
        self.model, self.wrapped = output_model_for(output_type, name=name)
        self.schema = json_schema(self.model)
        self.contract = self.schema

    def check(self, data: Any) -> Checked:
        assert self.model is not None
        try:
            model = self.model.model_validate(data)
        except ValidationError as exc:
            raise ValueError(describe_validation_error(exc)) from None
        stored = model.model_dump(mode="json", by_alias=True)
        return Checked(stored, getattr(model, ANSWER_FIELD) if self.wrapped else model, stored)

    def request_schema(self, resolved: Mapping[str, Any]) -> dict[str, Any]:
        schema: dict[str, Any] = tidy(resolved)
        return schema


class SchemaOutput(TaskOutput):
    """An output declared as a JSON Schema: the schema is the contract (see the module docstring).

    ``view`` is a pydantic model to return instead of the generated typed view
    (the built-in tasks declare theirs); it must read every value the schema
    accepts.
    """

    def __init__(self, schema: Any, *, name: str, view: Any = None) -> None:
        if schema is False:
            raise TaskDefinitionError("output: the schema `false` admits no value")
        self.contract = schema
        self.validator = SchemaValidator(schema)
        self.wrapped = not is_object_schema(schema)
        self.schema = decoding_schema(schema, wrap=self.wrapped)
        if view is not None and not is_model(view):
            raise TaskDefinitionError(f"output: the type given for a JSON Schema output must be a pydantic model, "
                                      f"not {view!r}")  # fmt: skip
        if view is None and not self.wrapped:
            view = typed_view(schema, name=camel_case(name, suffix="Output"))
        self.model = view
        self.output_type = self.model if self.model is not None else Any

    def check(self, data: Any) -> Checked:
        value = data
        if self.wrapped:
            if not isinstance(data, Mapping) or ANSWER not in data:
                raise ValueError(f'reply with a JSON object {{"{ANSWER}": ...}} holding the answer')
            value = data[ANSWER]
        problems = self.validator.errors(value)
        if problems:
            raise ValueError("; ".join(problems))
        typed: Any = value
        if self.model is not None:
            try:
                typed = self.model.model_validate(value)
            except ValidationError as exc:  # a view stricter than the schema: say so rather than loop
                raise ValueError(describe_validation_error(exc)) from None
        return Checked(data, typed, value)

    def request_schema(self, resolved: Mapping[str, Any]) -> dict[str, Any]:
        return decoding_schema(resolved, wrap=self.wrapped)


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)
