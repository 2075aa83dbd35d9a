"""How to test your own tasks without a model: ScriptedBackend.

Run it with:  python -m pytest examples/test_my_tasks.py
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field

import promptask
from promptask import OutputValidationError, ScriptedBackend


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
