"""Checks on the parts of a task definition that would otherwise fail late, or quietly.

A JSON Schema keyword with a value of the wrong kind (``maxLength: abc``,
``required: 5``, ``pattern: '('``) would surface as a pydantic or
``TypeError`` traceback from deep inside the schema compiler; here it is a
:class:`~promptask.TaskDefinitionError` whose ``path`` locates the keyword,
so the YAML loader can name the line.  Input names are checked because
pydantic silently drops some (``_private``, ``model_config``) and a
template cannot use others (``user-name`` reads as ``user - name``).

>>> check_schema({"type": "string", "maxLength": "abc"}, ("output",))
Traceback (most recent call last):
...
promptask.errors.TaskDefinitionError: output.maxLength: must be an integer >= 0, got 'abc'
"""

from __future__ import annotations

import functools
import keyword
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import SchemaError, SchemaValidator, core_schema

from promptask.errors import TaskDefinitionError

__all__ = ["check_default", "check_input_name", "check_schema"]

_COUNTS = frozenset({"maxLength", "minLength", "maxItems", "minItems", "maxProperties", "minProperties",
                     "maxContains", "minContains"})  # fmt: skip
_NUMBERS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"})
_SCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
_SCHEMA_MAPS = frozenset({"properties", "$defs", "definitions", "patternProperties", "dependentSchemas"})
_SCHEMAS = frozenset({"not", "additionalProperties", "items", "contains", "if", "then", "else",
                      "propertyNames", "unevaluatedProperties", "unevaluatedItems", "additionalItems"})  # fmt: skip
_TEXTS = frozenset({"title", "description", "$ref", "format", "$comment", "$id", "$schema", "$anchor"})
_EVAL = "$eval"
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return _integer(value) or isinstance(value, float)


def _fail(path: tuple[str | int, ...], message: str) -> TaskDefinitionError:
    where = ".".join(str(p) for p in path)
    return TaskDefinitionError(f"{where}: {message}", path=path)


def check_schema(schema: Any, path: tuple[str | int, ...]) -> None:
    """Raise TaskDefinitionError for the first keyword of ``schema`` with a value of the wrong kind.

    A mapping holding ``$eval`` is computed per call, so it is not checked here.
    The walk uses an explicit stack: a schema is data from a file, not to be trusted to be shallow.
    """
    pending: list[tuple[Any, tuple[str | int, ...]]] = [(schema, path)]
    while pending:
        node, where = pending.pop()
        if isinstance(node, bool):
            continue
        if not isinstance(node, Mapping):
            raise _fail(where, f"a schema must be a mapping (or true/false), got {node!r}")
        if _EVAL in node:
            continue
        for key, value in node.items():
            at = (*where, key)
            if isinstance(value, Mapping) and _EVAL in value:
                continue
            pending.extend(_check_keyword(key, value, at))


def _check_keyword(key: Any, value: Any, at: tuple[str | int, ...]) -> list[tuple[Any, tuple[str | int, ...]]]:
    """Check one keyword; the subschemas under it, to check next.  (``type`` is the schema compiler's to check.)"""
    if key in _COUNTS and not (_integer(value) and value >= 0):
        raise _fail(at, f"must be an integer >= 0, got {value!r}")
    if key in _NUMBERS:
        allowed = _number(value) or (key.startswith("exclusive") and isinstance(value, bool))  # draft 4 used booleans
        if not allowed or (key == "multipleOf" and not value > 0):
            raise _fail(at, f"must be a number{' > 0' if key == 'multipleOf' else ''}, got {value!r}")
    elif key == "pattern":
        if not isinstance(value, str):
            raise _fail(at, f"must be a regular expression (text), got {value!r}")
        problem = _pattern_problem(value)
        if problem:
            raise _fail(at, f"{value!r} is not a valid regular expression: {problem}")
    elif key == "required":
        if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
            raise _fail(at, f"must be a list of property names, got {value!r}")
    elif key == "enum":
        if not isinstance(value, list) or not value:
            raise _fail(at, f"must be a non-empty list of values, got {value!r}")
    elif key == "uniqueItems":
        if not isinstance(value, bool):
            raise _fail(at, f"must be true or false, got {value!r}")
    elif key in _TEXTS:
        if not isinstance(value, str):
            raise _fail(at, f"must be text, got {value!r}")
    elif key in _SCHEMA_LISTS:
        if not isinstance(value, list) or not value:
            raise _fail(at, f"must be a non-empty list of schemas, got {value!r}")
        return [(item, (*at, i)) for i, item in enumerate(value)]
    elif key in _SCHEMA_MAPS:
        if not isinstance(value, Mapping):
            raise _fail(at, f"must be a mapping of names to schemas, got {value!r}")
        return [(item, (*at, name)) for name, item in value.items()]
    elif key in _SCHEMAS:
        if key == "items" and isinstance(value, list):  # the older tuple form
            return [(item, (*at, i)) for i, item in enumerate(value)]
        if not isinstance(value, (Mapping, bool)):
            raise _fail(at, f"must be a schema (a mapping, or true/false), got {value!r}")
        return [(value, at)]
    return []


@functools.lru_cache(maxsize=256)
def _pattern_problem(pattern: str) -> str | None:
    """Why the regex engine that validates strings (pydantic's) refuses ``pattern``, if it does."""
    try:
        SchemaValidator(core_schema.str_schema(pattern=pattern))
    except SchemaError as exc:
        return str(exc).splitlines()[-1].strip()
    return None


def check_input_name(name: Any) -> str | None:
    """Why ``name`` cannot be an input name, or None.

    >>> check_input_name("user-name")
    "'user-name' is not a name templates can use: use letters, digits and _, starting with a letter"
    """
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name) or keyword.iskeyword(name):
        return f"{name!r} is not a name templates can use: use letters, digits and _, starting with a letter"
    if name.startswith("model_") or hasattr(BaseModel, name):
        return f"{name!r} is reserved by pydantic, which holds the inputs; rename it"
    return None


def check_default(tp: Any, default: Any) -> str | None:
    """Why ``default`` is not a valid value of ``tp``, or None."""
    try:
        TypeAdapter(tp).validate_python(default, strict=False)
    except ValidationError as exc:
        first = exc.errors()[0]
        return f"default {default!r} is not valid: {first['msg']}"
    except (TypeError, ValueError):
        # pydantic could not apply a constraint to the value at all (``minimum`` on a nullable
        # integer's null): not a verdict on the default, which pydantic itself never validates.
        return None
    return None
