"""Keywords the engine skips are rewritten into ones it enforces, admitting the same values or fewer.

Each rewrite is checked two ways: values the rewritten schema admits are
drawn through the real constraint engine (``tests/schema_samples.py``) and
every one must pass the reference validator on the user's schema; and for
the exact rewrites, hand-picked values the user's schema admits must still
be admitted.  The same check runs over every schema of the benchmark corpus.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from schema_samples import documents

from promptask import BackendError
from promptask.schemas.decoding import ANSWER, decoding_schema, is_object_schema
from promptask.schemas.enforceable import FORMAT_PATTERNS, conjoin
from promptask.schemas.validation import SchemaValidator

BENCH = Path(__file__).resolve().parents[1] / "bench" / "schemas"
UNCOMPILABLE = {"state-machine-definition.json"}  # a circular $ref beside other keywords: the engine refuses it

FLIGHT = {
    "type": "object",
    "required": ["trip", "origin"],
    "properties": {"trip": {"enum": ["one_way", "round_trip"]}, "origin": {"enum": ["AUS", "SFO"]},
                   "return_date": {"type": "string", "format": "date"}},
    "if": {"properties": {"trip": {"const": "round_trip"}}},
    "then": {"required": ["return_date"]},
    "else": {"not": {"required": ["return_date"]}},
}  # fmt: skip
ORDER = {
    "type": "object",
    "required": ["kind"],
    "properties": {"kind": {"type": "string", "maxLength": 12}, "address": {"type": "string", "maxLength": 20},
                   "pickup_at": {"type": "string", "maxLength": 10}},
    "if": {"properties": {"kind": {"const": "delivery"}}, "required": ["kind"]},
    "then": {"required": ["address"]},
    "else": {"required": ["pickup_at"]},
}  # fmt: skip
NESTED_ELSE = {
    "type": "object",
    "required": ["backend"],
    "properties": {"backend": {"enum": ["local", "s3", "gcs"]}, "path": {"maxLength": 9, "type": "string"},
                   "region": {"enum": ["eu", "us"]}, "key": {"type": "string", "maxLength": 9}},
    "if": {"properties": {"backend": {"const": "local"}}},
    "then": {"required": ["path"]},
    "else": {"if": {"properties": {"backend": {"const": "s3"}}}, "then": {"required": ["region"]},
             "else": {"required": ["key"]}},
}  # fmt: skip
MEMBERS = {
    "type": "object",
    "required": ["category", "human"],
    "properties": {"category": {"enum": ["billing", "spam"]}, "human": {"type": "boolean"},
                   "team": {"enum": ["t1", "t2"]}},
    "allOf": [
        {"if": {"properties": {"category": {"const": "spam"}}}, "then": {"properties": {"human": {"const": False}}}},
        {"if": {"properties": {"human": {"const": True}}}, "then": {"required": ["team"]}},
    ],
}  # fmt: skip
DEPENDENT = {
    "type": "object",
    "required": ["id"],
    "properties": {"id": {"enum": [1, 2]}, "card": {"enum": ["1234"]}, "billing": {"enum": ["here"]},
                   "tip": {"enum": [5]}, "total": {"enum": [9]}},
    "dependentRequired": {"card": ["billing"], "tip": ["total"]},
}  # fmt: skip
NAMES = {
    "type": "object",
    "propertyNames": {"pattern": "^[A-Z]{3}$"},
    "additionalProperties": {"type": "number", "minimum": 0},
    "maxProperties": 3,
}
ONE_OF = {
    "type": "object",
    "required": ["label"],
    "properties": {"label": {"enum": ["a"]}, "href": {"enum": ["/x"]}, "submenu": {"type": "array", "maxItems": 1,
                   "items": {"enum": ["b"]}}},
    "oneOf": [{"required": ["href"]}, {"required": ["submenu"]}],
}  # fmt: skip
NOT_BOTH = {
    "type": "object",
    "required": ["frequency"],
    "properties": {"frequency": {"enum": ["daily"]}, "count": {"enum": [3]}, "until": {"enum": ["2027-01-01"]}},
    "not": {"required": ["count", "until"]},
}  # fmt: skip
EMAIL = {"type": "object", "required": ["to"], "properties": {"to": {"type": "string", "format": "email"}}}

REWRITES: dict[str, tuple[dict[str, Any], list[Any]]] = {
    "if/then/else on an enum": (FLIGHT, [{"trip": "one_way", "origin": "AUS"},
                                         {"trip": "round_trip", "origin": "SFO", "return_date": "2027-02-01"}]),
    "if/then/else on a free string": (ORDER, [{"kind": "delivery", "address": "1 Main St"},
                                              {"kind": "pickup", "pickup_at": "noon"}]),
    "an else that is a conditional": (NESTED_ELSE, [{"backend": "local", "path": "/tmp"},
                                                    {"backend": "s3", "region": "eu"}, {"backend": "gcs", "key": "k"}]),
    "conditionals as allOf members": (MEMBERS, [{"category": "spam", "human": False},
                                                {"category": "billing", "human": True, "team": "t2"},
                                                {"category": "billing", "human": False}]),
    "dependentRequired": (DEPENDENT, [{"id": 1}, {"id": 2, "card": "1234", "billing": "here"},
                                      {"id": 1, "tip": 5, "total": 9}, {"id": 1, "billing": "here"}]),
    "propertyNames": (NAMES, [{"EUR": 1.0, "USD": 1.1}, {}]),
    "oneOf told apart by required keys": (ONE_OF, [{"label": "a", "href": "/x"}, {"label": "a", "submenu": ["b"]}]),
    "not required": (NOT_BOTH, [{"frequency": "daily", "count": 3}, {"frequency": "daily"}]),
    "format email": (EMAIL, [{"to": "ana.lima@example.org"}]),
}  # fmt: skip


def engine_warnings(schema: dict[str, Any]) -> list[str]:
    import llguidance

    grammar = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema), defaults={"lenient": True})
    return list(llguidance.LLMatcher.validate_grammar_with_warnings(grammar)[1])


def validates(schema: Any, value: Any) -> bool:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return bool(cls(schema, format_checker=cls.FORMAT_CHECKER).is_valid(value))


@pytest.mark.parametrize(("schema", "admitted"), REWRITES.values(), ids=REWRITES)
def test_a_rewrite_is_enforced_admits_only_what_the_users_schema_admits_and_keeps_the_values_it_should(
    schema: dict[str, Any], admitted: list[Any]
) -> None:
    rewritten = decoding_schema(schema)
    unwrap = not is_object_schema(schema)
    assert not [w for w in engine_warnings(rewritten) if "Unimplemented" in w or "oneOf" in w]
    drawn = list(documents(rewritten, 40, seed=7))
    assert len(drawn) >= 30
    for value in drawn:
        assert validates(schema, value[ANSWER] if unwrap else value), value
    exact = all(schema is not inexact for inexact in (NOT_BOTH, ONE_OF, EMAIL, ORDER))
    for value in admitted if exact else admitted[:1]:
        assert validates(schema, value)
        assert validates(rewritten, {ANSWER: value} if unwrap else value), value  # exact: nothing lost


DATE = FORMAT_PATTERNS["date"]


def test_a_conditional_splits_exactly_on_a_finite_property() -> None:
    cases = decoding_schema(FLIGHT)["properties"][ANSWER]["anyOf"]
    assert [(c["properties"]["trip"], c["required"], c["properties"]["return_date"]) for c in cases] == [
        ({"enum": ["round_trip"]}, ["trip", "origin", "return_date"], {"type": "string", "pattern": DATE}),
        ({"enum": ["one_way"]}, ["trip", "origin"], False),
    ]


def test_conjoin_merges_objects_distributes_cases_and_says_when_it_cannot() -> None:
    assert conjoin({"properties": {"a": {"enum": [1, 2]}}}, {"properties": {"a": {"const": 2}}}) == {
        "properties": {"a": {"enum": [2]}}
    }
    assert conjoin({"enum": [1]}, {"const": 2}) is False
    assert conjoin({"required": ["a"]}, {"anyOf": [{"required": ["b"]}, {"required": ["c"]}]}) == {
        "anyOf": [{"required": ["a", "b"]}, {"required": ["a", "c"]}]
    }
    assert conjoin({"properties": {"x": {}}}, {"properties": {"y": {}}, "additionalProperties": False}) == {
        "properties": {"x": False, "y": {}},
        "additionalProperties": False,
    }  # x is extra to the second schema, which forbids it
    assert conjoin({"$ref": "#/$defs/a"}, {"required": ["b"]}) is None
    assert conjoin({"minimum": 1}, {"minimum": 2}) is None


def test_references_into_a_definition_leave_the_schema_unrewritten() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"$ref": "#/properties/a"}},
              "dependentRequired": {"a": ["b"]}}  # fmt: skip
    assert decoding_schema(schema)["dependentRequired"] == {"a": ["b"]}
    with_date = {**schema, "properties": {**schema["properties"], "c": {"type": "string", "format": "date"}}}
    assert decoding_schema(with_date)["properties"]["c"] == {"type": "string", "pattern": DATE}  # in place


@pytest.mark.parametrize("name", FORMAT_PATTERNS)
def test_formats_decode_as_patterns_both_validators_accept(name: str) -> None:
    ours = SchemaValidator({"type": "string", "format": name})
    drawn = list(documents({"type": "string", "pattern": FORMAT_PATTERNS[name], "maxLength": 40}, 60, seed=3))
    assert len(drawn) >= 40
    for value in drawn:
        assert ours.is_valid(value), value
        assert validates({"type": "string", "format": name}, value), value


def test_no_corpus_schema_is_widened() -> None:
    """Over the benchmark's schemas: every value the engine admits that passes the validator on the decoding
    schema (what the engine skips is checked after decoding: look-arounds, uniqueItems, formats it does not
    know) passes the validator on the user's schema."""
    checked = 0
    for file in sorted(BENCH.glob("*/*.json")):
        schema = json.loads(file.read_text())
        rewritten = decoding_schema(schema)
        unwrap = not is_object_schema(schema)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # patterns the engine lacks are named in a warning
            if file.name in UNCOMPILABLE:
                with pytest.raises(BackendError, match="circular"):
                    list(documents(rewritten, 1))
                continue
            drawn = list(documents(rewritten, 12, seed=1))
            for value in drawn:
                if validates(rewritten, value):
                    assert validates(schema, value[ANSWER] if unwrap else value), (file.name, value)
                    checked += 1
    assert checked > 1000
