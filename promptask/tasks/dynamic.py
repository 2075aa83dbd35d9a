"""Output schemas with values computed per call.

In a task's output schema, a mapping that holds ``$eval`` is replaced at call
time by the value of that Jinja expression, evaluated in the sandbox over the
inputs.  Statically, for the prompt, the output model and the cache digest,
it stands for the mapping without ``$eval``; when nothing is left, the keyword
that held it is dropped.  So::

    label:
      type: string
      enum: {$eval: labels}        # at call time: the labels given; statically: any string

constrains decoding to the labels of each call, while the system prompt, and
therefore the reusable KV prefix, stays the same from call to call.

Evaluated values shape decoding only: validation uses the static schema and
the task's ``checks``, so state the rule as a check too for backends that
cannot constrain decoding.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

import jinja2

from promptask.errors import TaskDefinitionError, TemplateError
from promptask.prompts.environment import environment, evaluate

__all__ = ["EVAL", "DynamicSchema", "has_evals", "static_part"]

EVAL = "$eval"


def has_evals(node: Any) -> bool:
    if isinstance(node, Mapping):
        return EVAL in node or any(has_evals(v) for v in node.values())
    if isinstance(node, list):
        return any(has_evals(item) for item in node)
    return False


def static_part(node: Any) -> Any:
    """The schema with every ``$eval`` removed (see the module docstring)."""
    if isinstance(node, list):
        return [static_part(item) for item in node]
    if not isinstance(node, Mapping):
        return node
    out = {}
    for key, value in node.items():
        if key == EVAL:
            continue
        part = static_part(value)
        if isinstance(value, Mapping) and EVAL in value and part == {}:
            continue  # `enum: {$eval: ...}` has no static meaning: drop the keyword
        out[key] = part
    return out


class DynamicSchema:
    """A schema with ``$eval`` nodes, compiled once; :meth:`resolve` gives the schema for one call."""

    def __init__(self, schema: Mapping[str, Any], *, search_path: tuple[str, ...]) -> None:
        self.source = json.dumps(schema, sort_keys=True)
        env = environment(search_path)
        self._expressions: dict[str, Callable[..., Any]] = {}
        self._collect(schema, env)
        self._schema = schema

    def _collect(self, node: Any, env: jinja2.Environment) -> None:
        if isinstance(node, list):
            for item in node:
                self._collect(item, env)
        elif isinstance(node, Mapping):
            if EVAL in node:
                expression = node[EVAL]
                if not isinstance(expression, str):
                    raise TaskDefinitionError(f"output: {EVAL} takes a Jinja expression string")
                try:
                    self._expressions[expression] = env.compile_expression(expression, undefined_to_none=False)
                except jinja2.TemplateSyntaxError as exc:
                    raise TaskDefinitionError(f"output: {EVAL} {expression!r}: {exc.message}") from None
            for key, value in node.items():
                if key != EVAL:
                    self._collect(value, env)

    def resolve(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        """The schema with this call's values in place of every ``$eval``."""
        resolved: dict[str, Any] = self._resolve(self._schema, variables)
        return resolved

    def _resolve(self, node: Any, variables: Mapping[str, Any]) -> Any:
        if isinstance(node, list):
            return [self._resolve(item, variables) for item in node]
        if not isinstance(node, Mapping):
            return node
        if EVAL in node:
            return self._evaluate(node[EVAL], variables)
        return {key: self._resolve(value, variables) for key, value in node.items()}

    def _evaluate(self, expression: str, variables: Mapping[str, Any]) -> Any:
        # Within the sandbox's render bounds (time, sizes), and no larger than a rendered prompt.
        value = evaluate(self._expressions[expression], variables, f"{EVAL} {expression!r}")
        try:
            return json.loads(json.dumps(value))
        except (TypeError, ValueError):
            raise TemplateError(f"{EVAL} {expression!r} gave {type(value).__name__}, not JSON data") from None


def schema_digest(schema: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()
