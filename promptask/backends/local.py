"""The local decoding core: what the in-process backends (llama.cpp, transformers) share.

An engine keeps only what is its own: loading a model, applying its chat
template, evaluating tokens and reading logits.  Everything between the
request and the logits, and between the logits and the
:class:`~promptask.Generation`, is here:

* :class:`ModelPool`: one loaded model per (file, settings) per process,
  shared by every backend object that names it, closed at exit;
* :class:`LocalModel`: a loaded model's lock (calls on one model are
  serialized), its chat prompt with the system-role fallback, the context
  check, and its schema compiler, made on first use;
* :class:`DecodeRow`: one request being decoded: its constraint, its
  sampler (greedy, or seeded when ``temperature > 0``; a request without a
  seed gets the backend's), its repetition penalties, its token limit, the
  tokens so far and why it stopped.  A row with a schema watches its JSON as
  it grows (:mod:`promptask.backends.repetition`) and stops as soon as a
  string value falls into a loop, instead of writing it to the token limit;
* :func:`score_row`: the scores of a finished row's fields (see
  :mod:`promptask.scoring`), from two engine hooks,
  :meth:`LocalModel.tokenize_text` and :meth:`LocalModel.score_continuations`.
  Each finite field's candidates are scored in one batch behind the prompt
  and the JSON prefix decoded before the field (which stay in the KV cache).
"""

from __future__ import annotations

import atexit
import functools
import math
import threading
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from promptask.backends.constraints import SchemaConstraints, TokenConstraint, choose_token
from promptask.backends.repetition import JsonWatch
from promptask.errors import BackendError
from promptask.scoring import MAX_CANDIDATES, finite_values, json_text, node_at, normalise, value_key, value_spans
from promptask.types import Generation, GenerationRequest, Message, Sampling, Scores, Usage

__all__ = [
    "PENALTY_WINDOW",
    "DecodeRow",
    "LocalModel",
    "ModelPool",
    "fold_system",
    "known_logprobs",
    "leaves",
    "next_tokens",
    "logsumexp",
    "row_logsumexp",
    "score_row",
]

PENALTY_WINDOW = 64
"""The most recent tokens written inside string values that the repetition penalties look at."""
_TEXT_TOKENS_KEPT = 65536  # texts whose tokens a model remembers (forgotten all at once when full)
MAX_STEP_CHOICES = 4096
"""A scored row keeps a step's log-probabilities when the schema allows at most this many tokens there."""

LogProbs = Mapping[int, float] | npt.NDArray[np.float32]
"""Next-token log-probabilities: some tokens' ({token: log-probability}), or the whole vocabulary's (an array)."""

K = TypeVar("K", bound=Hashable)
M = TypeVar("M", bound="LocalModel")


