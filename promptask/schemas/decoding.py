"""The schema decoding follows, derived from the user's schema: it admits the same values, or fewer.

Four changes, none of which admits a value the user's schema rejects:

* **Draft forms.**  Keywords of drafts 4 to 2019-09 are rewritten in their
  2020-12 form, which the token-level engine reads: a boolean
  ``exclusiveMinimum`` with ``minimum``, ``items`` as a list (a tuple) with
  ``additionalItems``, and ``dependencies``.
* **Enforceable forms.**  Keywords the engine would skip (conditionals,
  ``dependentRequired``, ``propertyNames``, ...) are rewritten into ones it
  enforces, admitting the same values or fewer
  (:mod:`promptask.schemas.enforceable`); only formats are rewritten when
  a ``$ref`` points inside a definition, which the other rewrites could move.
* **Closed objects.**  An object that lists its properties and says nothing
  of others gets ``additionalProperties: false``, so a small model does not
  spend its tokens inventing keys.  An object combined with other schemas by
  conjunction (an ``allOf`` member, one beside ``$ref``, ``if``/``then``/
  ``else``, ``anyOf`` or ``oneOf`` keywords) stays open, since what one part
  forbids another may allow.  A name ``required`` lists but ``properties``
  does not is added to the closed object's properties as ``{}``.
* **A wrapper.**  A top level that is not an object (an array, a string, an
  enum, ``{}``) is asked for as ``{"answer": ...}``, like the plain types of
  Python tasks; local ``$ref`` pointers are rewritten to match.  The caller
  unwraps the answer before validating it.

>>> decoding_schema({"type": "object", "properties": {"name": {"type": "string"}}})
{'type': 'object', 'properties': {'name': {'type': 'string'}}, 'additionalProperties': False}
>>> tags = {"type": "array", "items": {"$ref": "#/$defs/tag"}, "$defs": {"tag": {"type": "string"}}}
>>> decoding_schema(tags)["properties"]
{'answer': {'type': 'array', 'items': {'$ref': '#/properties/answer/$defs/tag'}, '$defs': {'tag': {'type': 'string'}}}}
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from promptask.schemas.enforceable import SKIPPED_BY_ENGINE, enforceable, formats_as_patterns
from promptask.schemas.keywords import ANNOTATIONS, OBJECT_WORDS
from promptask.schemas.refs import resolve_ref

__all__ = ["ANSWER", "decoding_schema", "is_object_schema", "subschemas"]

ANSWER = "answer"
"""The key a non-object answer is wrapped in."""

_SCHEMA_VALUED = ("items", "additionalItems", "additionalProperties", "contains", "propertyNames", "not", "if",
                  "then", "else", "unevaluatedItems", "unevaluatedProperties", "contentSchema")  # fmt: skip
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies")
_LEGACY_DRAFTS = ("draft-04", "draft-06", "draft-07", "2019-09")


def subschemas(node: Mapping[str, Any]) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """The direct subschemas of a schema, each with its path below the node."""
    for key in _SCHEMA_VALUED:
        value = node.get(key)
        if isinstance(value, (Mapping, bool)):
            yield (key,), value
    for key in _SCHEMA_LISTS:
        value = node.get(key)
        if isinstance(value, list):
            for i, item in enumerate(value):
                yield (key, i), item
    for key in _SCHEMA_MAPS:
        value = node.get(key)
        if isinstance(value, Mapping):
            for name, item in value.items():
                if isinstance(item, (Mapping, bool)):
                    yield (key, name), item


def is_object_schema(schema: Any, root: Any = None) -> bool:
    """Whether decoding can ask for an object directly (a top-level ``$ref`` is followed)."""
    root = schema if root is None else root
    if not isinstance(schema, Mapping):
        return False
    if "$ref" in schema and set(schema) - ANNOTATIONS == {"$ref"}:
        target = resolve_ref(root, str(schema["$ref"]))
        return target is not None and target is not schema and is_object_schema(target, root)
    if "allOf" in schema and set(schema) - ANNOTATIONS <= {"allOf", "type"}:
        return all(is_object_schema(member, root) for member in schema["allOf"])
    if any(word in schema for word in ("anyOf", "oneOf", "enum", "const", "$ref", "allOf", "not", "if")):
        return False
    kind = schema.get("type")
    return kind == "object" or (kind is None and any(word in schema for word in OBJECT_WORDS))


def decoding_schema(schema: Mapping[str, Any] | bool, *, wrap: bool | None = None) -> dict[str, Any]:
    """The schema for decoding (see the module docstring); ``schema`` itself is left unchanged.

    ``wrap`` forces the decision to wrap (default: wrap unless :func:`is_object_schema`).
    """
    draft = str(schema.get("$schema", "")) if isinstance(schema, Mapping) else ""
    tree: Any = copy.deepcopy(schema) if isinstance(schema, Mapping) else {} if schema else {"not": {}}
    if any(name in draft for name in _LEGACY_DRAFTS):
        tree = _walk(tree, _modern_forms)
    plain, skipped = _survey(tree)
    if skipped:
        tree = _walk(tree, enforceable if plain else formats_as_patterns)
    tree = _close_objects(tree)
    if isinstance(tree, dict):
        tree.pop("$schema", None)
    if not (wrap if wrap is not None else not is_object_schema(schema)):
        if isinstance(tree, dict) and "type" not in tree and "$ref" not in tree:
            tree["type"] = "object"  # properties without a type admit any value; decoding asks for the object
        return dict(tree)
    return {"type": "object", "properties": {ANSWER: _rebase_refs(tree)}, "required": [ANSWER],
            "additionalProperties": False}  # fmt: skip


def _walk(node: Any, change: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """``change`` applied to every schema in the tree, innermost first."""
    if not isinstance(node, Mapping):
        return node
    out = dict(node)
    for path, sub in subschemas(node):
        _set(out, path, _walk(sub, change))
    return change(out)


def _set(node: dict[str, Any], path: tuple[str | int, ...], value: Any) -> None:
    key, *rest = path
    if not rest:
        node[str(key)] = value
        return
    container = node[str(key)]
    container = list(container) if isinstance(container, list) else dict(container)
    container[rest[0]] = value  # type: ignore[index]
    node[str(key)] = container


def _survey(tree: Any) -> tuple[bool, bool]:
    """``(plain, skipped)``: every local ``$ref`` names the root or a whole definition (then rewriting a node
    breaks none), and some node holds a keyword :func:`enforceable` rewrites (else the rewrite pass is skipped)."""
    plain, skipped = True, False
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#") and ref != "#":
                parts = ref[2:].split("/")
                plain = plain and len(parts) == 2 and parts[0] in ("$defs", "definitions")
            if not skipped:
                skipped = bool(SKIPPED_BY_ENGINE & node.keys()) or (
                    "anyOf" in node and bool(OBJECT_WORDS & node.keys())
                )
            stack.extend(value for value in node.values() if isinstance(value, (dict, list)))
        elif isinstance(node, list):
            stack.extend(value for value in node if isinstance(value, (dict, list)))
    return plain, skipped


def _modern_forms(node: dict[str, Any]) -> dict[str, Any]:
    for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(flag), bool) and node.pop(flag) and bound in node:
            node[flag] = node.pop(bound)
    if isinstance(node.get("items"), list):
        node["prefixItems"] = node.pop("items")
        if "additionalItems" in node:
            node["items"] = node.pop("additionalItems")
    dependencies = node.pop("dependencies", None)
    if isinstance(dependencies, Mapping):
        for name, value in dependencies.items():
            kind = "dependentRequired" if isinstance(value, list) else "dependentSchemas"
            node.setdefault(kind, {})[name] = value
    return node


def _close_objects(root: Any) -> Any:
    """Close every object schema that no conjunct can extend (see the module docstring)."""
    open_ids: set[int] = set()
    pending: list[Any] = []

    def mark(node: Any) -> None:
        if isinstance(node, Mapping) and id(node) not in open_ids:
            open_ids.add(id(node))
            pending.append(node)

    def scan(node: Any) -> None:
        if not isinstance(node, Mapping):
            return
        combined = any(word in node for word in ("allOf", "if", "then", "else", "dependentSchemas",
                                                 "unevaluatedProperties"))  # fmt: skip
        has_object_words = any(word in node for word in OBJECT_WORDS)
        if "$ref" in node and set(node) - ANNOTATIONS - {"$ref"}:
            combined = True
        if has_object_words and any(word in node for word in ("anyOf", "oneOf")):
            combined = True
        if combined:
            mark(node)
            for word in ("allOf", "anyOf", "oneOf"):
                for member in node.get(word) or []:
                    mark(member)
            for word in ("if", "then", "else"):
                mark(node.get(word))
            for member in (node.get("dependentSchemas") or {}).values():
                mark(member)
        for _, sub in subschemas(node):
            scan(sub)

    scan(root)
    while pending:  # what an open schema refers to stays open too
        node = pending.pop()
        if "$ref" in node:
            mark(resolve_ref(root, str(node["$ref"])))
        for word in ("allOf", "anyOf", "oneOf"):
            for member in node.get(word) or []:
                if isinstance(member, Mapping) and "$ref" in member:
                    mark(member)

    def walk(node: Any) -> Any:
        if not isinstance(node, Mapping):
            return node
        out = dict(node)
        for path, sub in subschemas(node):
            _set(out, path, walk(sub))
        extends = ("additionalProperties", "patternProperties", "unevaluatedProperties")
        if id(node) not in open_ids and "properties" in out and not any(word in out for word in extends):
            listed = out["properties"]
            unlisted = [n for n in out.get("required") or () if isinstance(n, str) and n not in listed]
            if isinstance(listed, Mapping) and unlisted:  # a required key must stay writable once closed
                out["properties"] = {**listed, **{name: {} for name in unlisted}}
            out["additionalProperties"] = False
        return out

    return walk(root)


def _rebase_refs(node: Any) -> Any:
    """Local ``$ref`` pointers rewritten for the schema's new place under ``properties.answer``."""
    base = f"#/properties/{ANSWER}"

    def rebase(schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            schema["$ref"] = base + ref[1:]
        return schema

    return _walk(node, rebase)
