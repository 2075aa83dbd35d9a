"""Confidence: which fields of an answer can be scored, and what their scores mean.

A field is *scored* when its schema allows a finite set of values: an
``enum``, a ``const``, a ``boolean``, or ``anyOf``/``oneOf`` branches that
are all finite (``Literal``, ``Enum`` and ``bool`` in Python tasks, and
per-call ``$eval`` enums such as ``classify``'s labels, resolved per call).
A local backend scores each such field by whole sequences: every allowed
value's complete token sequence in the JSON answer, closing tokens included
(the string's closing quote and the ``,``, ``}`` or ``]`` that follows the
value), gets its total log-probability given the prompt and the JSON prefix
decoded before it; the candidates are then normalised into probabilities.
Labels sharing leading tokens ("positive"/"position") are therefore told
apart exactly.  A field with one allowed value has probability 1.  Above
:data:`MAX_CANDIDATES` values a field is not scored by sequences: it gets
the free-text proxy instead, with a warning.

``TaskResult.confidence`` is the **product** of the probabilities of the
returned values of every scored field (the probability of the whole
combination, were the fields independent given the prefix); ``None`` when no
field was scored.  Free-text fields get ``TaskResult.text_logprobs``: the mean
log-probability of the tokens generated for the field, a proxy kept apart,
never mixed into ``confidence``.

>>> format_path(("order", "items", 0, "kind"))
'order.items[0].kind'
>>> parse_path('order.items[0].kind')
('order', 'items', 0, 'kind')
>>> from promptask.types import Scores
>>> scores = Scores({"label": {"positive": 0.7, "negative": 0.2, "neutral": 0.1}})
>>> round(confidence_of(scores, {"label": "positive"}), 3)
0.7
>>> choose_by_score({"label": "negative"}, scores)
{'label': 'positive'}
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from promptask.schemas.enforceable import plain_values
from promptask.schemas.refs import resolve_ref
from promptask.types import Scores

__all__ = [
    "MAX_CANDIDATES",
    "Span",
    "choose_by_score",
    "confidence_of",
    "finite_values",
    "format_path",
    "json_text",
    "node_at",
    "normalise",
    "parse_path",
    "scores_from_logprobs",
    "value_key",
    "value_spans",
]

MAX_CANDIDATES = 64
"""The most allowed values a field may have to be scored by whole sequences; above it, the proxy."""

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_PATH_PART = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_\-]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


def format_path(keys: Sequence[str | int]) -> str:
    """A field's path: ``a.b[0]``; keys that are not plain names are written ``["key"]``."""
    out = ""
    for key in keys:
        if isinstance(key, int):
            out += f"[{key}]"
        elif _IDENT.match(key):
            out += f".{key}" if out else key
        else:
            out += f"[{json.dumps(key, ensure_ascii=False)}]"
    return out


def parse_path(path: str) -> tuple[str | int, ...]:
    """The keys of a path written by :func:`format_path`."""
    keys: list[str | int] = []
    pos = 0
    while pos < len(path):
        match = _PATH_PART.match(path, pos)
        if match is None:
            raise ValueError(f"not a field path: {path!r}")
        name, index, quoted = match.groups()
        keys.append(name if name is not None else int(index) if index is not None else json.loads(quoted))
        pos = match.end()
    return tuple(keys)


