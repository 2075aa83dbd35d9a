"""Token-level JSON Schema constraints for local backends, on llguidance.

A :class:`SchemaConstraints` belongs to one tokenizer.  It compiles each
schema once and hands out a fresh :class:`TokenConstraint` per generation, a
cheap copy of the compiled matcher.  Compiled schemas are kept in a
least-recently-used cache of :data:`COMPILED_SCHEMAS` entries, so a long batch
whose rows each bring a schema of their own (``$eval`` values) holds at most
that many.  At each step the constraint masks the logits so only tokens that
keep the output a valid prefix of a schema-conforming JSON document can be
chosen, and it reports the tokens the grammar forces next (fixed key names,
punctuation), which a backend can evaluate in one batch instead of sampling
them one by one.

JSON is compiled without free whitespace: answers are compact, a small model
cannot wander off into newlines, and every token goes to content.

llguidance never raises on a schema it cannot handle; its matcher enters an
error state instead, which is checked here and raised as
:class:`~promptask.BackendError`.  One kind of schema is handled rather than
refused: a ``pattern`` the engine cannot enforce (look-around, for one) is
left out of the decoding schema, so that field is decoded without it; the
output is still validated against the full schema, and a warning names the
field once per process.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time
import warnings
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from typing import Any

import llguidance
import numpy as np
import numpy.typing as npt

from promptask.errors import BackendError
from promptask.schemas.decoding import subschemas
from promptask.types import Sampling

__all__ = ["COMPILED_SCHEMAS", "SchemaConstraints", "TokenConstraint", "choose_token", "fill_masks"]

COMPILE_OPTIONS: Any = {"whitespace_flexible": False, "lenient": True}
COMPILED_SCHEMAS = 128
"""Compiled schemas kept per tokenizer (least recently used dropped first)."""


class TokenConstraint:
    """The state of one constrained generation."""

    def __init__(self, matcher: llguidance.LLMatcher, n_vocab: int) -> None:
        self._matcher = matcher
        self._n_vocab = n_vocab
        self._bits = np.zeros((n_vocab + 31) // 32, dtype=np.int32)

    def allowed(self) -> npt.NDArray[np.bool_]:
        """A boolean mask over the vocabulary: which tokens may come next."""
        self._matcher.unsafe_compute_mask_ptr(self._bits.ctypes.data, self._bits.nbytes)
        self._check()
        bits = np.unpackbits(self._bits.view(np.uint8), bitorder="little", count=self._n_vocab)
        return bits.view(np.bool_)

    def consume(self, token: int) -> None:
        """Advance past a sampled token."""
        self._matcher.consume_token(token)
        self._check()

    def forced(self) -> list[int]:
        """Tokens the grammar forces next, already consumed; evaluate them without sampling."""
        tokens = self._matcher.compute_ff_tokens()
        if tokens:
            self._matcher.consume_tokens(tokens)
            self._check()
        return tokens

    def finished(self) -> bool:
        """The output is complete: nothing but end-of-sequence may follow."""
        return self._matcher.is_stopped()

    def _check(self) -> None:
        if self._matcher.is_error():
            raise BackendError(f"schema constraint failed: {self._matcher.get_error()}")


_executor: llguidance.LLExecutor | None = None
_executor_lock = threading.Lock()


def fill_masks(rows: Sequence[tuple[TokenConstraint, int]], bitmask: npt.NDArray[np.int32]) -> None:
    """Compute several constraints' masks at once, in parallel, into rows of ``bitmask``.

    ``rows`` pairs each constraint with its row; ``bitmask`` is C-contiguous,
    one row of ``(n_vocab + 31) // 32`` words per batch row, bit ``t`` set
    where token ``t`` is allowed.
    """
    global _executor
    if not rows:
        return
    with _executor_lock:
        if _executor is None:
            _executor = llguidance.LLExecutor(num_threads=os.cpu_count() or 1)
    if bitmask.dtype != np.int32 or bitmask.ndim != 2 or not bitmask.flags["C_CONTIGUOUS"]:
        raise ValueError("bitmask must be a C-contiguous 2-D int32 array")  # it is written through a raw pointer
    if any(not 0 <= row < bitmask.shape[0] for _, row in rows):
        raise ValueError("a row index is outside the bitmask")
    pairs = [(constraint._matcher, row) for constraint, row in rows]
    _executor.unsafe_compute_mask_ptr(pairs, bitmask.ctypes.data, bitmask.shape[1] * 4, bitmask.shape[0])
    for constraint, _ in rows:
        constraint._check()


class SchemaConstraints:
    """Compiles JSON Schemas for one tokenizer, once each, and starts constrained generations."""

    def __init__(self, tokenizer: llguidance.LLTokenizer, n_vocab: int, *, capacity: int = COMPILED_SCHEMAS) -> None:
        self._tokenizer = tokenizer
        self._n_vocab = n_vocab
        self.capacity = capacity
        """How many compiled schemas are kept (least recently used dropped first)."""
        self._compiled: OrderedDict[str, llguidance.LLMatcher] = OrderedDict()
        self._lock = threading.Lock()
        self.compile_seconds: deque[float] = deque(maxlen=4096)  # the latest compile times, for benchmarks

    def __len__(self) -> int:
        """How many compiled schemas are held."""
        return len(self._compiled)

    def start(self, schema: Mapping[str, Any]) -> TokenConstraint:
        """A fresh constraint for one generation that must match ``schema``."""
        key = json.dumps(schema, separators=(",", ":"))  # key order matters: properties come out in it
        with self._lock:
            prototype = self._compiled.get(key)
            if prototype is None:
                prototype = self._compiled[key] = self._compile(key)
                while len(self._compiled) > self.capacity:
                    self._compiled.popitem(last=False)
            else:
                self._compiled.move_to_end(key)
        return TokenConstraint(prototype.deep_copy(), self._n_vocab)

    def _compile(self, schema_json: str) -> llguidance.LLMatcher:
        started = time.perf_counter()
        matcher = self._matcher(schema_json)
        if matcher.is_error() and "regex" in matcher.get_error():
            matcher = self._matcher(json.dumps(without_unenforceable_patterns(json.loads(schema_json), self)))
        if matcher.is_error():
            raise BackendError(f"the output schema cannot be enforced while decoding: {matcher.get_error()}")
        self.compile_seconds.append(time.perf_counter() - started)
        return matcher

    def _matcher(self, schema_json: str) -> llguidance.LLMatcher:
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(schema_json, defaults=COMPILE_OPTIONS)
        except ValueError as exc:
            raise BackendError(f"the output schema is not valid JSON Schema: {exc}") from None
        return llguidance.LLMatcher(self._tokenizer, grammar, log_level=0)

    def enforceable(self, pattern: str) -> bool:
        """Whether decoding can follow ``pattern``."""
        return not self._matcher(json.dumps({"type": "string", "pattern": pattern})).is_error()


_warned: set[tuple[str, str]] = set()


def without_unenforceable_patterns(schema: Any, constraints: SchemaConstraints) -> Any:
    """``schema`` without the patterns decoding cannot follow; each one's field is named in a warning, once."""
    tree = copy.deepcopy(schema)

    def visit(node: Any, path: str) -> None:
        if not isinstance(node, dict):
            return
        pattern = node.get("pattern")
        if isinstance(pattern, str) and not constraints.enforceable(pattern):
            del node["pattern"]
            if (pattern, path) not in _warned:
                _warned.add((pattern, path))
                warnings.warn(
                    f"field {path or '(the answer)'}: its pattern {pattern!r} cannot be enforced while decoding "
                    "(the constraint engine lacks some of it, such as look-around or \\b); it is decoded without it "
                    "and validated afterwards",
                    RuntimeWarning,
                    stacklevel=2,
                )
        patterned = node.get("patternProperties")
        if isinstance(patterned, dict) and not all(constraints.enforceable(key) for key in patterned):
            node.pop("patternProperties")  # key patterns the engine lacks: the keys are left free, as before
            if node.get("additionalProperties") is False:
                node["additionalProperties"] = next(iter(patterned.values())) if len(patterned) == 1 else {}
        for keys, sub in subschemas(node):
            name = str(keys[-1]) if keys[0] == "properties" else ""
            visit(sub, f"{path}.{name}".strip(".") if name else path)

    visit(tree, "")
    return tree


def choose_token(
    logits: npt.NDArray[np.float32],
    allowed: npt.NDArray[np.bool_] | None,
    sampling: Sampling,
    rng: np.random.Generator | None,
) -> int:
    """Greedy or seeded top-p sampling, over the allowed tokens only."""
    candidates = np.flatnonzero(allowed) if allowed is not None else None
    scores = logits[candidates] if candidates is not None else logits
    if scores.size == 0:
        raise BackendError("schema constraint allows no token at this point")
    if rng is None:
        best = int(np.argmax(scores))
    else:
        z = scores.astype(np.float64) / sampling.temperature
        probs = np.exp(z - z.max())
        probs /= probs.sum()
        if sampling.top_p < 1.0:
            order = np.argsort(-probs)
            keep = order[: int(np.searchsorted(np.cumsum(probs[order]), sampling.top_p)) + 1]
            mask = np.zeros_like(probs)
            mask[keep] = probs[keep]
            probs = mask / mask.sum()
        best = int(rng.choice(probs.size, p=probs))
    return int(candidates[best]) if candidates is not None else best
