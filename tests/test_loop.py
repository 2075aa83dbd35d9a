"""The call loop: parse, validate, retry with feedback, and the run/arun/map surfaces."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Literal

import pytest
from pydantic import BaseModel, field_validator

import promptask
from promptask import (
    BackendError,
    Generation,
    GenerationRequest,
    InputValidationError,
    OutputValidationError,
    ScriptedBackend,
    Usage,
)
from promptask.tasks.parsing import extract_json


class Person(BaseModel):
    name: str
    age: int

    @field_validator("age")
    @classmethod
    def plausible(cls, age: int) -> int:
        if not 0 <= age <= 130:
            raise ValueError("age must be between 0 and 130")
        return age


@promptask.task(template="Who is described here? {{ text }}")
def person(text: str) -> Person: ...


def test_retry_path_invalid_json_then_schema_invalid_then_valid() -> None:
    replies = ["I think it's Ada", '{"name": "Ada", "age": 300}', '{"name": "Ada", "age": 36}']
    backend = ScriptedBackend(replies)
    result = person.run(text="a mathematician", backend=backend, cache=False)

    assert result.output == Person(name="Ada", age=36)
    assert [a.raw for a in result.attempts] == replies
    assert "no valid JSON" in (result.attempts[0].error or "")
    assert "age: Value error, age must be between 0 and 130" in (result.attempts[1].error or "")
    assert result.attempts[2].error is None
    assert result.raw == replies[2]
    assert result.usage == sum((a.usage for a in result.attempts), Usage())
    assert result.usage.completion_tokens > 0 and not result.cached
    assert result.backend == "scripted"

    # Each retry sees the rejected answer and the reason, after the original request.
    first, second, third = (r.messages for r in backend.requests)
    assert second[: len(first)] == first
    assert second[-2].role == "assistant" and second[-2].content == replies[0]
    assert second[-1].role == "user" and "no valid JSON" in second[-1].content
    assert third[-2].content == replies[1] and "between 0 and 130" in third[-1].content


def test_exhaustion_raises_with_every_attempt_and_summed_usage() -> None:
    backend = ScriptedBackend(["nope", "{}", '{"name": 1}'])
    with pytest.raises(OutputValidationError) as info:
        person.run(text="x", backend=backend, cache=False)
    error = info.value
    assert [a.raw for a in error.attempts] == ["nope", "{}", '{"name": 1}']
    assert all(a.error for a in error.attempts)
    assert error.usage.completion_tokens == sum(a.usage.completion_tokens for a in error.attempts)
    assert "3 attempts" in str(error) and "person" in str(error)


def test_truncation_is_reported_as_such() -> None:
    cut = Generation(text='{"name": "Ad', finish_reason="length", usage=Usage(10, 7))
    with pytest.raises(OutputValidationError, match="output truncated at 7 tokens; raise max_tokens"):
        person.with_options(retries=0).run(text="x", backend=ScriptedBackend([cut]), cache=False)


def test_a_cut_answer_is_not_shown_again_the_retry_asks_for_a_shorter_one() -> None:
    cut = Generation(text='{"name": "Ad' + "a" * 40, finish_reason="length", usage=Usage(10, 7))
    looped = Generation(text='{"name": "lalala', finish_reason="repetition", note="repetition loop in field name")
    backend = ScriptedBackend([cut, looped, {"name": "Ada", "age": 36}])
    result = person.run(text="Ada is 36.", backend=backend, cache=False)
    assert result.output.name == "Ada" and len(result.attempts) == 3
    first, second, third = (request.messages for request in backend.requests)
    for retry, reason in ((second, "output truncated at 7 tokens"), (third, "repetition loop in field name")):
        assert len(retry) == len(first) and [m.role for m in retry] == [m.role for m in first]
        assert retry[-1].content.startswith(first[-1].content) and reason in retry[-1].content
        assert "shorter" in retry[-1].content and "Ad" + "a" * 40 not in "".join(m.content for m in retry)


def test_lenient_parsing_only_for_backends_that_do_not_constrain() -> None:
    assert extract_json('Here:\n```json\n{"a": [1, 2]}\n```', lenient=True) == {"a": [1, 2]}
    assert extract_json('The answer is {"a": 1} as requested.', lenient=True) == {"a": 1}
    with pytest.raises(ValueError, match="not valid JSON"):
        extract_json('The answer is {"a": 1}', lenient=False)
    with pytest.raises(ValueError, match="empty"):
        extract_json("   ", lenient=True)


def test_task_validators_trigger_a_retry_with_their_message() -> None:
    def must_quote_text(output: str, inputs: dict[str, object]) -> None:
        if output not in str(inputs["text"]):
            raise ValueError(f"{output!r} does not occur in the text")

    @promptask.task(validators=[must_quote_text])
    def keyword(text: str) -> str: ...

    backend = ScriptedBackend([{"answer": "banana"}, {"answer": "apple"}])
    result = keyword.run(text="an apple a day", backend=backend, cache=False)
    assert result.output == "apple"
    assert result.attempts[0].error == "'banana' does not occur in the text"


def test_backend_exceptions_become_backend_errors() -> None:
    def explode(request: GenerationRequest) -> str:
        raise RuntimeError("model file vanished")

    with pytest.raises(BackendError, match="backend scripted failed: RuntimeError: model file vanished"):
        person.run(text="x", backend=ScriptedBackend(explode), cache=False)
    with pytest.raises(BackendError, match="ran out of replies"):
        person.run(text="x", backend=ScriptedBackend(["nope"]), cache=False)


def test_a_plain_object_with_generate_is_a_backend() -> None:
    class Echo:
        def generate(self, request: GenerationRequest) -> Generation:
            return Generation(text=f'{{"answer": "{len(request.messages)}"}}')

    @promptask.task
    def count(text: str) -> str: ...

    result = count.run(text="x", backend=Echo())
    assert result.output == "2" and result.backend == "Echo"
    assert not result.cached  # no fingerprint: never cached


def test_arun_uses_agenerate_when_present_and_threads_otherwise() -> None:
    class AsyncOnly(ScriptedBackend):
        async def agenerate(self, request: GenerationRequest) -> Generation:
            await asyncio.sleep(0)
            return Generation(text='{"name": "Grace", "age": 85}')

        def generate(self, request: GenerationRequest) -> Generation:
            raise AssertionError("the sync path must not be used")

    async def both() -> tuple[Person, Person]:
        a = await person.arun(text="x", backend=AsyncOnly(["unused"]), cache=False)
        b = await person.arun(text="x", backend=ScriptedBackend([{"name": "Alan", "age": 41}]), cache=False)
        return a.output, b.output

    assert asyncio.run(both()) == (Person(name="Grace", age=85), Person(name="Alan", age=41))


def test_map_keeps_input_order_under_concurrency() -> None:
    def slow_echo(request: GenerationRequest) -> dict[str, object]:
        n = int(request.messages[-1].content.rsplit(" ", 1)[-1])
        time.sleep(0.02 * (8 - n))  # later rows finish first
        return {"name": f"p{n}", "age": n}

    backend = ScriptedBackend(slow_echo)
    threads: set[str] = set()
    original = backend.generate

    def spy(request: GenerationRequest) -> Generation:
        threads.add(threading.current_thread().name)
        return original(request)

    backend.generate = spy  # type: ignore[method-assign]
    results = person.map([{"text": f"row {i}"} for i in range(8)], backend=backend, concurrency=4, cache=False)
    assert [r.output.age for r in results] == list(range(8))
    assert len(threads) > 1


def test_map_on_error_return_keeps_every_completed_row() -> None:
    def flaky(request: GenerationRequest) -> str:
        return "garbage" if "row 2" in request.messages[1].content else '{"name": "x", "age": 1}'

    rows = [{"text": f"row {i}"} for i in range(4)] + [{"txt": "bad"}]
    results = person.with_options(retries=0).map(rows, backend=ScriptedBackend(flaky), on_error="return", cache=False)
    assert [type(r).__name__ for r in results] == [
        "TaskResult",
        "TaskResult",
        "OutputValidationError",
        "TaskResult",
        "InputValidationError",
    ]
    with pytest.raises(InputValidationError, match="row 4: txt"):
        person.map(rows, backend=ScriptedBackend(flaky), cache=False)
    with pytest.raises(OutputValidationError):
        person.with_options(retries=0).map(rows[:4], backend=ScriptedBackend(flaky), cache=False)


def test_map_progress_reports_rows_and_failures(capsys: pytest.CaptureFixture[str]) -> None:
    backend = ScriptedBackend([{"name": "x", "age": 1}], repeat=True)
    person.map([{"text": str(i)} for i in range(3)], backend=backend, progress=True, cache=False)
    err = capsys.readouterr().err
    assert "person: 3/3 rows" in err and "0 failed" in err


def test_sampling_defaults_reach_the_backend_and_can_be_overridden() -> None:
    @promptask.task(temperature=0.7, max_tokens=99, seed=5)
    def pick(text: str) -> Literal["a", "b"]: ...

    backend = ScriptedBackend([{"answer": "a"}], repeat=True)
    pick.run(text="x", backend=backend, cache=False)
    pick.with_options(temperature=0.0).run(text="x", backend=backend, cache=False)
    first, second = (r.sampling for r in backend.requests)
    assert (first.temperature, first.max_tokens, first.seed) == (0.7, 99, 5)
    assert second.temperature == 0.0 and second.max_tokens == 99


def test_batch_size_on_a_backend_without_batching_falls_back_to_plain_calls() -> None:
    rows = [{"text": f"review {i}"} for i in range(20)]
    backend = ScriptedBackend(
        lambda request: {"label": "positive" if "1" in request.messages[-1].content else "neutral"}
    )
    batched = promptask.tasks.sentiment.map(rows, backend=backend, batch_size=8, cache=False)
    plain = promptask.tasks.sentiment.map(rows, backend=backend, cache=False)
    assert [r.output for r in batched] == [r.output for r in plain]
    assert len(backend.requests) == 40  # one request per row each time: no batch call was attempted
    streamed = dict(promptask.tasks.sentiment.stream(rows, backend=backend, batch_size=8, concurrency=4, cache=False))
    assert [streamed[i].output for i in range(20)] == [r.output for r in plain]  # type: ignore[union-attr]