def value_key(value: Any) -> str:
    """How a value is keyed in ``Scores.choices``: a string as itself, anything else as its JSON text."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def finite_values(node: Any, root: Any) -> list[Any] | None:
    """The allowed values of a schema node when they form a finite set, else ``None``."""
    node = _resolve(node, root)
    if not isinstance(node, Mapping):
        return None
    plain = plain_values(node)
    if plain is not None:
        return plain
    for key in ("anyOf", "oneOf"):
        branches = node.get(key)
        if isinstance(branches, list) and branches:
            values: list[Any] = []
            for branch in branches:
                found = finite_values(branch, root)
                if found is None:
                    return None
                values += [v for v in found if v not in values]
            return values
    return None


def _resolve(node: Any, root: Any) -> Any:
    """``node``, following its local ``$ref`` (a chain of them, up to 32 long)."""
    for _ in range(32):
        if not (isinstance(node, Mapping) and isinstance(node.get("$ref"), str)):
            break
        node = resolve_ref(root, node["$ref"])
    return node


def node_at(schema: Mapping[str, Any], keys: Sequence[str | int]) -> Any:
    """The schema node of the value at ``keys`` (as :func:`value_spans` walks it); ``None`` where unknown.

    >>> node_at({"properties": {"tags": {"items": {"enum": ["a", "b"]}}}}, ("tags", 3))
    {'enum': ['a', 'b']}
    """
    node: Any = schema
    for key in keys:
        node = _child(_resolve(node, schema), key)
    return _resolve(node, schema)


def _child(node: Any, key: str | int) -> Any:
    """The schema of an object's property ``key`` (a string) or an array's item ``key`` (a number)."""
    if not isinstance(node, Mapping):
        return None
    if isinstance(key, str):
        properties = node.get("properties")
        return properties.get(key) if isinstance(properties, Mapping) else None
    prefix = node.get("prefixItems")
    return prefix[key] if isinstance(prefix, list) and key < len(prefix) else node.get("items")


@dataclass(frozen=True)
class Span:
    """One value in an answer's JSON text: where it is, and what its schema allows."""

    path: str
    start: int
    end: int
    value: Any
    candidates: list[Any] | None  # the allowed values, for a finite field
    closer: str  # the structural character after the value (``,``, ``}``, ``]``), or ""


def value_spans(text: str, schema: Mapping[str, Any]) -> list[Span]:
    """The scored values of ``text`` (a JSON document), in order: finite fields and free strings.

    Raises ``ValueError`` when ``text`` is not JSON.
    """
    spans: list[Span] = []
    end = _scan(text, 0, schema, schema, (), spans)
    if text[end:].strip():
        raise ValueError("trailing text after the JSON value")
    return spans


_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_DECODER = json.JSONDecoder()


def _skip(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    return match.end() if match else pos


def _scan(text: str, pos: int, node: Any, root: Any, path: tuple[str | int, ...], spans: list[Span]) -> int:
    pos = _skip(text, pos)
    node = _resolve(node, root)
    candidates = finite_values(node, root)
    start = pos
    char = text[pos : pos + 1]
    if char == "{" and candidates is None:
        pos = _skip(text, pos + 1)
        if text[pos : pos + 1] == "}":
            return pos + 1
        while True:
            key, pos = _DECODER.raw_decode(text, _skip(text, pos))
            pos = _skip(text, pos)
            if text[pos : pos + 1] != ":":
                raise ValueError("expected ':'")
            pos = _scan(text, pos + 1, _child(node, key), root, (*path, key), spans)
            pos = _skip(text, pos)
            if text[pos : pos + 1] == "}":
                return pos + 1
            if text[pos : pos + 1] != ",":
                raise ValueError("expected ',' or '}'")
            pos += 1
    if char == "[" and candidates is None:
        pos = _skip(text, pos + 1)
        if text[pos : pos + 1] == "]":
            return pos + 1
        index = 0
        while True:
            pos = _skip(text, _scan(text, pos, _child(node, index), root, (*path, index), spans))
            if text[pos : pos + 1] == "]":
                return pos + 1
            if text[pos : pos + 1] != ",":
                raise ValueError("expected ',' or ']'")
            pos, index = pos + 1, index + 1
    if char in "{[" or char == '"':  # a finite field whose values are objects or arrays: skip it whole
        value, pos = _DECODER.raw_decode(text, pos)
    else:
        match = _NUMBER.match(text, pos)
        for literal, literal_value in (("true", True), ("false", False), ("null", None)):
            if text.startswith(literal, pos):
                value, pos = literal_value, pos + len(literal)
                break
        else:
            if match is None:
                raise ValueError(f"unexpected text at {pos}")
            value, pos = json.loads(match.group()), match.end()
    if candidates is not None or isinstance(value, str):
        after = _skip(text, pos)
        closer = text[after] if after < len(text) and text[after] in ",}]" else ""
        spans.append(Span(format_path(path), start, pos, value, candidates, closer))
    return pos


def normalise(logprobs: Sequence[float]) -> list[float]:
    """Probabilities from log-probabilities, normalised over the candidates (a softmax)."""
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]
    total = sum(weights)
    return [w / total for w in weights]


