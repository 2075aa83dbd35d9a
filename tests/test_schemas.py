"""The user's JSON Schema is the contract: every construct accepted, every answer checked by a standard validator.

Each construct is loaded as a YAML task, then answered by a scripted backend
once validly and once not: promptask must accept exactly what the reference
validator (``jsonschema``) accepts, and what it returns must validate too.
The real model decodes the same constructs in tests/test_schemas_model.py.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import promptask
from promptask import OutputValidationError, ScriptedBackend, TaskDefinitionError
from promptask.schemas.decoding import decoding_schema
from promptask.schemas.typed import SchemaView
from promptask.tasks.loader import task_from_mapping
from promptask.tasks.result import to_jsonable


def reference(schema: Any) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    validator: jsonschema.protocols.Validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    return validator


def task_for(schema: Any, name: str = "probe") -> promptask.Task[..., Any]:
    return task_from_mapping(
        {"name": name, "inputs": {"q": "str"}, "output": schema, "template": "{{ q }}", "retries": 0}
    )


def answer(task: promptask.Task[..., Any], value: Any) -> Any:
    """What the task returns when the model answers ``value`` (wrapped as the task asks)."""
    reply = {"answer": value} if task.output.wrapped else value
    return task.run(q="x", backend=ScriptedBackend([json.dumps(reply)]), cache=False).output


NOTHING = object()  # the empty schema admits every value: there is no invalid one to try

# Each construct: a schema, a valid value and an invalid one.
CONSTRUCTS: dict[str, tuple[Any, Any, Any]] = {
    "top-level array": ({"type": "array", "items": {"type": "string"}, "minItems": 1}, ["a"], []),
    "top-level string": ({"type": "string", "pattern": "^[A-Z]{3}$"}, "ABC", "abc"),
    "top-level enum": ({"enum": ["red", "green", 3]}, 3, "blue"),
    "map only": ({"type": "object", "additionalProperties": {"type": "integer"}}, {"a": 1}, {"a": "x"}),
    "empty schema": ({}, {"anything": [1, None]}, NOTHING),
    "allOf with two members": (
        {
            "allOf": [
                {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]},
                {"properties": {"name": {"type": "string"}}, "required": ["name"]},
            ]
        },
        {"id": 1, "name": "a"},
        {"id": 1},
    ),
    "$ref to #/definitions": (
        {
            "definitions": {"code": {"type": "string", "maxLength": 3}},
            "type": "object",
            "properties": {"c": {"$ref": "#/definitions/code"}},
            "required": ["c"],
        },
        {"c": "ab"},
        {"c": "abcd"},
    ),
    "$ref to a deep pointer": (
        {
            "$defs": {"address": {"type": "object", "properties": {"country": {"type": "string", "maxLength": 2}}}},
            "type": "object",
            "properties": {"c": {"$ref": "#/$defs/address/properties/country"}},
            "required": ["c"],
        },
        {"c": "FR"},
        {"c": "France"},
    ),
    "$ref to a sibling property": (
        {
            "type": "object",
            "properties": {
                "billing": {"type": "object", "properties": {"zip": {"type": "string"}}, "required": ["zip"]},
                "shipping": {"$ref": "#/properties/billing"},
            },
            "required": ["shipping"],
        },
        {"shipping": {"zip": "1"}},
        {"shipping": {}},
    ),
    "recursion through #": (
        {
            "type": "object",
            "properties": {"name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#"}}},
            "required": ["name"],
        },
        {"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]},
        {"name": "a", "children": [{"children": []}]},
    ),
    "a chain of refs A -> B -> C -> A": (
        {
            "$defs": {
                "A": {"type": "object", "properties": {"b": {"$ref": "#/$defs/B"}}},
                "B": {"type": "object", "properties": {"c": {"$ref": "#/$defs/C"}}},
                "C": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}, "n": {"type": "integer"}}},
            },
            "$ref": "#/$defs/A",
        },
        {"b": {"c": {"a": {"b": {}}, "n": 1}}},
        {"b": {"c": {"n": "one"}}},
    ),
    "required without properties": ({"type": "object", "required": ["x"]}, {"x": 1}, {"y": 1}),
    "required naming an unlisted property": (
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a", "b"]},
        {"a": "x", "b": [1]},
        {"a": "x"},
    ),
    "dependentRequired": (
        {
            "type": "object",
            "properties": {"card": {"type": "string"}, "address": {"type": "string"}},
            "dependentRequired": {"card": ["address"]},
        },
        {"card": "4242", "address": "1 Main St"},
        {"card": "4242"},
    ),
    "prefixItems": (
        {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}], "items": False},
        [48.8, 2.3],
        [48.8, 2.3, 7],
    ),
    "format date-time": ({"type": "string", "format": "date-time"}, "2024-05-01T10:00:00Z", "tomorrow"),
    "format date": ({"type": "string", "format": "date"}, "2024-05-01", "2024-13-45"),
    "format email": ({"type": "string", "format": "email"}, "ada@example.com", "not an email"),
    "format uri": ({"type": "string", "format": "uri"}, "https://example.com/a", "no scheme here"),
    "format uuid": ({"type": "string", "format": "uuid"}, "123e4567-e89b-42d3-a456-426614174000", "123"),
    "const and enum of every JSON type": (
        {
            "type": "object",
            "properties": {
                "n": {"const": None},
                "f": {"const": 1.5},
                "l": {"const": [1, 2]},
                "o": {"const": {"x": 1}},
                "e": {"enum": [1, "one", None, True]},
            },
            "required": ["n", "f", "l", "o", "e"],
        },
        {"n": None, "f": 1.5, "l": [1, 2], "o": {"x": 1}, "e": True},
        {"n": None, "f": 1.5, "l": [2, 1], "o": {"x": 1}, "e": "two"},
    ),
    "property names that are keywords": (
        {
            "type": "object",
            "properties": {
                "type": {"type": "string"},
                "properties": {"type": "integer"},
                "additionalProperties": {"type": "boolean"},
                "allOf": {"type": "string"},
                "required": {"type": "array"},
            },
            "required": ["type", "properties", "additionalProperties", "allOf"],
        },
        {"type": "a", "properties": 1, "additionalProperties": True, "allOf": "b"},
        {"type": "a", "properties": "1", "additionalProperties": True, "allOf": "b"},
    ),
    "draft-04": (
        {
            "$schema": "http://json-schema.org/draft-04/schema#",
            "type": "object",
            "properties": {
                "n": {"type": "integer", "minimum": 0, "exclusiveMinimum": True},
                "t": {"type": "array", "items": [{"type": "string"}, {"type": "integer"}]},
            },
            "required": ["n"],
            "dependencies": {"t": ["n"]},
        },
        {"n": 1, "t": ["a", 2]},
        {"n": 0},
    ),
    "draft-07 definitions": (
        {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "definitions": {"s": {"type": "string"}},
            "type": "object",
            "properties": {"a": {"$ref": "#/definitions/s"}},
            "required": ["a"],
        },
        {"a": "x"},
        {"a": 1},
    ),
}


@pytest.mark.parametrize(("schema", "good", "bad"), CONSTRUCTS.values(), ids=CONSTRUCTS)
def test_every_construct_is_accepted_and_validated_as_the_standard_validator_does(
    schema: Any, good: Any, bad: Any
) -> None:
    task = task_for(schema)
    checker = reference(schema)
    assert checker.is_valid(good)
    output = answer(task, good)
    assert checker.is_valid(to_jsonable(output))
    assert to_jsonable(output) == good  # the same JSON back, nothing added
    if bad is not NOTHING:
        assert not checker.is_valid(bad)
        with pytest.raises(OutputValidationError):
            answer(task, bad)


def test_an_optional_string_is_never_null_in_decoding_or_validation() -> None:
    schema = {
        "type": "object",
        "properties": {"metadata": {"type": "object", "properties": {"username": {"type": "string"}}}},
    }
    task = task_for(schema)
    assert "null" not in json.dumps(task.json_schema())
    assert task.json_schema()["properties"]["metadata"]["properties"]["username"] == {"type": "string"}
    with pytest.raises(OutputValidationError, match="null is not of type"):
        answer(task, {"metadata": {"username": None}})
    result = answer(task, {"metadata": {}})
    assert result.metadata.username is None  # the typed view reads it as None...
    assert to_jsonable(result) == {"metadata": {}}  # ...and gives back exactly what was validated


def test_models_where_the_schema_maps_exactly_plain_json_elsewhere() -> None:
    typed = task_for({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]})
    assert isinstance(answer(typed, {"name": "Ada"}), SchemaView)
    for untyped in ("allOf with two members", "recursion through #", "prefixItems", "top-level array"):
        task = task_for(CONSTRUCTS[untyped][0])
        assert task.output_model is None
        assert answer(task, CONSTRUCTS[untyped][1]) == CONSTRUCTS[untyped][1]


def test_decoding_narrows_but_never_widens() -> None:
    open_object = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert decoding_schema(open_object)["additionalProperties"] is False  # closed: fewer values
    members = CONSTRUCTS["allOf with two members"][0]
    merged = {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
              "required": ["id", "name"], "additionalProperties": False}  # fmt: skip
    assert decoding_schema(members) == merged  # members merged first, then closed: neither forbids the other's key
    beside_ref = {"$ref": "#/$defs/a", "properties": {"b": {}}, "$defs": {"a": {"properties": {"c": {}}}}}
    inner = decoding_schema(beside_ref)["properties"]["answer"]
    assert "additionalProperties" not in json.dumps(inner)  # $ref beside properties: a conjunction


def write(folder: Path, text: str) -> Path:
    path = folder / "task.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize(
    ("output", "line", "message"),
    [
        ("  type: object\n  properties:\n    a: {type: strin}\n", 6, "output.properties.a.type: unknown JSON Schema"),
        ("  type: object\n  properties:\n    a: {type: string, maxLength: abc}\n", 6, "maxLength"),
        ("  type: string\n  pattern: '('\n", 5, "pattern"),
        ("  type: integer\n  minimum: [1]\n", 5, "minimum"),
        ("  type: object\n  required: 5\n", 5, "required"),
        ("  anyOf: 5\n", 4, "anyOf"),
    ],
)
def test_a_schema_that_is_not_json_schema_is_refused_with_file_line_and_keyword(
    tmp_path: Path, output: str, line: int, message: str
) -> None:
    path = write(tmp_path, "name: bad\ninputs: {q: str}\noutput:\n" + output)
    with pytest.raises(TaskDefinitionError, match=message) as info:
        promptask.load_task(path)
    assert info.value.source == str(path)
    assert info.value.line == line


# ---------------------------------------------------------------- property-based agreement with jsonschema

SIMPLE_PATTERNS = ["^[a-z]+$", "^[A-Z]{2,3}$", "^[0-9]{3}-[0-9]{4}$", "a", "^x"]
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=12),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
NAMES = st.sampled_from(["a", "b", "name", "type", "items", "required", "x-y", "model_id", "n"])


def leaf_schemas() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.fixed_dictionaries(
            {"type": st.just("string")},
            optional={
                "minLength": st.integers(0, 3),
                "maxLength": st.integers(3, 8),
                "pattern": st.sampled_from(SIMPLE_PATTERNS),
                "format": st.sampled_from(["date", "date-time", "uuid"]),
            },
        ),
        st.fixed_dictionaries(
            {"type": st.sampled_from(["integer", "number"])},
            optional={
                "minimum": st.integers(-5, 5),
                "maximum": st.integers(5, 50),
                "exclusiveMinimum": st.integers(-10, -6),
                "multipleOf": st.integers(1, 4),
            },
        ),
        st.fixed_dictionaries({"type": st.sampled_from(["boolean", "null"])}),
        st.fixed_dictionaries({"enum": st.lists(JSON_SCALARS, min_size=1, max_size=4)}),
        st.fixed_dictionaries({"const": JSON_VALUES}),
        st.fixed_dictionaries(
            {"type": st.lists(st.sampled_from(["string", "integer", "null"]), min_size=1, max_size=3, unique=True)}
        ),
        st.just({}),
    )


def compound(inner: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    properties = st.dictionaries(NAMES, inner, max_size=4)
    return st.one_of(
        st.builds(
            lambda p, r, extra: {"type": "object", "properties": p, "required": r, **extra},
            properties,
            st.lists(NAMES, max_size=3, unique=True),
            st.sampled_from(
                [
                    {},
                    {"additionalProperties": False},
                    {"additionalProperties": {"type": "integer"}},
                    {"dependentRequired": {"a": ["b"]}},
                ]
            ),
        ),
        st.builds(
            lambda i, lo, extra: {"type": "array", "items": i, "minItems": lo, **extra},
            inner,
            st.integers(0, 2),
            st.sampled_from([{}, {"maxItems": 3}, {"uniqueItems": True}]),
        ),
        st.builds(lambda a: {"anyOf": a}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda a: {"oneOf": a}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda a: {"allOf": a}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda a: {"not": a}, inner),
        st.builds(
            lambda items: {"type": "array", "prefixItems": items, "items": False},
            st.lists(inner, min_size=1, max_size=3),
        ),
    )


SCHEMAS = st.recursive(leaf_schemas(), compound, max_leaves=6)


def candidates(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    from promptask.schemas.examples import example_for

    try:
        example = example_for(schema)
    except (ValueError, RecursionError):
        return JSON_VALUES
    return st.one_of(st.just(example), JSON_VALUES)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), schema=SCHEMAS)
def test_promptask_accepts_exactly_what_jsonschema_accepts(data: st.DataObject, schema: dict[str, Any]) -> None:
    value = data.draw(candidates(schema))
    if isinstance(value, float) and not math.isfinite(value):
        return
    expected = reference(schema).is_valid(value)
    task = task_for(schema)
    try:
        output = answer(task, value)
    except OutputValidationError:
        assert not expected, f"promptask rejected a value jsonschema accepts: {value!r} under {schema}"
        return
    assert expected, f"promptask accepted a value jsonschema rejects: {value!r} under {schema}"
    returned = to_jsonable(output)
    assert reference(schema).is_valid(returned), f"what promptask returned breaks the schema: {returned!r}"
