"""The repetition-loop detector on synthetic token streams, and what the call loop makes of a stopped loop."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

import promptask
from promptask import OutputValidationError, ScriptedBackend
from promptask.backends.repetition import MIN_LOOP_CHARS, JsonWatch, loop_period
from promptask.types import Generation, Usage


def feed_tokens(tokens: list[str]) -> tuple[str | None, int]:
    """Feed ``tokens`` one at a time, as a decoder would; the problem reported and how many tokens it took."""
    watch = JsonWatch()
    for count, token in enumerate(tokens, 1):
        problem = watch.feed(token)
        if problem:
            return problem, count
    return None, len(tokens)


def tokens_of(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def test_a_counting_loop_is_caught_early_with_its_field() -> None:
    stream = tokens_of('{"order":{"id":7,"client_token":"' + "1234567890" * 40)
    problem, used = feed_tokens(stream)
    assert problem == "repetition loop in field order.client_token"
    assert used < 40  # caught within a few periods, not at the token limit (134 tokens here)


def test_a_repeated_sentence_is_caught() -> None:
    stream = tokens_of('{"summary":"' + "The parcel is late again. " * 10, size=4)
    problem, _ = feed_tokens(stream)
    assert problem == "repetition loop in field summary"


def test_a_loop_inside_an_array_names_its_index() -> None:
    stream = tokens_of('{"tags":["ok","fine","' + "ha" * 40)
    assert feed_tokens(stream)[0] == "repetition loop in field tags[2]"


@pytest.mark.parametrize(
    "text",
    [
        '{"summary":"The battery lasts two days, the screen is bright and the speaker is loud enough."}',
        '{"id":"550e8400-e29b-41d4-a716-446655440000","note":"Call back at 10:00 or 10:30 tomorrow."}',
        '{"phone":"+1 555 0100","zip":"10001","year":"2000","word":"Mississippi"}',
        '{"quote":"He said \\"no, no, no\\" and left.","path":"a/b/c/d"}',
        '{"rows":[' + ",".join(['{"a":"x","b":"y"}'] * 30) + "]}",  # repeated structure, short strings
    ],
)
def test_ordinary_text_is_never_flagged(text: str) -> None:
    assert feed_tokens(tokens_of(text))[0] is None
    assert feed_tokens(list(text))[0] is None  # the same text, one character a token


def test_keys_and_numbers_are_not_string_values() -> None:
    watch = JsonWatch()
    assert watch.feed('{"' + "k" * 80 + '":1') is None  # a long key is the schema's business, not a loop
    assert not watch.in_value_string
    assert watch.feed(',"v":"') is None
    assert watch.in_value_string


def test_the_threshold_needs_more_repeats_for_short_periods() -> None:
    assert loop_period("ab" * 12) == 2  # 24 characters of "ab": six repeats and the minimum length
    assert loop_period("ab" * 11) is None
    assert loop_period("x" * (MIN_LOOP_CHARS - 1)) is None
    assert loop_period("It rained. " * 4) == 11  # a short sentence needs four times...
    assert loop_period("It rained. " * 3) is None
    assert loop_period("We will call you back. " * 3) == 23  # ...a longer one three


class Ticket(BaseModel):
    summary: str


def test_a_stopped_loop_fails_the_attempt_with_its_field_and_the_retry_samples_afresh() -> None:
    @promptask.task(retries=1, retry_temperature=0.7)
    def triage(message: str) -> Ticket:
        """Summarise the message."""

    looping = Generation('{"summary":"12121212', finish_reason="repetition", usage=Usage(5, 9),
                         note="repetition loop in field summary")  # fmt: skip
    backend = ScriptedBackend([looping, json.dumps({"summary": "late parcel"})])
    result = triage.run("where is my parcel?", backend=backend, cache=False)
    assert result.output.summary == "late parcel"
    assert result.attempts[0].error == "repetition loop in field summary"
    assert result.attempts[0].finish_reason == "repetition"
    first, second = (request.sampling for request in backend.requests)
    assert (first.temperature, second.temperature) == (0.0, 0.7)
    assert second.seed != first.seed


def test_without_retries_a_loop_is_an_output_validation_error_naming_the_field() -> None:
    @promptask.task(retries=0)
    def triage(message: str) -> Ticket:
        """Summarise the message."""

    looping = Generation('{"summary":"abab', finish_reason="repetition", note="repetition loop in field summary")
    with pytest.raises(OutputValidationError, match="repetition loop in field summary"):
        triage.run("x", backend=ScriptedBackend([looping]), cache=False)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"ref":{"type":"string",' + '"min_length":1,' * 12, "ref"),  # one key again and again
        ('{"rule":' + '{"date":{"type":"date","maximum":1,"nested":' * 9, "rule.date.nested"),  # deeper each time
        ('{"env":{"' + "PATH_" * 20, "a key of field env"),  # a key that never ends
    ],
)
def test_a_loop_in_the_structure_is_caught(text: str, field: str) -> None:
    problem = feed_tokens(tokens_of(text))[0]
    assert problem is not None
    assert problem.startswith(
        f"repetition loop in {field}" if field.startswith("a key") else f"repetition loop in field {field}"
    )


def test_a_recursive_answer_may_nest_a_few_identical_levels() -> None:
    level = '{"leaf":false,"feature":"age","threshold":30,"left":'
    text = '{"tree":' + level * 6 + '{"leaf":true,"prediction":"yes"}' + "}" * 7
    assert feed_tokens(tokens_of(text))[0] is None
