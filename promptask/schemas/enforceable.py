"""Keywords the token-level engine skips, rewritten into forms it enforces.

llguidance enforces most of JSON Schema while decoding but skips a few
keywords (it says so in warnings): ``if``/``then``/``else``,
``dependentRequired``, ``propertyNames`` and ``not``; and it reads ``oneOf``
as ``anyOf``.  Skipped, they are only checked after decoding, and a small
model rarely fixes a broken conditional on retry.  This module rewrites each
into keywords the engine enforces, so that the rewritten schema admits the
same values as the user's, or fewer; never one the user's schema rejects:

* **Conditionals.**  ``if`` on one property's value (``{"properties":
  {"k": {"const": ...}}}``, the usual form) splits the object into an
  ``anyOf`` of the case where the condition holds, with ``then``, and the
  cases where it fails, with ``else``; when ``k``'s values are a finite set the
  split is exact.  Other conditions keep the cases that are sure to conform:
  ``if`` with ``then``, and ``then`` with ``else``.
* **Dependencies.**  ``dependentRequired: {"a": ["b"]}`` becomes the two
  cases, ``a`` absent or ``a`` and ``b`` present (exact).
* **Property names.**  ``propertyNames`` with a ``pattern`` (or an ``enum``)
  on an object of free keys becomes ``patternProperties`` (or listed
  properties) with other keys forbidden (exact).
* **Exclusions.**  ``not: {"required": [...]}`` forbids the last of those keys.
* **One of, any of.**  An object beside ``anyOf``/``oneOf`` is merged into
  each member (exact), so that each can be closed for decoding; where
  ``oneOf`` members are told apart by the keys they require, each member
  forbids the keys only the others require, so that a value matches one
  member rather than several.
* **Formats.**  ``email``, ``date``, ``time`` and ``date-time`` are decoded as patterns
  whose every value the validators accept (:data:`FORMAT_PATTERNS`).

A keyword that none of these fit is left as it was: the engine skips it and
the validator checks it afterwards, as before.  The rewrites are applied to
the decoding schema only (:func:`promptask.schemas.decoding.decoding_schema`);
outputs are still validated against the user's schema.

>>> flight = {"type": "object", "properties": {"trip": {"enum": ["one_way", "round_trip"]},
...           "back": {"type": "string"}}, "required": ["trip"],
...           "if": {"properties": {"trip": {"const": "round_trip"}}}, "then": {"required": ["back"]}}
>>> [(case["properties"]["trip"], case["required"]) for case in enforceable(flight)["anyOf"]]
[({'enum': ['round_trip']}, ['trip', 'back']), ({'enum': ['one_way']}, ['trip'])]
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

from promptask.schemas.keywords import ANNOTATIONS, OBJECT_WORDS, PLACES

__all__ = [
    "FORMAT_PATTERNS",
    "MAX_CASES",
    "SKIPPED_BY_ENGINE",
    "conjoin",
    "enforceable",
    "formats_as_patterns",
    "plain_values",
]

MAX_CASES = 8
"""Most ``anyOf`` cases one object is split into; past it a dependency is required outright (still only narrower)."""

_DATE = (r"[1-9][0-9]{3}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)"
         r"|02-(0[1-9]|1[0-9]|2[0-8]))")  # fmt: skip
_CLOCK = r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
_OFFSET = r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
FORMAT_PATTERNS = {
    "email": r"^[A-Za-z0-9][A-Za-z0-9_%+-]{0,30}(\.[A-Za-z0-9_%+-]{1,30}){0,3}@"
    r"([A-Za-z0-9]([A-Za-z0-9-]{0,30}[A-Za-z0-9])?\.){1,4}[A-Za-z]{2,12}$",
    "date": f"^{_DATE}$",
    "date-time": f"^{_DATE}T{_CLOCK}{_OFFSET}$",
    "time": f"^{_CLOCK}{_OFFSET}$",
}
"""What these formats are decoded as: values both the engine and the validators accept.

