"""A small valid instance of a JSON Schema, for testing tasks without a model.

>>> example_for({"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}},
...              "required": ["n"]})
{'n': 3}
>>> example_for({"type": "string", "format": "email"})
'user@example.com'
>>> example_for({"type": "array", "prefixItems": [{"type": "number"}, {"const": "x"}], "minItems": 2})
[0, 'x']

The value is built from the schema's own constraints (types, ``const`` and
``enum``, bounds, lengths, formats, simple patterns, required properties and
``dependentRequired``, ``prefixItems``, local ``$ref`` pointers, ``allOf``,
``anyOf``/``oneOf``), preferring the smallest choice.  It is not a solver:
:func:`example_for` raises ``ValueError`` when it cannot find a value, and
callers that need certainty validate the result.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["example_for"]

_FORMATS = {
    "date-time": "2024-01-01T12:00:00Z",
    "date": "2024-01-01",
    "time": "12:00:00Z",
    "duration": "P1D",
    "email": "user@example.com",
    "idn-email": "user@example.com",
    "hostname": "example.com",
    "idn-hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "iri": "https://example.com/",
    "iri-reference": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "123e4567-e89b-42d3-a456-426614174000",
    "json-pointer": "/a",
    "relative-json-pointer": "0",
    "regex": "a",
}
_MAX_DEPTH = 24
_FILLERS = ("a", "b", "c", "d", "e", "f", "g", "h")


def example_for(schema: Any, root: Any = None) -> Any:
    """A small JSON value valid under ``schema`` (``root`` resolves ``$ref``; default: ``schema`` itself)."""
    return _Examples(schema if root is None else root).value(schema, 0, 0)


class _Examples:
    def __init__(self, root: Any) -> None:
        self.root = root

    def value(self, schema: Any, depth: int, variant: int) -> Any:
        if depth > _MAX_DEPTH:
            raise ValueError("the schema nests too deeply for an example")
        if schema is True or schema is None:
            return _plain(variant)
        if schema is False:
            raise ValueError("the schema `false` has no valid value")
        if not isinstance(schema, Mapping):
            raise ValueError(f"not a schema: {schema!r}")
        schema = self.flatten(schema, depth)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            values = schema["enum"]
            return values[variant % len(values)]
        for combinator in ("anyOf", "oneOf"):
            if combinator in schema:
                return self.first_option(schema, combinator, depth, variant)
        kind = _kind(schema)
        if kind == "object":
            return self.object(schema, depth)
        if kind == "array":
            return self.array(schema, depth)
        if kind == "string":
            return _string(schema, variant)
        if kind in ("integer", "number"):
            return _number(schema, kind == "integer", variant)
        if kind == "boolean":
            return variant % 2 == 0
        if kind == "null":
            return None
        return _plain(variant)

    def flatten(self, schema: Mapping[str, Any], depth: int) -> Mapping[str, Any]:
        """Resolve ``$ref`` and merge ``allOf`` members into one mapping of keywords."""
        merged = dict(schema)
        if "$ref" in merged:
            target = self.resolve(str(merged.pop("$ref")))
            merged = _merge(dict(self.flatten(target, depth + 1)), merged) if isinstance(target, Mapping) else merged
        for part in merged.pop("allOf", None) or []:
            if isinstance(part, Mapping):
                merged = _merge(merged, dict(self.flatten(part, depth + 1)))
        return merged

    def resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise ValueError(f"cannot follow $ref {ref!r}: only local references")
        node = self.root
        for token in [t for t in ref[1:].split("/") if t]:
            token = token.replace("~1", "/").replace("~0", "~")
            node = node[int(token)] if isinstance(node, list) else node[token]
        return node

    def first_option(self, schema: Mapping[str, Any], combinator: str, depth: int, variant: int) -> Any:
        base = {k: v for k, v in schema.items() if k != combinator}
        options = schema[combinator]
        ordered = sorted(options, key=lambda o: isinstance(o, Mapping) and o.get("type") == "null")
        problem: ValueError | None = None
        for option in ordered:
            try:
                return self.value(_merge(dict(base), dict(option)) if isinstance(option, Mapping) else option,
                                  depth + 1, variant)  # fmt: skip
            except ValueError as exc:
                problem = exc
        raise problem or ValueError(f"{combinator} has no options")

    def object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties: Mapping[str, Any] = schema.get("properties") or {}
        names = list(dict.fromkeys(schema.get("required") or []))
        dependent: Mapping[str, Any] = schema.get("dependentRequired") or {}
        for name in list(names):
            names += [n for n in dependent.get(name, []) if n not in names]
        out: dict[str, Any] = {}
        for name in names:
            out[name] = self.value(self.property_schema(schema, name), depth + 1, 0)
        minimum = int(schema.get("minProperties") or 0)
        spare = [n for n in properties if n not in out]
        while len(out) < minimum:
            name = spare.pop(0) if spare else _free_name(schema, out)
            out[name] = self.value(self.property_schema(schema, name), depth + 1, 0)
        return out

    def property_schema(self, schema: Mapping[str, Any], name: str) -> Any:
        properties: Mapping[str, Any] = schema.get("properties") or {}
        if name in properties:
            return properties[name]
        for pattern, sub in (schema.get("patternProperties") or {}).items():
            if re.search(pattern, name):
                return sub
        extra = schema.get("additionalProperties", True)
        return True if extra is False else extra  # a required name outside properties: any value

    def array(self, schema: Mapping[str, Any], depth: int) -> list[Any]:
        prefix = list(schema.get("prefixItems") or [])
        items = schema.get("items", True)
        if isinstance(items, list):  # draft 2019 and earlier: a tuple
            prefix, items = items, schema.get("additionalItems", True)
        count = int(schema.get("minItems") or 0)
        if "contains" in schema:
            count = max(count, int(schema.get("minContains", 1)))
        out: list[Any] = []
        for i in range(count):
            sub = prefix[i] if i < len(prefix) else items
            if "contains" in schema and i >= len(prefix) and len(out) < int(schema.get("minContains", 1)):
                sub = schema["contains"]
            out.append(self.value(sub, depth + 1, i if schema.get("uniqueItems") else 0))
        return out


def _merge(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    for key, value in right.items():
        if key == "properties" and isinstance(left.get(key), Mapping):
            left[key] = {**left[key], **value}
        elif key == "required" and isinstance(left.get(key), list):
            left[key] = [*left[key], *[n for n in value if n not in left[key]]]
        elif key in ("minimum", "minLength", "minItems", "minProperties", "exclusiveMinimum") and key in left:
            left[key] = max(left[key], value)
        elif key in ("maximum", "maxLength", "maxItems", "maxProperties", "exclusiveMaximum") and key in left:
            left[key] = min(left[key], value)
        else:
            left[key] = value
    return left


def _kind(schema: Mapping[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind is None:
        if "properties" in schema or "required" in schema or "additionalProperties" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        if any(k in schema for k in ("minLength", "maxLength", "pattern", "format")):
            return "string"
        if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
            return "number"
    return str(kind) if kind is not None else None


def _plain(variant: int) -> Any:
    return _FILLERS[variant % len(_FILLERS)] if variant else None


def _free_name(schema: Mapping[str, Any], taken: Mapping[str, Any]) -> str:
    names = schema.get("propertyNames")
    for i in range(1000):
        name = _string(names, i) if isinstance(names, Mapping) else f"key{i}"
        if name not in taken:
            return name
    raise ValueError("cannot find a free property name")


def _string(schema: Mapping[str, Any], variant: int) -> str:
    low = int(schema.get("minLength") or 0)
    high = schema.get("maxLength")
    if "format" in schema and schema["format"] in _FORMATS and not variant:
        return _FORMATS[schema["format"]]
    if "pattern" in schema:
        text = pattern_example(str(schema["pattern"]), variant)
        if text is not None and low <= len(text) and (high is None or len(text) <= high):
            return text
        raise ValueError(f"cannot make a string matching pattern {schema['pattern']!r}")
    base = _FILLERS[variant % len(_FILLERS)] * max(low, 1 if variant else 0)
    return base[:high] if high is not None else base


def _number(schema: Mapping[str, Any], integer: bool, variant: int) -> int | float:
    low, high = schema.get("minimum"), schema.get("maximum")
    above, below = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if isinstance(above, bool):  # draft 4: a flag that makes minimum exclusive
        low, above = (None, low) if above else (low, None)
    if isinstance(below, bool):
        high, below = (None, high) if below else (high, None)
    step = schema.get("multipleOf") or (1 if integer else 0.5)
    floor = max((b for b in (low, above) if b is not None), default=None)
    ceiling = min((b for b in (high, below) if b is not None), default=None)
    value = 0.0 if floor is None or floor <= 0 <= (ceiling if ceiling is not None else 0) else float(floor)
    if floor is None and ceiling is not None and ceiling < 0:
        value = float(ceiling)
    value = math.ceil(value / step) * step  # onto the multipleOf grid, at or above the floor
    if above is not None and value <= above:
        value += step
    value += variant * step
    if ceiling is not None and (value > ceiling or (below is not None and value >= below)):
        value = math.floor(ceiling / step) * step
        if below is not None and value >= below:
            value -= step
    return int(value) if integer or float(value).is_integer() else value


def pattern_example(pattern: str, variant: int = 0) -> str | None:
    """A short string that ``re.search(pattern, s)`` accepts, or ``None`` when this simple builder cannot tell."""
    try:
        parsed = re._parser.parse(pattern)  # type: ignore[attr-defined]
    except re.error:
        return None
    text = _build(parsed, variant)
    if text is None:
        return None
    return text if re.search(pattern, text) else None


def _build(items: Any, variant: int) -> str | None:
    constants = re._constants  # type: ignore[attr-defined]
    out: list[str] = []
    for op, arg in items:
        if op is constants.LITERAL:
            out.append(chr(arg))
        elif op is constants.NOT_LITERAL:
            out.append("a" if arg != ord("a") else "b")
        elif op is constants.ANY:
            out.append("a")
        elif op is constants.IN:
            char = _first_in(arg, variant)
            if char is None:
                return None
            out.append(char)
        elif op in (constants.MAX_REPEAT, constants.MIN_REPEAT, getattr(constants, "POSSESSIVE_REPEAT", None)):
            low, _high, sub = arg
            piece = _build(sub, variant)
            if piece is None:
                return None
            out.append(piece * low)
        elif op is constants.SUBPATTERN:
            piece = _build(arg[-1], variant)
            if piece is None:
                return None
            out.append(piece)
        elif op is constants.BRANCH:
            piece = _build(arg[1][0], variant)
            if piece is None:
                return None
            out.append(piece)
        elif op in (constants.AT, constants.ASSERT, constants.ASSERT_NOT):
            continue  # anchors; lookarounds are checked by the caller's final re.search
        else:
            return None
    return "".join(out)


def _first_in(items: Any, variant: int) -> str | None:
    constants = re._constants  # type: ignore[attr-defined]
    negate = any(op is constants.NEGATE for op, _ in items)
    candidates: list[str] = []
    for op, arg in items:
        if op is constants.LITERAL:
            candidates.append(chr(arg))
        elif op is constants.RANGE:
            candidates.append(chr(arg[0]))
        elif op is constants.CATEGORY:
            candidates.append({constants.CATEGORY_DIGIT: "0", constants.CATEGORY_SPACE: " "}.get(arg, "a"))
    if negate:
        banned = set(candidates)
        return next((c for c in "a0B_x-" if c not in banned), None)
    return candidates[variant % len(candidates)] if candidates else None
