"""A compact outline of a JSON Schema, for prompts where the full text would not fit.

A backend that enforces the schema token by token needs the model to know
only the shape of the answer, not every constraint.  :func:`outline` writes
that shape in a TypeScript-like line, following local ``$ref`` pointers,
cut at a depth and a length:

>>> outline({"type": "object", "properties": {"name": {"type": "string"}, "tags": {"type": "array",
...          "items": {"enum": ["a", "b"]}}}, "required": ["name"]})
'{"name": string, "tags"?: ("a" | "b")[]}'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from promptask.schemas.refs import resolve_ref

__all__ = ["outline"]

MAX_DEPTH = 6


def outline(schema: Any, *, max_chars: int = 4000, root: Any = None) -> str:
    """The shape of ``schema`` in one line of at most about ``max_chars`` characters."""
    text = _Outline(schema if root is None else root, max_chars).shape(schema, 0, ())
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


class _Outline:
    def __init__(self, root: Any, budget: int) -> None:
        self.root = root
        self.budget = budget

    def shape(self, schema: Any, depth: int, refs: tuple[str, ...]) -> str:
        if schema is True or schema == {}:
            return "any"
        if not isinstance(schema, Mapping):
            return "never"
        if "$ref" in schema:
            ref = str(schema["$ref"])
            target = resolve_ref(self.root, ref)
            if target is None:
                return "any"
            if ref in refs:
                return _name_of(ref)  # recursion: name the type instead of expanding it again
            return self.shape(target, depth, (*refs, ref))
        if depth > MAX_DEPTH:
            return "…"
        if "const" in schema:
            return json.dumps(schema["const"], ensure_ascii=False)
        if "enum" in schema:
            return "(" + " | ".join(json.dumps(v, ensure_ascii=False) for v in schema["enum"][:12]) + ")"
        for word in ("anyOf", "oneOf"):
            if word in schema:
                return "(" + " | ".join(self.shape(option, depth + 1, refs) for option in schema[word][:8]) + ")"
        if "allOf" in schema:
            return " & ".join(self.shape(part, depth + 1, refs) for part in schema["allOf"][:8])
        kind = schema.get("type")
        if isinstance(kind, list):
            return " | ".join(self.shape({**schema, "type": k}, depth, refs) for k in kind)
        if kind == "object" or (kind is None and "properties" in schema):
            return self.object(schema, depth, refs)
        if kind == "array" or (kind is None and ("items" in schema or "prefixItems" in schema)):
            if "prefixItems" in schema:
                return "[" + ", ".join(self.shape(item, depth + 1, refs) for item in schema["prefixItems"]) + "]"
            item = self.shape(schema.get("items", True), depth + 1, refs)
            return f"({item})[]" if " " in item and not item.startswith("(") else f"{item}[]"
        if isinstance(kind, str):
            fmt = schema.get("format")
            return f"{kind} ({fmt})" if isinstance(fmt, str) else kind
        return "any"

    def object(self, schema: Mapping[str, Any], depth: int, refs: tuple[str, ...]) -> str:
        properties: Mapping[str, Any] = schema.get("properties") or {}
        required = set(schema.get("required") or ())
        parts = []
        for name, sub in properties.items():
            mark = "" if name in required else "?"
            parts.append(f"{json.dumps(name, ensure_ascii=False)}{mark}: {self.shape(sub, depth + 1, refs)}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping) or (not properties and extra is not False):
            parts.append(f"[key: string]: {self.shape(extra if isinstance(extra, Mapping) else True, depth + 1, refs)}")
        return "{" + ", ".join(parts) + "}"


def _name_of(ref: str) -> str:
    return ref.rstrip("/").rsplit("/", 1)[-1] or "root"