class LocalModel:
    """A model loaded in this process (subclassed by each engine).

    An engine sets :attr:`context` (tokens), :attr:`template_errors` (what its
    chat template raises for a role it rejects) and implements
    :meth:`tokenize_chat` and :meth:`constraint_tokenizer`.
    """

    context: int = 0
    template_errors: tuple[type[BaseException], ...] = ()

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._constraints: SchemaConstraints | None = None
        self._constraints_lock = threading.Lock()
        self._pieces: dict[int, str] = {}
        self._text_tokens: dict[str, tuple[int, ...]] = {}

    def token_text(self, token: int) -> str:
        """The text of one token (remembered: the same few thousand tokens recur)."""
        text = self._pieces.get(token)
        if text is None:
            text = self._pieces[token] = self.piece(token)
        return text

    def text_tokens(self, text: str) -> tuple[int, ...]:
        """:meth:`tokenize_text`, remembered: a finite field's candidates are tokenized at every call that scores it."""
        tokens = self._text_tokens.get(text)
        if tokens is None:
            if len(self._text_tokens) >= _TEXT_TOKENS_KEPT:
                self._text_tokens.clear()
            tokens = self._text_tokens[text] = tuple(self.tokenize_text(text))
        return tokens

    def piece(self, token: int) -> str:
        """The text one token decodes to, on its own."""
        raise NotImplementedError

    def tokenize_chat(self, chat: list[dict[str, str]]) -> list[int]:
        """The prompt tokens for these chat messages, ending with the assistant's turn."""
        raise NotImplementedError

    def constraint_tokenizer(self) -> tuple[Any, int]:
        """The llguidance tokenizer for this model's vocabulary, and the vocabulary size."""
        raise NotImplementedError

    def tokenize_text(self, text: str) -> list[int]:
        """Tokens of plain text in the middle of an answer (no start token, no special tokens)."""
        raise NotImplementedError

    def score_continuations(
        self,
        context: Sequence[int],
        continuations: Sequence[Sequence[int]],
        known: Callable[[tuple[int, ...]], LogProbs | None] | None = None,
    ) -> list[list[float]]:
        """The log-probability of each token of each continuation after ``context`` (raw logits, temperature 1).

        ``known(prefix)``, where given, returns next-token log-probabilities
        already computed after ``context`` plus ``prefix`` (by decoding, or
        ahead of it), or ``None``; an engine evaluates only what it lacks.
        Engines evaluate the context once (reusing their KV cache where they
        can) and the continuations together, in one batch where they can.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Free what the engine holds outside Python's memory management."""

    @property
    def constraints(self) -> SchemaConstraints:
        """The schema compiler for this vocabulary (built on the first constrained request)."""
        with self._constraints_lock:
            if self._constraints is None:
                tokenizer, n_vocab = self.constraint_tokenizer()
                self._constraints = SchemaConstraints(tokenizer, n_vocab)
            return self._constraints

    def prompt_tokens(self, messages: Sequence[Message]) -> list[int]:
        """Tokens of the chat prompt; refused when it leaves no room in the context for an answer."""
        chat = [m.to_dict() for m in messages]
        try:
            tokens = self.tokenize_chat(chat)
        except self.template_errors:
            # Some templates (Gemma's, for one) reject the system role: fold it into the first user turn.
            tokens = self.tokenize_chat(fold_system(chat))
        if len(tokens) >= self.context:
            raise BackendError(
                f"the prompt is {len(tokens)} tokens but the context holds {self.context}; "
                "shorten the input or use a model (or n_ctx) with a longer context"
            )
        return tokens


def fold_system(chat: list[dict[str, str]]) -> list[dict[str, str]]:
    """For chat templates without a system role: the system text goes first in the first user turn."""
    system = "\n\n".join(m["content"] for m in chat if m["role"] == "system")
    rest = [dict(m) for m in chat if m["role"] != "system"]
    if system and rest and rest[0]["role"] == "user":
        rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
    elif system:
        rest.insert(0, {"role": "user", "content": system})
    return rest


class ModelPool(Generic[K, M]):
    """Loaded models by their settings: each loaded once per process, all closed at interpreter exit."""

    def __init__(self, load: Callable[[K], M]) -> None:
        self._load = load
        self._models: dict[K, M] = {}
        self._lock = threading.Lock()
        atexit.register(self.close)

    def get(self, key: K) -> M:
        with self._lock:  # held while loading: two threads asking for one model load it once
            model = self._models.get(key)
            if model is None:
                model = self._models[key] = self._load(key)
            return model

    def close(self) -> None:
        # Free models while the engine's bindings still exist; left to interpreter
        # teardown, some finalizers fail with noise on standard error.
        with self._lock:
            for model in self._models.values():
                model.close()
            self._models.clear()


