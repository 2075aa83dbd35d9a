"""A typed view of JSON validated against a JSON Schema: a pydantic model, where one fits exactly.

Outputs are validated by a standard JSON Schema validator
(:mod:`promptask.schemas.validation`); the view only gives the validated JSON
attributes and types.  It is made when every part of the schema maps onto a
Python type that reads each value the schema accepts and gives the same JSON
back: objects with ``properties`` (nested too), arrays with ``items``,
``string``, ``integer``, ``number``, ``boolean``, ``null``, type lists,
``enum``/``const``, ``anyOf``/``oneOf``, maps (``additionalProperties``) and
non-recursive ``$ref``.  Keywords that only restrict values (lengths, bounds,
``pattern``, ``format``, ``uniqueItems``, ``dependentRequired``...) need no
type and are left to the validator.  A schema with ``allOf``,
``if``/``then``/``else``, ``not``, ``patternProperties``, ``prefixItems``,
``dependentSchemas`` or a recursive ``$ref`` gets no view: its outputs are
plain JSON values.

>>> View = typed_view({"type": "object", "properties": {"name": {"type": "string"}, "nick": {"type": "string"}},
...                    "required": ["name"]}, name="Person")
>>> ada = View.model_validate({"name": "Ada"})
>>> ada.name, ada.nick, ada.model_dump()
('Ada', None, {'name': 'Ada'})
>>> typed_view({"allOf": [{"type": "object"}, {"required": ["a"]}]}, name="Mixed") is None
True
"""

from __future__ import annotations

import copy
import keyword
import re
from collections.abc import Mapping
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, create_model, model_serializer

from promptask.schemas.refs import resolve_ref

__all__ = ["SchemaView", "plain_identifier", "typed_view"]

_MISSING = object()

_UNTYPED = ("allOf", "if", "then", "else", "not", "patternProperties", "prefixItems", "dependentSchemas",
            "unevaluatedProperties", "unevaluatedItems", "additionalItems", "$dynamicRef", "$recursiveRef",
            "dependencies")  # fmt: skip
_SCALARS: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool, "null": type(None)}
_LITERAL_VALUES = (str, int, bool, type(None))
_ANNOTATIONS = frozenset({"title", "description", "$comment", "examples", "default", "$schema", "$id", "$defs",
                          "definitions", "deprecated", "readOnly", "writeOnly"})  # fmt: skip


