"""Validating outputs against the user's JSON Schema, with a standard validator.

The schema is compiled once, for the draft it declares in ``$schema``
(2020-12 when it declares none; draft-04, -06, -07 and 2019-09 honoured), by
`jsonschema-rs <https://github.com/Stranger6667/jsonschema>`_, a standard
validator that runs the official JSON-Schema-Test-Suite.  It was chosen over
the pure-Python ``jsonschema`` by measurement (``bench/validators.py``):
50 to 100 times faster on task-sized outputs, which keeps validation a small
part of promptask's own sub-millisecond time per call.  Formats are asserted,
not merely annotated: ``date-time``, ``date``, ``time``, ``email``, ``uri``,
``uuid``, ``ipv4`` and the rest are checked.

>>> validator = SchemaValidator({"type": "object", "properties": {"n": {"type": "integer", "maximum": 3}}})
>>> validator.errors({"n": 7})
['n: 7 is greater than the maximum of 3']
>>> SchemaValidator({"type": "object", "properties": {"n": {"maxLength": "ten"}}})
Traceback (most recent call last):
...
promptask.errors.TaskDefinitionError: properties.n.maxLength: "ten" is not of type "integer"
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema_rs

from promptask.errors import TaskDefinitionError

__all__ = ["SchemaValidator"]

MAX_ERRORS = 5
"""Most errors reported for one output (the model reads them: a few concrete ones help most)."""
MAX_ERROR_CHARS = 300
_TYPES = ("string", "integer", "number", "boolean", "array", "object", "null")


class SchemaValidator:
    """A compiled JSON Schema: ``errors(instance)`` lists what is wrong, in words a model can act on.

    Raises :class:`~promptask.TaskDefinitionError` for a schema that is not
    valid JSON Schema; its ``path`` locates the offending keyword.
    """

    def __init__(self, schema: Mapping[str, Any] | bool) -> None:
        self.schema = schema
        try:
            self._validator = jsonschema_rs.validator_for(
                dict(schema) if isinstance(schema, Mapping) else schema, validate_formats=True
            )
        except jsonschema_rs.ValidationError as exc:
            path = tuple(exc.instance_path)
            where = ".".join(str(p) for p in path)
            message = exc.message.splitlines()[0]
            if path and path[-1] == "type" and not isinstance(exc.instance, (list, dict)):
                message = f"unknown JSON Schema type {exc.instance!r}; the types are {', '.join(_TYPES)}"
            raise TaskDefinitionError(f"{where}: {message}" if where else message, path=path) from None
        except (ValueError, jsonschema_rs.ReferencingError) as exc:
            raise TaskDefinitionError(str(exc).splitlines()[0]) from None

    def is_valid(self, instance: Any) -> bool:
        return bool(self._validator.is_valid(instance))

    def errors(self, instance: Any) -> list[str]:
        """What is wrong with ``instance`` (empty when it is valid), each as ``path: message``."""
        problems: list[str] = []
        for error in self._validator.iter_errors(instance):
            where = ".".join(str(p) for p in error.instance_path)
            message = error.message if len(error.message) <= MAX_ERROR_CHARS else error.message[:MAX_ERROR_CHARS] + "…"
            problems.append(f"{where}: {message}" if where else message)
            if len(problems) == MAX_ERRORS:
                break
        return problems
