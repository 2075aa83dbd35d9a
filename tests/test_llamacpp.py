"""The llama.cpp backend on the real default model (SmolLM2-135M-Instruct, CPU).

These tests run a real model: each keeps its token budget small.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import pytest
from shapes import CASES

import promptask
from promptask import BackendError, OutputValidationError
from promptask.backends import GenerationRequest, Message, Sampling
from promptask.backends.constraints import COMPILED_SCHEMAS
from promptask.backends.llamacpp import LlamaCppBackend
from promptask.backends.model_files import default_model_path
from promptask.tasks.loader import task_from_mapping

pytestmark = pytest.mark.slow

SCHEMAS = json.loads((Path(__file__).parent / "schemas.json").read_text())


@pytest.fixture(scope="module")
def backend() -> LlamaCppBackend:
    return LlamaCppBackend()


def test_one_model_per_file_and_settings(backend: LlamaCppBackend) -> None:
    assert LlamaCppBackend().model is backend.model
    assert promptask.resolve_backend("llamacpp:").model is backend.model  # type: ignore[attr-defined]


def test_batch_size_falls_back_to_plain_calls_with_the_same_results(backend: LlamaCppBackend) -> None:
    rows = [{"text": t} for t in ("I love it", "It broke", "It is a phone", "Best day ever", "Awful", "Fine")]
    batched = promptask.tasks.sentiment.map(rows, backend=backend, batch_size=8, cache=False)
    single = [promptask.tasks.sentiment.run(backend=backend, cache=False, **row) for row in rows]
    assert [r.raw for r in batched] == [r.raw for r in single]


def test_a_long_batch_of_per_call_schemas_keeps_the_compiled_schema_cache_at_its_bound(
    backend: LlamaCppBackend,
) -> None:
    pick = task_from_mapping(
        {
            "name": "pick",
            "inputs": {"text": "str", "labels": "list[str]"},
            "output": {
                "type": "object",
                "properties": {"label": {"type": "string", "enum": {"$eval": "labels"}}},
                "required": ["label"],
            },
            "template": "{{ text }}\nLabels: {{ labels | join(', ') }}",
            "max_tokens": 16,
            "retries": 0,
        }
    )
    constraints = backend.model.constraints
    rows = [{"text": f"item {i}", "labels": [f"a{i}", f"b{i}", f"c{i}"]} for i in range(2 * COMPILED_SCHEMAS)]
    pick.map(rows[:COMPILED_SCHEMAS], backend=backend, cache=False)
    assert len(constraints) == COMPILED_SCHEMAS
    before = resident_mb()
    pick.map(rows[COMPILED_SCHEMAS:], backend=backend, cache=False)  # as many new schemas again
    after = resident_mb()
    assert len(constraints) == COMPILED_SCHEMAS
    assert after - before < 16, f"resident memory grew from {before:.0f} to {after:.0f} MB"


def resident_mb() -> float:
    gc.collect()
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


# ---------------------------------------------------------------- end-to-end tasks


@pytest.mark.parametrize(("name", "output", "question"), CASES, ids=[c[0] for c in CASES])
def test_tasks_return_valid_output_on_the_first_attempt(
    backend: LlamaCppBackend, name: str, output: object, question: str
) -> None:
    def stub(question: str) -> None: ...

    stub.__annotations__["return"] = output
    task = promptask.task(max_tokens=80)(stub)
    result = task.run(question, backend=backend, cache=False)
    assert len(result.attempts) == 1, result.attempts
    assert result.attempts[0].finish_reason == "stop"
    task.output_model.model_validate_json(result.raw)
    assert result.backend == "llamacpp"


@pytest.mark.parametrize("item", SCHEMAS, ids=[s["name"] for s in SCHEMAS])
def test_constrained_output_is_valid_for_every_schema(backend: LlamaCppBackend, item: dict[str, object]) -> None:
    task = task_from_mapping(
        {
            "name": item["name"],
            "inputs": {"q": "str"},
            "output": item["schema"],
            "template": "{{ q }}",
            "max_tokens": 64,
            "retries": 0,
        }
    )
    result = task.run(q=item["prompt"], backend=backend, cache=False)
    assert result.attempts[0].finish_reason == "stop"
    jsonschema.validate(json.loads(result.raw), item["schema"])


def test_few_shot_examples_use_the_same_compact_json(backend: LlamaCppBackend) -> None:
    result = promptask.tasks.sentiment.run(text="I hate waiting in line.", backend=backend, cache=False)
    assert result.raw == json.dumps({"label": result.output.label}, separators=(",", ":"))


# ---------------------------------------------------------------- KV prefix reuse and threads


def test_the_shared_prefix_is_not_evaluated_again(backend: LlamaCppBackend) -> None:
    sentiment = promptask.tasks.sentiment
    first = sentiment.run(text="The soup was cold.", backend=backend, cache=False)
    second = sentiment.run(text="The band was great.", backend=backend, cache=False)
    prefix = sum(1 for _ in sentiment.render(text="x")[:-1])  # every message but the request
    assert prefix >= 7
    assert second.usage.cached_tokens > 0.8 * first.usage.prompt_tokens
    fresh = LlamaCppBackend(reuse_prefix=False)
    assert sentiment.run(text="The band was great.", backend=fresh, cache=False).usage.cached_tokens == 0


def test_threads_share_the_model_safely_and_match_sequential_answers(backend: LlamaCppBackend) -> None:
    texts = [
        f"Review {i}: the {w} was {a}."
        for i, (w, a) in enumerate(
            [
                (w, a)
                for w in ("food", "room", "staff", "view")
                for a in ("awful", "fine", "superb", "slow", "clean", "noisy", "lovely", "dirty")
            ]
        )
    ]
    assert len(texts) == 32
    sentiment = promptask.tasks.sentiment
    sequential = [sentiment(text=t, backend=backend, cache=False).label for t in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(lambda t: sentiment(text=t, backend=backend, cache=False).label, texts))
    assert threaded == sequential


def test_seeded_sampling_is_reproducible(backend: LlamaCppBackend) -> None:
    request = GenerationRequest(
        (Message("user", "Name a fruit."),),
        {"type": "object", "properties": {"fruit": {"type": "string", "maxLength": 12}}, "required": ["fruit"]},
        Sampling(temperature=1.0, seed=7, max_tokens=16),
    )
    assert backend.generate(request).text == backend.generate(request).text
    unseeded = GenerationRequest(request.messages, request.schema, Sampling(temperature=1.0, seed=None, max_tokens=16))
    assert LlamaCppBackend(seed=7).generate(unseeded).text == backend.generate(request).text


# ---------------------------------------------------------------- errors


def test_corrupt_model_file_names_the_path(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + os.urandom(4096))
    with pytest.raises(BackendError, match=f"cannot load model file {corrupt}"):
        promptask.tasks.sentiment.run(text="x", backend=f"llamacpp:{corrupt}", cache=False)


def test_prompt_longer_than_the_context_is_refused_before_generating() -> None:
    small = LlamaCppBackend(n_ctx=256)
    with pytest.raises(BackendError, match=r"the prompt is \d+ tokens but the context holds 256"):
        promptask.tasks.sentiment.run(text="word " * 400, backend=small, cache=False)


def test_truncation_mid_json_is_reported(backend: LlamaCppBackend) -> None:
    with pytest.raises(OutputValidationError, match="output truncated at 3 tokens; raise max_tokens"):
        promptask.tasks.sentiment.with_options(max_tokens=3, retries=0).run(text="ok", backend=backend, cache=False)


def test_chat_templates_without_a_system_role_still_work(backend: LlamaCppBackend) -> None:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    strict = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n"
    )
    model = LlamaCppBackend(n_ctx=1024).model
    model.formatter = Jinja2ChatFormatter(strict, eos_token="<|im_end|>", bos_token="")
    messages = (Message("system", "Answer in JSON."), Message("user", "Say hi."))
    prompt = model.llama.detokenize(model.prompt_tokens(messages), special=True).decode()
    assert prompt.startswith("<|im_start|>user\nAnswer in JSON.\n\nSay hi.")


# ---------------------------------------------------------------- cache identity


def test_fingerprint_is_the_model_content_digest(backend: LlamaCppBackend) -> None:
    digest = hashlib.sha256(default_model_path().read_bytes()).hexdigest()
    assert digest in backend.fingerprint()
    assert str(default_model_path()) not in backend.fingerprint()