class SchemaView(BaseModel):
    """Base of the typed views: attributes for the fields, and dumps that give back the JSON as validated.

    A property the JSON left out is ``None`` (or the schema's ``default``) as
    an attribute, but stays out of every dump, so a dump is valid under the
    schema whenever the JSON was.
    """

    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True, protected_namespaces=(), extra="allow"
    )

    @model_serializer(mode="wrap")
    def _as_given(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for name, info in type(self).model_fields.items():
                if name not in self.model_fields_set:
                    data.pop(info.alias or name, None)
                    data.pop(name, None)
        return data


class _ClosedView(SchemaView):
    model_config = ConfigDict(extra="forbid")  # additionalProperties: false


class _NoViewError(Exception):
    pass


def typed_view(schema: Any, *, name: str) -> type[SchemaView] | None:
    """The view model for an object schema, or ``None`` when the schema has no exact one (see the module docstring)."""
    compiler = _Compiler(schema, name)
    try:
        target = compiler.follow(schema, "")
        if not isinstance(target, Mapping) or not _is_object(target):
            return None
        view: type[SchemaView] = compiler.object(target, name)
    except _NoViewError:
        return None
    return view


def _is_object(schema: Mapping[str, Any]) -> bool:
    return schema.get("type") == "object" or ("type" not in schema and "properties" in schema)


class _Compiler:
    def __init__(self, root: Any, name: str) -> None:
        self.root = root
        self.name = name
        self.resolving: list[str] = []

    def follow(self, schema: Any, ref_path: str) -> Any:
        """``schema``, or what its ``$ref`` points to when the ``$ref`` stands alone."""
        if not isinstance(schema, Mapping) or "$ref" not in schema:
            return schema
        if set(schema) - _ANNOTATIONS - {"$ref"}:
            raise _NoViewError  # $ref beside other keywords is a conjunction
        ref = str(schema["$ref"])
        if ref in self.resolving:
            raise _NoViewError  # recursive
        return self.resolve(ref)

    def resolve(self, ref: str) -> Any:
        node = resolve_ref(self.root, ref, _MISSING)
        if node is _MISSING:
            raise _NoViewError
        return node

    def type_of(self, schema: Any, title: str) -> Any:
        if schema is True:
            return Any
        if not isinstance(schema, Mapping):
            raise _NoViewError
        if "$ref" in schema:
            ref = str(schema["$ref"])
            target = self.follow(schema, ref)
            self.resolving.append(ref)
            try:
                return self.type_of(target, title)
            finally:
                self.resolving.pop()
        if any(word in schema for word in _UNTYPED):
            raise _NoViewError
        if "const" in schema:
            return _literal([schema["const"]])
        if "enum" in schema:
            return _literal(list(schema["enum"]))
        for word in ("anyOf", "oneOf"):
            if word in schema:
                others = {k: v for k, v in schema.items() if k != word and k not in _ANNOTATIONS}
                if others.keys() & {"type", "properties", "items", "additionalProperties", "required"}:
                    raise _NoViewError  # alternatives beside their own shape: a conjunction in disguise
                options = [self.type_of(option, f"{title}{i}") for i, option in enumerate(schema[word])]
                return Union[tuple(options)] if options else Any  # noqa: UP007
        kind = schema.get("type")
        if isinstance(kind, list):
            return Union[tuple(self.type_of({**schema, "type": k}, title) for k in kind)]  # noqa: UP007
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else None
        if kind == "object":
            return self.object(schema, title) if "properties" in schema or "required" in schema else self.map(schema)
        if kind == "array":
            items = schema.get("items", True)
            return list[self.type_of(items, f"{title}Item")] if items is not False else list[Any]  # type: ignore[misc]
        if kind is None:
            return Any
        if kind not in _SCALARS:
            raise _NoViewError
        return _SCALARS[kind]

    def map(self, schema: Mapping[str, Any]) -> Any:
        extra = schema.get("additionalProperties", True)
        value = Any if extra is True or extra == {} else self.type_of(extra, "Value") if extra is not False else Any
        return dict[str, value]  # type: ignore[valid-type]

    def object(self, schema: Mapping[str, Any], title: str) -> type[SchemaView]:
        properties: Mapping[str, Any] = schema.get("properties") or {}
        required = [r for r in schema.get("required", []) if isinstance(r, str)]
        names = list(dict.fromkeys([*properties, *required]))
        fields: dict[str, Any] = {}
        for i, prop in enumerate(names):
            sub = properties.get(prop, True)
            tp = self.type_of(sub, _camel(prop))
            info: dict[str, Any] = {}
            if isinstance(sub, Mapping) and isinstance(sub.get("description"), str):
                info["description"] = sub["description"]
            if not plain_identifier(prop):
                info["alias"] = prop
            if prop in required:
                default: Any = ...
            else:
                default = copy.deepcopy(sub.get("default")) if isinstance(sub, Mapping) else None
            fields[prop if plain_identifier(prop) else f"field_{i}"] = (tp, Field(default, **info))
        own = schema.get("title")
        model_name = _camel(own) if isinstance(own, str) and _camel(own) else _camel(title) or self.name
        base = _ClosedView if schema.get("additionalProperties", True) is False else SchemaView
        model: type[SchemaView] = create_model(model_name, __base__=base, __doc__=schema.get("description"), **fields)
        return model


def _literal(values: list[Any]) -> Any:
    if values and all(type(v) in _LITERAL_VALUES for v in values):
        return Literal[tuple(values)]
    return Any  # floats, arrays and objects have no Literal form; the validator checks them


def plain_identifier(name: str) -> bool:
    """Whether a property name can be a pydantic field name as it is (else it gets an alias)."""
    return (
        name.isidentifier()
        and not keyword.iskeyword(name)
        and not name.startswith("_")
        and not hasattr(BaseModel, name)
        and not name.startswith("model_")
    )


def _camel(name: str) -> str:
    return "".join(w[:1].upper() + w[1:] for w in re.split(r"[^0-9A-Za-z]+", name) if w)
