"""The transformers backend on the CPU, with the bundled SmolLM2 GGUF file loaded by transformers."""

from __future__ import annotations

from typing import Any

import pytest
from shapes import CASES

import promptask
from promptask import BackendError, TaskResult
from promptask.backends.model_files import default_model_path, file_digest

transformers_backend = pytest.importorskip("promptask.backends.transformers")
TransformersBackend = transformers_backend.TransformersBackend

pytestmark = pytest.mark.slow

TEXTS = ["I love it.", "Awful food.", "The bus leaves at nine.", "Great service!", "Terrible noise at night.",
         "It is a chair.", "Best day ever.", "I want a refund.", "Lovely staff.", "The room was dirty.",
         "The shop opens at ten.", "What a waste of money.", "Fast and friendly.", "It rained all day.",
         "My order never came.", "The manual has ten pages."]  # fmt: skip


@pytest.fixture(scope="module")
def backend() -> Any:
    return TransformersBackend(device="cpu")


@pytest.mark.parametrize(("name", "output", "question"), CASES, ids=[c[0] for c in CASES])
def test_tasks_return_valid_output(backend: Any, name: str, output: object, question: str) -> None:
    def stub(question: str) -> None: ...

    stub.__annotations__["return"] = output
    task = promptask.task(max_tokens=80)(stub)
    result = task.run(question, backend=backend, cache=False)
    assert len(result.attempts) == 1 and result.attempts[0].finish_reason == "stop"
    task.output_model.model_validate_json(result.raw)
    assert result.backend == "transformers"


def test_batched_map_equals_unbatched_greedy_results(backend: Any) -> None:
    sentiment = promptask.tasks.sentiment
    rows = [{"text": t} for t in TEXTS]
    batched = sentiment.map(rows, backend=backend, batch_size=8, cache=False)
    single = [sentiment.run(backend=backend, cache=False, **row) for row in rows]
    assert all(isinstance(r, TaskResult) for r in batched)
    assert [r.raw for r in batched] == [r.raw for r in single]


def test_finished_rows_make_room_for_waiting_requests(backend: Any) -> None:
    """Continuous batching: 6 requests through 2 rows, lengths 3 to 18 tokens, each as if alone."""
    from promptask.backends import GenerationRequest, Message, Sampling

    story = {"type": "object", "properties": {"story": {"type": "string", "minLength": 200}}, "required": ["story"],
             "additionalProperties": False}  # fmt: skip
    requests = [
        GenerationRequest(
            (Message("user", f"Tell a story about {topic}."),), story if i % 2 else None, Sampling(max_tokens=3 + 3 * i)
        )
        for i, topic in enumerate(["cats", "the sea", "a tall tower with many rooms", "rain", "maps", "bread"])
    ]
    batched = backend.generate_batch(requests, batch_size=2)
    alone = [backend.generate(request) for request in requests]
    assert [g.usage.completion_tokens for g in batched] == [3, 6, 9, 12, 15, 18]
    assert [g.text for g in batched] == [g.text for g in alone]


def test_rows_with_their_own_schemas_finish_independently(backend: Any) -> None:
    from promptask.backends import GenerationRequest, Message, Sampling

    short = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
             "additionalProperties": False}  # fmt: skip
    long = {"type": "object", "properties": {"story": {"type": "string", "minLength": 200}}, "required": ["story"],
            "additionalProperties": False}  # fmt: skip
    generations = backend.generate_batch(
        [
            GenerationRequest((Message("user", "Is water wet?"),), short, Sampling(max_tokens=20)),
            GenerationRequest((Message("user", "Tell a story."),), long, Sampling(max_tokens=24)),
        ]
    )
    assert generations[0].finish_reason == "stop" and generations[0].text in ('{"ok":true}', '{"ok":false}')
    assert generations[1].finish_reason == "length" and generations[1].usage.completion_tokens == 24


def test_fingerprint_is_the_file_digest_and_dtype(backend: Any) -> None:
    assert file_digest(default_model_path()) in backend.fingerprint()
    assert ":float32:" in backend.fingerprint()
    assert TransformersBackend(device="cpu", dtype="bfloat16").fingerprint() != backend.fingerprint()


def test_out_of_memory_suggests_a_smaller_dtype_or_device(monkeypatch: pytest.MonkeyPatch) -> None:
    # A real out-of-memory needs a model larger than this machine; the failure is simulated at load.
    import torch
    import transformers

    def too_big(*args: Any, **kwargs: Any) -> Any:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", too_big)
    with pytest.raises(BackendError, match=r"does not fit on cpu in bfloat16 .* try a smaller dtype"):
        TransformersBackend(device="cpu", dtype="bfloat16").loaded