class DecodeRow:
    """One request being decoded, token by token, by whichever engine."""

    def __init__(
        self,
        request: GenerationRequest,
        prompt: Sequence[int],
        model: LocalModel,
        *,
        seed: int,
    ) -> None:
        sampling = request.sampling
        self.sampling: Sampling = sampling if sampling.seed is not None else replace(sampling, seed=seed)
        self.model = model
        self.prompt = list(prompt)
        self.limit = min(sampling.max_tokens, model.context - len(self.prompt))
        self.constraint: TokenConstraint | None = (
            model.constraints.start(request.schema) if request.schema is not None else None
        )
        self.watch = JsonWatch() if request.schema is not None else None
        self.rng = np.random.default_rng(self.sampling.seed) if sampling.temperature > 0 else None
        self.penalized = sampling.repeat_penalty != 1.0 or sampling.frequency_penalty != 0.0
        self.in_strings: list[int] = []  # tokens written inside string values, for the penalties
        self.tokens: list[int] = []
        self.finish: str | None = None if self.limit > 0 else "length"
        self.note = ""
        self.scored = request.scores and request.schema is not None
        self.schema = request.schema
        self.logprobs: list[float] = []  # per token in ``tokens`` (NaN: forced, not chosen), when scored
        self.pending_logprob = math.nan  # the log-probability of the token being accepted
        # Next-token log-probabilities already computed, for scoring: by (n, extra), meaning after the first n
        # generated tokens and then the tokens ``extra`` (see remember() and known_after()).  Decoding steps
        # with few allowed tokens (where a finite field's value starts) keep theirs as {token: log-probability};
        # what an engine evaluated ahead of time (see upcoming()) is a whole row or the tokens scoring reads.
        self.known: dict[tuple[int, tuple[int, ...]], LogProbs] = {}
        self._ahead_at: set[int] = set()  # the n of every key in ``known`` with tokens after it (see known_after)

    @property
    def done(self) -> bool:
        return self.finish is not None

    def allowed(self) -> npt.NDArray[np.bool_] | None:
        """Which tokens the schema allows next (``None``: any)."""
        return self.constraint.allowed() if self.constraint is not None else None

    def penalize(self, logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """``logits`` with this row's repetition penalties applied (a copy; the input is left as it is)."""
        if not self.penalized or not self.in_strings:
            return logits
        ids, counts = np.unique(np.asarray(self.in_strings[-PENALTY_WINDOW:]), return_counts=True)
        out: npt.NDArray[np.float32] = np.array(logits, dtype=np.float32)
        scores = out[ids]
        penalty = self.sampling.repeat_penalty
        out[ids] = np.where(scores > 0, scores / penalty, scores * penalty) - self.sampling.frequency_penalty * counts
        return out

    def choose(self, logits: npt.NDArray[np.float32], allowed: npt.NDArray[np.bool_] | None) -> int:
        """The next token: greedy, or sampled with this row's seeded generator, after the penalties."""
        token = choose_token(self.penalize(logits), allowed, self.sampling, self.rng)
        if self.scored:
            normaliser = logsumexp(logits)
            self.pending_logprob = float(logits[token]) - normaliser
            ids = np.flatnonzero(allowed) if allowed is not None else None
            if ids is not None and len(ids) <= MAX_STEP_CHOICES:
                logprobs = (logits[ids] - normaliser).tolist()
                self.remember(len(self.tokens), (), dict(zip(ids.tolist(), logprobs, strict=True)))
        return token

    def remember(self, n: int, prefix: tuple[int, ...], logprobs: LogProbs) -> None:
        """Store the next-token log-probabilities after the first ``n`` generated tokens and then ``prefix``."""
        self.known[n, prefix] = logprobs
        if prefix:
            self._ahead_at.add(n)

    def known_after(self, n: int, prefix: tuple[int, ...]) -> LogProbs | None:
        """The log-probabilities stored for what follows the first ``n`` generated tokens and then ``prefix``,
        under whichever key they were stored: also as ``(m, tokens[m:n] + prefix)`` from an earlier step ``m``
        that evaluated ahead what decoding then wrote."""
        found = self.known.get((n, prefix))
        if found is not None:
            return found
        for m in self._ahead_at:  # only a key with tokens after its n can stand for a later n
            if m < n and (found := self.known.get((m, tuple(self.tokens[m:n]) + prefix))) is not None:
                return found
        return None

    def upcoming(self) -> list[list[int]] | None:
        """Continuations worth evaluating ahead of time: when the answer is about to write (or has just opened)
        the value of a field with a finite set of values, each value's remaining tokens with each closing
        character that can follow it, so an engine can evaluate them with the tokens it evaluates now and
        :func:`score_row` finds them in :attr:`known`.  ``None`` elsewhere (and for rows not scored)."""
        watch = self.watch
        if not self.scored or watch is None or self.schema is None:
            return None
        if watch.awaiting_value and not watch.in_string:
            written = ""
        elif watch.in_value_string and "\\" not in watch.string:
            written = '"' + "".join(watch.string)
        else:
            return None
        keys = watch.keys()
        candidates = finite_values(node_at(self.schema, keys), self.schema) if keys is not None else None
        if candidates is None or not 1 < len(candidates) <= MAX_CANDIDATES:
            return None
        closers = ([",", "]"] if watch.stack[-1].kind == "array" else [",", "}"]) if watch.stack else [""]
        texts = [json_text(value) for value in candidates]
        continuations = [
            list(self.model.text_tokens(text[len(written) :] + closer))
            for text in texts
            if text.startswith(written)
            for closer in closers
        ]
        _, missing = known_logprobs(continuations, functools.partial(self.known_after, len(self.tokens)))
        return continuations if missing else None  # else evaluated ahead at an earlier step

    def accept(self, token: int, *, end_of_sequence: bool, take_forced: bool = False) -> list[int]:
        """Record the chosen token; the tokens to evaluate next (``[]`` once the row is done).

        With ``take_forced``, tokens the grammar forces next (key names,
        punctuation) are appended at once, for engines that evaluate several
        tokens in one step.
        """
        if end_of_sequence:
            self.finish = "stop"
            return []
        step = [token]
        if self.watch is not None and self.watch.in_value_string:
            self.in_strings.append(token)
        if self.constraint is not None:
            self.constraint.consume(token)
            if not self.constraint.finished() and take_forced:
                step += self.constraint.forced()[: max(0, self.limit - len(self.tokens) - 1)]
        self.tokens += step
        if self.scored:
            self.logprobs += [self.pending_logprob] + [math.nan] * (len(step) - 1)
            self.pending_logprob = math.nan
        if self.watch is not None:
            problem = self.watch.feed("".join(self.model.token_text(t) for t in step))
            if problem:
                self.finish, self.note = "repetition", problem
                return []
        if self.constraint is not None and self.constraint.finished():
            self.finish = "stop"
            return []
        if len(self.tokens) >= self.limit:
            self.finish = "length"
            return []
        return step

    def generation(
        self,
        text: str,
        *,
        cached_tokens: int = 0,
        timings: Mapping[str, float] | None = None,
        scores: Scores | None = None,
    ) -> Generation:
        return Generation(
            text=text,
            finish_reason=self.finish or "length",
            usage=Usage(len(self.prompt), len(self.tokens), cached_tokens),
            timings=dict(timings or {}),
            note=self.note,
            scores=scores,
        )


def logsumexp(logits: npt.NDArray[np.float32]) -> float:
    """The log of the softmax's normaliser: a token's log-probability is its logit minus this."""
    return float(row_logsumexp(logits[np.newaxis])[0])


def row_logsumexp(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """:func:`logsumexp` of each row of a 2-D array (the exponentials in float32, their sums in float64)."""
    top = rows.max(axis=1, keepdims=True)
    normalisers: npt.NDArray[np.float64] = np.log(np.exp(rows - top).sum(axis=1, dtype=np.float64))
    normalisers += top[:, 0]
    return normalisers


def known_logprobs(
    continuations: Sequence[Sequence[int]], known: Callable[[tuple[int, ...]], LogProbs | None] | None
) -> tuple[list[list[float]], set[tuple[int, ...]]]:
    """What ``known`` already gives for :meth:`LocalModel.score_continuations`: each continuation token's
    log-probability (NaN where missing), and the prefixes whose next-token log-probabilities are missing.

    >>> known_logprobs([[5, 6], [7]], lambda prefix: {5: -0.5, 7: -1.5} if prefix == () else None)
    ([[-0.5, nan], [-1.5]], {(5,)})
    """
    results = [[math.nan] * len(c) for c in continuations]
    missing: set[tuple[int, ...]] = set()
    for i, continuation in enumerate(continuations):
        for j, token in enumerate(continuation):
            prefix = tuple(continuation[:j])
            found = known(prefix) if known is not None else None
            value = (
                None if found is None else (float(found[token]) if isinstance(found, np.ndarray) else found.get(token))
            )
            if value is None:
                missing.add(prefix)
            else:
                results[i][j] = value
    return results, missing


def leaves(prefixes: Iterable[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """The prefixes that lead to no other, sorted (evaluating one evaluates its ancestors on the way);
    ``[()]`` when every prefix is empty.

    >>> leaves([(1,), (1, 2), (3,), ()])
    [(1, 2), (3,)]
    """
    nodes = {p[:j] for p in prefixes for j in range(1, len(p) + 1)}
    parents = {p[:-1] for p in nodes}
    return sorted(p for p in nodes if p not in parents) or [()]


def next_tokens(continuations: Sequence[Sequence[int]], prefix: tuple[int, ...]) -> set[int]:
    """The tokens that follow ``prefix`` in the continuations that start with it.

    >>> sorted(next_tokens([[1, 2], [1, 3], [4]], (1,)))
    [2, 3]
    """
    n = len(prefix)
    return {c[n] for c in continuations if len(c) > n and tuple(c[:n]) == prefix}


def _common_prefix(sequences: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all ``sequences`` share."""
    shortest = min(len(s) for s in sequences)
    for i in range(shortest):
        if any(s[i] != sequences[0][i] for s in sequences):
            return i
    return shortest


_warned: dict[Any, Any] = {}  # the warnings registry of score_row's message


def score_row(row: DecodeRow) -> Scores | None:
    """The scores of a finished row that asked for them (``None``: not asked, or the answer is not JSON).

    For each finite field the context is the prompt plus the generated
    tokens that end before the field's value; a token that straddles the
    value's start is dropped from the context and its text put in front of
    every candidate.  Each candidate is the text of the value, then the
    structural character that followed it, tokenized as plain text.
    """
    if not row.scored or row.finish != "stop" or row.schema is None:
        return None
    model = row.model
    pieces = [model.token_text(t) for t in row.tokens]
    text = "".join(pieces)
    try:
        spans = value_spans(text, row.schema)
    except ValueError:
        return None
    ends: list[int] = []
    offset = 0
    for piece in pieces:
        offset += len(piece)
        ends.append(offset)
    choices: dict[str, dict[str, float]] = {}
    proxies: dict[str, float] = {}
    for span in spans:
        candidates = span.candidates
        if candidates is not None and len(candidates) == 1:
            choices[span.path] = {value_key(candidates[0]): 1.0}
            continue
        if candidates is not None and len(candidates) <= MAX_CANDIDATES:
            before = sum(1 for end in ends if end <= span.start)  # tokens wholly before the value
            lead = text[ends[before - 1] if before else 0 : span.start]
            continuations = [model.text_tokens(lead + json_text(value) + span.closer) for value in candidates]
            # Tokens every candidate starts with add the same log-probability to each: they join the context.
            shared = _common_prefix(continuations)
            context = [*row.prompt, *row.tokens[:before], *continuations[0][:shared]]
            decoded = tuple(row.tokens[before : before + shared]) == continuations[0][:shared]  # the context's end
            known = functools.partial(row.known_after, before + shared) if decoded else None
            per_token = model.score_continuations(context, [c[shared:] for c in continuations], known)
            probabilities = normalise([sum(lp) for lp in per_token])
            choices[span.path] = {value_key(v): p for v, p in zip(candidates, probabilities, strict=True)}
            continue
        if candidates is not None:
            # Once per field per process (the registry), without a line of promptask's source under it.
            warnings.warn_explicit(
                f"field {span.path}: more than {MAX_CANDIDATES} allowed values; it is not scored by whole "
                "sequences and gets the mean token log-probability instead",
                RuntimeWarning,
                filename="promptask",
                lineno=0,
                module=__name__,
                registry=_warned,
            )
        inside = [lp for lp, end, piece in zip(row.logprobs, ends, pieces, strict=True)
                  if end > span.start and end - len(piece) < span.end and not math.isnan(lp)]  # fmt: skip
        if inside:
            proxies[span.path] = sum(inside) / len(inside)
    return Scores(choices, proxies)
