"""Types for task inputs and outputs.

Three jobs, one module:

* :func:`parse_type` reads the simple type names YAML tasks use for inputs
  (``str``, ``int``, ``list[str]``, ``dict[str, float]``, ``str | None``).
* :func:`model_from_schema` compiles a JSON Schema into a pydantic model with
  the same validation (types, enum/const, required, numeric bounds, string
  length and pattern, array length and uniqueness, nested objects, ``$ref``).
* :func:`output_model_for` wraps a plain output type (``str``, ``Literal``,
  ``list[int]``...) in a one-field model, so the model still answers with a
  JSON object and the caller gets the plain value back.

:func:`json_schema` gives the schema shown to the model and used for
constrained decoding: pydantic's, without the auto-generated titles.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from promptask.errors import TaskDefinitionError
from promptask.schemas.typed import plain_identifier

__all__ = [
    "ANSWER_FIELD",
    "json_schema",
    "model_from_schema",
    "output_model_for",
    "parse_type",
    "type_from_schema",
]

ANSWER_FIELD = "answer"
"""The field a plain output type is wrapped in."""

_SIMPLE_TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "any": Any,
}
_JSON_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "null": type(None),
}
_MODEL_CONFIG = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)


def is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


# ---------------------------------------------------------------- simple type names


def parse_type(expr: str, *, where: str = "type") -> Any:
    """Parse a simple type name such as ``list[str]`` or ``int | None``.

    >>> parse_type("dict[str, list[int]]")
    dict[str, list[int]]
    """
    tokens = re.findall(r"[A-Za-z_]+|[\[\],|]", expr)
    if "".join(tokens) != re.sub(r"\s+", "", expr):
        raise TaskDefinitionError(f"{where}: cannot read type {expr!r}")
    pos = 0

    def union() -> Any:
        nonlocal pos
        options = [single()]
        while pos < len(tokens) and tokens[pos] == "|":
            pos += 1
            options.append(single())
        return options[0] if len(options) == 1 else Union[tuple(options)]  # noqa: UP007

    def single() -> Any:
        nonlocal pos
        if pos >= len(tokens):
            raise TaskDefinitionError(f"{where}: type {expr!r} ends too early")
        name = tokens[pos]
        pos += 1
        if name in ("None", "null"):
            return type(None)
        if name in _SIMPLE_TYPES:
            return _SIMPLE_TYPES[name]
        if name in ("list", "dict", "Optional"):
            expect("[")
            args = [union()]
            while pos < len(tokens) and tokens[pos] == ",":
                pos += 1
                args.append(union())
            expect("]")
            if name == "list" and len(args) == 1:
                return list[args[0]]  # type: ignore[valid-type]
            if name == "Optional" and len(args) == 1:
                return Optional[args[0]]  # noqa: UP045
            if name == "dict" and len(args) == 2 and args[0] is str:
                return dict[str, args[1]]  # type: ignore[valid-type]
            raise TaskDefinitionError(
                f"{where}: {name}[...] takes {'one type' if name != 'dict' else 'str and one type'} in {expr!r}"
            )
        known = ", ".join([*_SIMPLE_TYPES, "list[T]", "dict[str, T]", "T | None"])
        raise TaskDefinitionError(f"{where}: unknown type {name!r} in {expr!r}; known: {known}, or a JSON Schema")

    def expect(token: str) -> None:
        nonlocal pos
        if pos >= len(tokens) or tokens[pos] != token:
            raise TaskDefinitionError(f"{where}: expected {token!r} in type {expr!r}")
        pos += 1

    result = union()
    if pos != len(tokens):
        raise TaskDefinitionError(f"{where}: unexpected {tokens[pos]!r} in type {expr!r}")
    return result


# ---------------------------------------------------------------- JSON Schema -> pydantic


class _SchemaCompiler:
    def __init__(self, root: Mapping[str, Any], name: str, where: str) -> None:
        self.root = root
        self.name = name
        self.where = where
        self.refs: dict[str, Any] = {}
        self.resolving: set[str] = set()

    def fail(self, path: str, message: str) -> TaskDefinitionError:
        return TaskDefinitionError(f"{self.where}{path}: {message}")

    def type_of(self, schema: Any, path: str, title: str) -> Any:
        if schema is True or schema == {}:
            return Any
        if not isinstance(schema, Mapping):
            raise self.fail(path, f"a schema must be a mapping, got {schema!r}")
        if "$ref" in schema:
            return self.ref(str(schema["$ref"]), path)
        if "const" in schema:
            return Literal[schema["const"]]
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                raise self.fail(path, "enum must be a non-empty list")
            return Literal[tuple(values)]
        for combinator in ("anyOf", "oneOf"):
            if combinator in schema:
                options = [
                    self.type_of(s, f"{path}.{combinator}[{i}]", f"{title}{i}")
                    for i, s in enumerate(schema[combinator])
                ]
                return Union[tuple(options)]  # noqa: UP007
        if "allOf" in schema:
            parts = schema["allOf"]
            if isinstance(parts, list) and len(parts) == 1:
                return self.type_of(parts[0], f"{path}.allOf[0]", title)
            raise self.fail(path, "allOf with more than one schema is not supported; merge them")
        kind = schema.get("type")
        if kind is None:
            kind = "object" if "properties" in schema else ("array" if "items" in schema else None)
        if kind is None:
            return Any
        if isinstance(kind, list):
            options = [self.type_of({**schema, "type": k}, path, title) for k in kind]
            return Union[tuple(options)]  # noqa: UP007
        if kind == "object":
            return self.object(schema, path, title)
        if kind == "array":
            return self.array(schema, path, title)
        if kind not in _JSON_TYPES:
            raise self.fail(path, f"unknown JSON Schema type {kind!r}")
        return self.constrained(_JSON_TYPES[kind], schema, path)

    def constrained(self, base: Any, schema: Mapping[str, Any], path: str) -> Any:
        keys = {
            "minimum": "ge",
            "maximum": "le",
            "exclusiveMinimum": "gt",
            "exclusiveMaximum": "lt",
            "multipleOf": "multiple_of",
            "minLength": "min_length",
            "maxLength": "max_length",
            "pattern": "pattern",
        }
        kwargs = {py: schema[js] for js, py in keys.items() if js in schema}
        if "format" in schema and base is str:
            kwargs["json_schema_extra"] = {"format": schema["format"]}
        if not kwargs:
            return base
        try:
            return Annotated[base, Field(**kwargs)]
        except (TypeError, ValueError) as exc:
            raise self.fail(path, str(exc)) from None

    def array(self, schema: Mapping[str, Any], path: str, title: str) -> Any:
        item = self.type_of(schema.get("items", {}), f"{path}.items", f"{title}Item")
        kwargs: dict[str, Any] = {}
        if "minItems" in schema:
            kwargs["min_length"] = schema["minItems"]
        if "maxItems" in schema:
            kwargs["max_length"] = schema["maxItems"]
        metadata: list[Any] = []
        if schema.get("uniqueItems"):
            kwargs["json_schema_extra"] = {"uniqueItems": True}
            metadata.append(AfterValidator(_unique_items))
        if kwargs:
            metadata.insert(0, Field(**kwargs))
        tp: Any = list[item]  # type: ignore[valid-type]
        for extra in metadata:  # nested Annotated flattens into one
            tp = Annotated[tp, extra]
        return tp

    def object(self, schema: Mapping[str, Any], path: str, title: str) -> Any:
        props = schema.get("properties")
        if not props:
            return self.mapping(schema, path, title)
        if not isinstance(props, Mapping):
            raise self.fail(path, "properties must be a mapping")
        required = schema.get("required", [])
        unknown = [r for r in required if r not in props]
        if unknown:
            raise self.fail(path, f"required names {unknown} that are not in properties")
        fields: dict[str, Any] = {}
        for i, (prop, sub) in enumerate(props.items()):
            tp = self.type_of(sub, f"{path}.properties.{prop}", camel_case(prop, suffix=""))
            info: dict[str, Any] = {}
            if isinstance(sub, Mapping) and "description" in sub:
                info["description"] = sub["description"]
            if not plain_identifier(prop):
                info["alias"] = prop
            if prop in required:
                default: Any = ...
            elif isinstance(sub, Mapping) and "default" in sub:
                default = sub["default"]
            else:
                tp, default = Optional[tp], None  # noqa: UP045
            fields[prop if plain_identifier(prop) else f"field_{i}"] = (tp, Field(default, **info))
        closed = schema.get("additionalProperties", True) is False
        config = ConfigDict(**_MODEL_CONFIG, extra="forbid" if closed else "ignore")
        own_title = schema.get("title")
        model: Any = create_model(
            own_title if isinstance(own_title, str) else (camel_case(title, suffix="") or self.name),
            __config__=config,
            __doc__=schema.get("description"),
            **fields,
        )
        return model

    def mapping(self, schema: Mapping[str, Any], path: str, title: str) -> Any:
        """An object without listed properties: ``dict[str, V]`` with its size and key constraints."""
        extra = schema.get("additionalProperties", True)
        value: Any = Any
        if isinstance(extra, Mapping):
            value = self.type_of(extra, f"{path}.additionalProperties", f"{title}Value")
        names = schema.get("propertyNames")
        key: Any = str
        if isinstance(names, Mapping):
            key = self.constrained(str, names, f"{path}.propertyNames")
        tp: Any = dict[key, value]
        low, high = schema.get("minProperties"), schema.get("maxProperties")
        if low is not None or high is not None:
            tp = Annotated[tp, Field(min_length=low, max_length=high)]
        return tp

    def ref(self, ref: str, path: str) -> Any:
        if ref in self.refs:
            return self.refs[ref]
        if ref in self.resolving:
            raise self.fail(path, f"recursive $ref {ref!r} is not supported")
        prefix = next((p for p in ("#/$defs/", "#/definitions/") if ref.startswith(p)), None)
        section = self.root.get("$defs" if prefix == "#/$defs/" else "definitions", {})
        name = ref[len(prefix) :] if prefix else ""
        if not prefix or name not in section:
            raise self.fail(path, f"cannot resolve $ref {ref!r} (only #/$defs/NAME and #/definitions/NAME)")
        self.resolving.add(ref)
        self.refs[ref] = self.type_of(section[name], f"{path}->{ref}", name)
        self.resolving.discard(ref)
        return self.refs[ref]


def _unique_items(items: list[Any]) -> list[Any]:
    seen: set[str] = set()
    for item in items:
        key = json.dumps(
            item.model_dump(mode="json") if isinstance(item, BaseModel) else item, sort_keys=True, default=str
        )
        if key in seen:
            raise ValueError(f"items must be unique; {key} appears more than once")
        seen.add(key)
    return items


def camel_case(name: str, *, suffix: str) -> str:
    words = re.split(r"[^0-9A-Za-z]+", name)
    return "".join(w[:1].upper() + w[1:] for w in words if w) + suffix


def type_from_schema(schema: Any, *, name: str, where: str = "") -> Any:
    """The Python type (pydantic model for objects) equivalent to a JSON Schema."""
    root = schema if isinstance(schema, Mapping) else {}
    return _SchemaCompiler(root, name, where).type_of(schema, "", name)


def model_from_schema(schema: Any, *, name: str, where: str = "output") -> type[BaseModel]:
    """Compile an object JSON Schema into a pydantic model.

    >>> M = model_from_schema({"type": "object", "properties": {"n": {"type": "integer", "maximum": 3}},
    ...                        "required": ["n"]}, name="Count")
    >>> M(n=2)
    Count(n=2)
    """
    tp = type_from_schema(schema, name=name, where=where)
    if not is_model(tp):
        raise TaskDefinitionError(f"{where}: the output schema must describe an object with properties")
    model: type[BaseModel] = tp
    return model


# ---------------------------------------------------------------- outputs


def output_model_for(tp: Any, *, name: str) -> tuple[type[BaseModel], bool]:
    """The model the LLM answers in, and whether it wraps a plain type in :data:`ANSWER_FIELD`."""
    if is_model(tp):
        return tp, False
    if tp is None or tp is type(None):
        raise TaskDefinitionError(f"task {name!r}: the output type cannot be None")
    wrapper: type[BaseModel] = create_model(  # type: ignore[call-overload]
        camel_case(name, suffix="Output"),
        __config__=_MODEL_CONFIG,
        **{ANSWER_FIELD: (tp, ...)},
    )
    return wrapper, True


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema the model must answer in.

    Pydantic's schema, with two changes: auto-generated titles are dropped (fewer
    prompt tokens, same meaning), and objects that list their properties are
    closed (``additionalProperties: false``) unless they say otherwise.  The
    output model would ignore extra keys anyway; forbidding them keeps a
    constrained model from inventing keys and spending its token budget on them.
    """
    schema = tidy(model.model_json_schema(by_alias=True))
    assert isinstance(schema, dict)
    return schema


_SCHEMA_MAPS = frozenset({"properties", "$defs", "definitions", "patternProperties"})
_DATA_KEYS = frozenset({"default", "const", "enum", "examples"})


def tidy(node: Any) -> Any:
    """Drop auto-generated titles and close objects that list their properties, in one pass."""
    if isinstance(node, list):
        return [tidy(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: tidy(sub) for name, sub in value.items()}
        elif key in _DATA_KEYS:
            out[key] = value
        else:
            out[key] = tidy(value)
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out
