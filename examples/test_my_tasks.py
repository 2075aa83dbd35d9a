"""How to test your own tasks without a model: ScriptedBackend, and quality gates with promptask.testing.

Run it with:  python -m pytest examples/test_my_tasks.py
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

import promptask
from promptask import OutputValidationError, ScriptedBackend
from promptask.testing import assert_metrics


class Contact(BaseModel):
    name: str
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")


@promptask.task(template="Extract the contact from this signature:\n{{ signature }}", retries=1)
def extract_contact(signature: str) -> Contact:
    """Extract a name and an email address from an email signature."""


def test_the_prompt_contains_the_input() -> None:
    [system, user] = extract_contact.render(signature="Ada Lovelace <ada@example.org>")
    assert "JSON Schema" in system.content
    assert user.content.endswith("Ada Lovelace <ada@example.org>")


def test_a_bad_email_is_retried_with_the_error_shown_to_the_model() -> None:
    backend = ScriptedBackend(
        [{"name": "Ada", "email": "ada at example.org"}, {"name": "Ada", "email": "ada@example.org"}]
    )
    result = extract_contact.run(signature="Ada <ada@example.org>", backend=backend, cache=False)
    assert result.output.email == "ada@example.org"
    assert len(result.attempts) == 2
    assert "email" in backend.requests[1].messages[-1].content


def test_giving_up_after_the_retries() -> None:
    backend = ScriptedBackend(["no idea"], repeat=True)
    with pytest.raises(OutputValidationError) as info:
        extract_contact.run(signature="?", backend=backend, cache=False)
    assert len(info.value.attempts) == 2


def test_the_yaml_triage_task() -> None:
    triage = promptask.load_task(Path(__file__).parent / "support_triage" / "tasks" / "triage.yaml")
    reply = {
        "team": "shipping",
        "urgency": "normal",
        "summary": "Parcel is late.",
        "customer": {"mood": "annoyed", "wants_refund": False},
    }
    out = triage(ticket="Where is my parcel? It is a week late.", backend=ScriptedBackend([reply]), cache=False)
    assert out.team == "shipping"
    assert out.customer.mood == "annoyed"


# Quality gates: score a task on labelled rows and fail the test when a metric drops below its minimum.
# With a real model, point `backend` at it (or leave it out for the default) and keep the rows in a file.


@promptask.task(metrics=["accuracy"])
def polarity(review: str) -> Literal["positive", "negative"]:
    """Is the review positive or negative?"""


def test_polarity_is_accurate_enough() -> None:
    rows = [
        {"id": 1, "review": "Works perfectly.", "expected": "positive"},
        {"id": 2, "review": "Broke in a day.", "expected": "negative"},
        {"id": 3, "review": "Would buy again.", "expected": "positive"},
    ]
    backend = ScriptedBackend([{"answer": "positive"}, {"answer": "negative"}, {"answer": "positive"}])
    report = assert_metrics(polarity, rows, {"accuracy": 0.9, "valid": 1.0}, backend=backend, cache=False)
    assert report.value("accuracy") == 1.0


def test_the_gate_fails_with_the_metric_value_and_threshold() -> None:
    rows = [{"review": "Broke in a day.", "expected": "negative"}]
    with pytest.raises(AssertionError, match=r"accuracy 0\.000 < 0\.9"):
        assert_metrics(
            polarity, rows, {"accuracy": 0.9}, backend=ScriptedBackend([{"answer": "positive"}]), cache=False
        )