def _lookup(data: Any, keys: Sequence[str | int]) -> tuple[bool, Any]:
    for key in keys:
        if isinstance(data, list) and isinstance(key, int) and key < len(data):
            data = data[key]
            continue
        if not (isinstance(data, Mapping) and isinstance(key, str) and key in data):
            return False, None
        data = data[key]
    return True, data


def confidence_of(scores: Scores | None, data: Any) -> float | None:
    """The product of the probabilities of ``data``'s values at every scored path; ``None`` when none."""
    if scores is None or not scores.choices:
        return None
    product = 1.0
    found = False
    for path, values in scores.choices.items():
        present, value = _lookup(data, parse_path(path))
        if present:
            product *= float(values.get(value_key(value), 0.0))
            found = True
    return product if found else None


def choose_by_score(data: Any, scores: Scores) -> Any:
    """``data`` with each scored field set to its most probable allowed value (a copy)."""
    out = copy.deepcopy(data)
    for path, values in scores.choices.items():
        keys = parse_path(path)
        present, current = _lookup(out, keys)
        if not present or not values or not keys:
            continue
        best = max(values, key=lambda k: values[k])
        if best == value_key(current):
            continue
        _, parent = _lookup(out, keys[:-1])
        try:
            parent[keys[-1]] = best if isinstance(current, str) else json.loads(best)
        except ValueError:
            parent[keys[-1]] = best  # a string candidate in place of a value of another type
    return out


TokenLogprob = tuple[str, float, Mapping[str, float]]
"""One generated token as a server reports it: its text, log-probability, and its top alternatives."""


def scores_from_logprobs(tokens: Sequence[TokenLogprob], schema: Mapping[str, Any]) -> Scores | None:
    """Approximate scores from a server's token log-probabilities (``logprobs`` with ``top_logprobs``).

    The returned value of each finite field gets its whole-sequence
    log-probability (its tokens along the generated path, closing character
    included).  Another allowed value follows the generated path while its
    text agrees with it, and then takes the best alternative token at the
    first position where it departs, if that token is among the top
    alternatives (else it gets no mass): the rest of its tokens are unknown,
    so this overestimates it.  The candidates are then normalised.  ``None``
    when the tokens do not spell a JSON answer.
    """
    text = "".join(token for token, _, _ in tokens)
    try:
        spans = value_spans(text, schema)
    except ValueError:
        return None
    starts: list[int] = []
    offset = 0
    for token, _, _ in tokens:
        starts.append(offset)
        offset += len(token)
    choices: dict[str, dict[str, float]] = {}
    proxies: dict[str, float] = {}
    for span in spans:
        inside = [i for i, s in enumerate(starts) if s < span.end and s + len(tokens[i][0]) > span.start]
        if span.candidates is not None and len(span.candidates) == 1:
            choices[span.path] = {value_key(span.candidates[0]): 1.0}
        elif span.candidates is not None and len(span.candidates) <= MAX_CANDIDATES and inside:
            first = inside[0]
            lead = text[starts[first] : span.start]
            logprobs = [_path_logprob(tokens, first, lead + json_text(v) + span.closer) for v in span.candidates]
            if all(lp == -math.inf for lp in logprobs):
                continue
            probabilities = normalise(logprobs)
            choices[span.path] = {value_key(v): p for v, p in zip(span.candidates, probabilities, strict=True)}
        elif inside:
            proxies[span.path] = sum(tokens[i][1] for i in inside) / len(inside)
    return Scores(choices, proxies, method="logprobs")


def _path_logprob(tokens: Sequence[TokenLogprob], first: int, target: str) -> float:
    """The log-probability of ``target`` from token ``first`` on, as far as the reported tokens tell."""
    total = 0.0
    i, rest = first, target
    while rest and i < len(tokens):
        token, logprob, alternatives = tokens[i]
        if rest.startswith(token) and token:
            total, rest, i = total + logprob, rest[len(token) :], i + 1
            continue
        matching = [lp for alt, lp in alternatives.items() if alt and alt != token and rest.startswith(alt)]
        matching += [lp for alt, lp in alternatives.items() if alt and len(alt) > len(rest) and alt.startswith(rest)]
        return total + max(matching) if matching else -math.inf
    return total


def json_text(value: Any) -> str:
    """A value as compact JSON, as constrained decoding writes it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