The engine's own grammars for them admit values validators refuse (year
0000, 30 February, addresses with ``/`` or ``*``); these admit fewer
(no 29 February, no leap second), all of them valid.
"""


_SPLITS = ("anyOf", "oneOf")
_ANNOTATIONS = ANNOTATIONS - PLACES  # the places are taken off a node before it is rewritten
SKIPPED_BY_ENGINE = frozenset({"if", "dependentRequired", "propertyNames", "not", "oneOf", "allOf", "format"})
"""Keywords whose presence calls for the rewrite pass (``anyOf`` too, beside object keywords)."""


def enforceable(node: dict[str, Any]) -> Any:
    """One schema node with the module's rewrites applied (its subschemas are rewritten already).

    What other schemas point at (``$defs``, ``definitions``, ``$id``) stays on the node itself.
    """
    kept = {key: value for key, value in node.items() if key in PLACES}
    bare = {key: value for key, value in node.items() if key not in PLACES}
    out = _rewrite(bare)
    if out is bare:
        return node
    if not kept:
        return out
    return {**kept, **out} if isinstance(out, Mapping) else {**kept, "allOf": [out]}


def _rewrite(node: dict[str, Any]) -> Any:
    node = formats_as_patterns(node)
    if isinstance(node.get("propertyNames"), Mapping):
        node = _property_names(node)
    if isinstance(node.get("not"), Mapping) and set(node["not"]) == {"required"}:
        node = conjoin({key: value for key, value in node.items() if key != "not"}, {"not": node["not"]}) or node
    if isinstance(node.get("allOf"), list):
        node = _all_of(node)
    if isinstance(node, Mapping) and isinstance(node.get("oneOf"), list):
        node = _one_of(node)
    if isinstance(node, Mapping) and isinstance(node.get("anyOf"), list) and set(node) & OBJECT_WORDS:
        node = _distribute(node, "anyOf")
    node = _each_case(node, "if", _conditional)
    return _each_case(node, "dependentRequired", _dependencies)


def _each_case(node: Any, word: str, split: Callable[[dict[str, Any]], Any]) -> Any:
    """``split`` applied to ``node``, or to each ``anyOf`` case of it, where they have ``word``."""
    return _map_cases(node, lambda case: split(case) if word in case else case)


def _map_cases(node: Any, change: Callable[[dict[str, Any]], Any]) -> Any:
    """``change`` applied to ``node``, or to each case when ``node`` is nothing but an ``anyOf`` of cases."""
    if not isinstance(node, Mapping):
        return node
    cases = node.get("anyOf")
    if not isinstance(cases, list) or set(node) - _ANNOTATIONS != {"anyOf"}:
        return change(node if isinstance(node, dict) else dict(node))
    changed = [change(case if isinstance(case, dict) else dict(case)) if isinstance(case, Mapping) else case
               for case in cases]  # fmt: skip
    return node if all(a is b for a, b in zip(changed, cases, strict=True)) else _cases(dict(node), changed)


def _all_of(node: dict[str, Any]) -> Any:
    """The members merged into one object (conditionals among them split on the merged object)."""
    merged: Any = {key: value for key, value in node.items() if key != "allOf"}
    for member in node["allOf"]:
        if not isinstance(member, Mapping):
            return node
        condition = {key: member[key] for key in ("if", "then", "else") if key in member}
        merged = conjoin(merged, {key: value for key, value in member.items() if key not in condition})
        if merged is None or merged is False:
            return node
        if condition:
            merged = _map_cases(merged, functools.partial(_conditional_with, condition))
    return merged


def formats_as_patterns(node: dict[str, Any]) -> dict[str, Any]:
    """The node with a format of :data:`FORMAT_PATTERNS` decoded as its pattern (the node's place unchanged)."""
    if node.get("format") in FORMAT_PATTERNS and "pattern" not in node:  # both constrain strings only
        return {key: value for key, value in node.items() if key != "format"} | {
            "pattern": FORMAT_PATTERNS[node["format"]]
        }
    return node


# --- conjunction -------------------------------------------------------------------------------


def conjoin(a: Any, b: Any) -> Any:
    """A schema for values matching both ``a`` and ``b``, or ``None`` where it cannot be written plainly.

    Object keywords are merged into one object (so that it can still be
    closed for decoding); ``anyOf``/``oneOf`` on either side are distributed.
    ``False`` (nothing matches) is returned as ``False``.

    >>> conjoin({"type": "object", "required": ["a"]}, {"required": ["b"], "properties": {"b": {"type": "string"}}})
    {'type': 'object', 'required': ['a', 'b'], 'properties': {'b': {'type': 'string'}}}
    """
    if b is True or b == {}:
        return copy.deepcopy(a)
    if a is True or a == {}:
        return copy.deepcopy(b)
    if a is False or b is False:
        return False
    if not isinstance(a, Mapping) or not isinstance(b, Mapping) or "$ref" in a or "$ref" in b:
        return None
    for side, other in ((b, a), (a, b)):
        word = next((w for w in _SPLITS if isinstance(side.get(w), list)), None)
        if word is not None:
            rest = {key: value for key, value in side.items() if key != word}
            base = conjoin(other, rest)
            if base is None:
                return None
            cases = [conjoin(base, member) for member in side[word]]
            if any(case is None for case in cases):
                return None
            live = [case for case in cases if case is not False]
            return live[0] if len(live) == 1 and word == "anyOf" else {word: live} if live else False
    out = copy.deepcopy(dict(a))
    if _constrain_listed(out, b) is None:
        return None
    for key, value in b.items():
        if key == "required":
            out["required"] = list(dict.fromkeys([*out.get("required", []), *value]))
        elif key == "properties":
            if _conjoin_properties(out, value) is None:
                return None
        elif key == "not" and isinstance(value, Mapping) and set(value) == {"required"}:
            if _forbid_one(out, list(value["required"])) is None:
                return None
        elif key in ("enum", "const"):
            mine, theirs = plain_values(out), plain_values(b) or []
            allowed = theirs if mine is None else [v for v in mine if v in theirs]
            out.pop("const", None)
            out["enum"] = allowed
            if not allowed:
                return False
        elif key in _ANNOTATIONS:
            out.setdefault(key, value)
        elif key not in out or out[key] == value:
            out[key] = copy.deepcopy(value)
        else:
            return None
    return out


def _conjoin_properties(out: dict[str, Any], properties: Mapping[str, Any]) -> dict[str, Any] | None:
    listed = out.setdefault("properties", {})
    extra = out.get("additionalProperties", True)
    for name, schema in properties.items():
        if name in listed:
            merged = conjoin(listed[name], schema)
        elif extra is False:
            merged = False  # the key was forbidden already
        else:
            merged = conjoin(extra if isinstance(extra, Mapping) else {}, schema)
        if merged is None:
            return None
        if merged is False and name in out.get("required", ()):
            return None  # required and forbidden: leave it to the validator
        listed[name] = merged
    return out


def _constrain_listed(out: dict[str, Any], b: Mapping[str, Any]) -> dict[str, Any] | None:
    """``b``'s ``additionalProperties`` applied to the keys ``out`` lists and ``b`` does not: extra to ``b``."""
    extra = b.get("additionalProperties", True)
    listed = out.get("properties")
    if extra is True or extra == {} or not isinstance(listed, dict):
        return out
    if "patternProperties" in b:
        return None
    for name in list(listed):
        if name not in (b.get("properties") or {}):
            merged = conjoin(listed[name], extra)
            if merged is None or (merged is False and name in out.get("required", ())):
                return None
            listed[name] = merged
    return out


def _forbid_one(out: dict[str, Any], names: list[str]) -> dict[str, Any] | None:
    """Make ``out`` lack at least one of ``names``: the last one it does not require is forbidden."""
    optional = [name for name in names if name not in out.get("required", ())]
    if not optional:
        return None
    out.setdefault("properties", {})[optional[-1]] = False
    return out


def plain_values(schema: Any) -> list[Any] | None:
    """The finite set of values ``schema`` allows, where it says so plainly."""
    if not isinstance(schema, Mapping):
        return None
    if "const" in schema:
        return [schema["const"]]
    if isinstance(schema.get("enum"), list):
        return list(schema["enum"])
    if schema.get("type") == "boolean":
        return [True, False]
    return None


# --- the rewrites ------------------------------------------------------------------------------


def _conditional(node: dict[str, Any]) -> Any:
    rest = {key: value for key, value in node.items() if key not in ("if", "then", "else")}
    if not set(rest) - _ANNOTATIONS:
        return node  # a bare conditional, as an allOf member: split once merged into its object
    test, then, other = node["if"], node.get("then", True), node.get("else", True)
    cases: list[Any]
    condition = _value_condition(test)
    if test is True or test is False:
        cases = [conjoin(rest, then if test else other)]
    elif condition is not None:
        name, wanted, needs_name = condition
        values = plain_values((rest.get("properties") or {}).get(name))
        if values is not None:
            yes = [v for v in values if v in wanted]
            no = [v for v in values if v not in wanted]
            held: dict[str, Any] = {"properties": {name: {"enum": yes} if yes else False}}
            if needs_name:
                held["required"] = [name]
            cases = [_both(rest, held, then), _both(rest, {"properties": {name: {"enum": no}}, "required": [name]},
                                                    other) if no else False]  # fmt: skip
            if needs_name and name not in rest.get("required", ()):
                cases.append(_both(rest, {"properties": {name: False}}, other))
        else:
            held = {"properties": {name: {"enum": wanted}}, "required": [name]}
            cases = [_both(rest, held, then), _both(rest, then, other)]
    else:
        cases = [_both(rest, test, then), _both(rest, then, other)]
    nested = [_conditional(dict(case)) if isinstance(case, Mapping) and "if" in case else case for case in cases]
    return _cases(node, nested)  # an else that is itself a conditional was merged in unsplit


def _conditional_with(condition: Mapping[str, Any], case: dict[str, Any]) -> Any:
    return _conditional({**case, **condition})


def _both(base: Any, first: Any, second: Any) -> Any:
    merged = conjoin(base, first)
    return None if merged is None else conjoin(merged, second)


def _cases(original: dict[str, Any], cases: list[Any]) -> Any:
    """``anyOf`` the cases that could be written (the original node when none could)."""
    live = [case for case in cases if case is not None and case is not False]
    flat: list[Any] = []
    for case in live:
        flat.extend(case["anyOf"] if isinstance(case, Mapping) and set(case) == {"anyOf"} else [case])
    if not flat or len(flat) > MAX_CASES:
        return original
    if len(flat) == 1:
        return flat[0]
    return {"anyOf": flat, **{key: original[key] for key in original if key in _ANNOTATIONS}}


def _value_condition(test: Any) -> tuple[str, list[Any], bool] | None:
    """``(name, values, required)`` for an ``if`` that tests one property against a const or an enum."""
    if (
        not isinstance(test, Mapping)
        or set(test) - {"properties", "required", "type"}
        or test.get("type", "object") != "object"
    ):
        return None
    properties = test.get("properties")
    if not isinstance(properties, Mapping) or len(properties) != 1:
        return None
    ((name, schema),) = properties.items()
    values = plain_values(schema)
    if values is None or (isinstance(schema, Mapping) and set(schema) - {"const", "enum", "type"}):
        return None
    required = test.get("required", [])
    if required not in ([], [name]):
        return None
    return name, values, bool(required)


def _dependencies(node: dict[str, Any]) -> Any:
    rest = {key: value for key, value in node.items() if key != "dependentRequired"}
    current: Any = rest
    for name, needed in node["dependentRequired"].items():
        if not isinstance(needed, list):
            return node
        if name in rest.get("required", ()):
            split = conjoin(current, {"required": needed})
        else:
            split = conjoin(current, {"anyOf": [{"properties": {name: False}}, {"required": [name, *needed]}]})
            if isinstance(split, Mapping) and len(split.get("anyOf", ())) > MAX_CASES:
                split = conjoin(current, {"required": needed})  # past the case limit: ask for them outright
        if split is None or split is False:
            return node
        current = split
    return current


def _property_names(node: dict[str, Any]) -> dict[str, Any]:
    names = node["propertyNames"]
    if "patternProperties" in node or set(names) - {"pattern", "enum", "const", "type"} - _ANNOTATIONS:
        return node
    listed = dict(node.get("properties") or {})
    extra = node.get("additionalProperties", True)
    extra = {} if extra is True else extra
    if isinstance(names.get("pattern"), str) and not ({"enum", "const"} & set(names)):
        pattern = names["pattern"]
        if listed and extra != {}:
            return node  # patternProperties would apply to the listed keys too
        try:
            matches = re.compile(pattern).search
        except re.error:
            return node
        kept = {name: schema for name, schema in listed.items() if matches(name)}
        if set(node.get("required", ())) - set(kept) - set(listed):
            return node
        out = {key: value for key, value in node.items() if key != "propertyNames"}
        if kept:
            out["properties"] = kept
        if extra is not False:
            out["patternProperties"] = {pattern: extra}
        out["additionalProperties"] = False
        return out
    allowed = plain_values({key: value for key, value in names.items() if key in ("enum", "const")})
    if allowed is None or not all(isinstance(name, str) for name in allowed):
        return node
    out = {key: value for key, value in node.items() if key != "propertyNames"}
    out["properties"] = {name: listed.get(name, extra) for name in allowed if name in listed or extra is not False}
    out["additionalProperties"] = False
    return out


def _one_of(node: dict[str, Any]) -> Any:
    members = node["oneOf"]
    if not all(isinstance(m, Mapping) and "$ref" not in m for m in members):
        return node
    needs = [set(m.get("required", ())) for m in members]
    if not any(needs):
        return node
    held = set(node.get("required", ()))
    apart: list[Any] = []
    for i, member in enumerate(members):
        others = set().union(*(needs[j] for j in range(len(members)) if j != i)) - needs[i] - held
        forbid = {"properties": dict.fromkeys(sorted(others), False)} if others else {}
        narrowed = conjoin(member, forbid)
        if narrowed is None:
            return node
        apart.append(narrowed)
    return _distribute({**node, "oneOf": apart}, "oneOf")


def _distribute(node: dict[str, Any], word: str) -> Any:
    """An object beside ``anyOf``/``oneOf`` merged into each member, so that each can be closed for decoding."""
    rest = {key: value for key, value in node.items() if key != word}
    if not set(rest) & OBJECT_WORDS or any(not isinstance(m, Mapping) or "$ref" in m for m in node[word]):
        return node
    merged = conjoin(rest, {word: node[word]})
    return node if merged is None or merged is False else merged
