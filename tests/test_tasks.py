"""Defining tasks: the decorator, YAML files, and their equivalence."""

from __future__ import annotations

import enum
import json
import textwrap
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field, ValidationError

import promptask
from promptask import InputValidationError, ScriptedBackend, TaskDefinitionError


class Ticket(BaseModel):
    team: Literal["web", "billing"]
    urgent: bool
    tags: list[str] | None = Field(None, max_length=3)


@promptask.task(template="Route this ticket: {{ ticket }}", retries=1, max_tokens=64)
def triage(ticket: str, teams: list[str] = ["web", "billing"]) -> Ticket:
    """Route a support ticket to a team."""


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@pytest.mark.parametrize(
    ("output_type", "reply", "expected"),
    [
        (str, {"answer": "hi"}, "hi"),
        (int, {"answer": 3}, 3),
        (float, {"answer": 0.5}, 0.5),
        (bool, {"answer": True}, True),
        (Literal["yes", "no"], {"answer": "no"}, "no"),
        (Color, {"answer": "blue"}, Color.BLUE),
        (list[int], {"answer": [1, 2]}, [1, 2]),
    ],
)
def test_plain_output_types_are_wrapped_and_unwrapped(output_type: object, reply: object, expected: object) -> None:
    def stub(text: str) -> None: ...

    stub.__annotations__["return"] = output_type
    made = promptask.task(stub)
    assert made.json_schema()["required"] == ["answer"]
    assert made("x", backend=ScriptedBackend([reply]), cache=False) == expected


def test_decorated_task_returns_the_model() -> None:
    backend = ScriptedBackend([{"team": "web", "urgent": True}])
    result = triage("The site is down", backend=backend)
    assert result == Ticket(team="web", urgent=True)
    assert triage.description == "Route a support ticket to a team."
    assert [m.role for m in backend.requests[0].messages] == ["system", "user"]
    assert backend.requests[0].messages[1].content == "Route this ticket: The site is down"
    assert backend.requests[0].sampling.max_tokens == 64


def test_inputs_are_validated_before_any_backend_call() -> None:
    backend = ScriptedBackend([{"team": "web", "urgent": True}])
    with pytest.raises(InputValidationError) as info:
        triage.run(teams="not a list", backend=backend)
    fields = dict(info.value.errors)
    assert fields["ticket"] == "missing required input"
    assert "teams" in fields
    with pytest.raises(InputValidationError, match="nope: unknown input"):
        triage.run(ticket="x", nope=1, backend=backend)
    with pytest.raises(InputValidationError, match="positional"):
        triage.run("a", ["b"], "c", backend=backend)
    assert backend.requests == []


def test_default_template_lists_description_and_inputs() -> None:
    @promptask.task
    def label(text: str, labels: list[str]) -> str:
        """Pick the best label."""

    [system, user] = label.render("hello", ["a", "b"])
    assert system.role == "system" and "JSON Schema" in system.content
    assert user.content == 'Pick the best label.\n\ntext: hello\nlabels: ["a", "b"]'


def test_examples_become_earlier_turns_after_the_system_message() -> None:
    @promptask.task(
        template="Text: {{ text }}",
        system="Classify sentiment.",
        examples=[{"input": {"text": "great"}, "output": "positive"}],
    )
    def mood(text: str) -> Literal["positive", "negative"]: ...

    messages = mood.render("awful")
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0].content.startswith("Classify sentiment.\n\nReply with one JSON object")
    assert messages[1].content == "Text: great"
    assert messages[2].content == '{"answer":"positive"}'
    assert messages[3].content == "Text: awful"


def test_template_that_places_the_schema_itself_gets_no_automatic_instructions() -> None:
    @promptask.task(template="Answer as JSON matching {{ output_schema }}: {{ q }}")
    def ask(q: str) -> int: ...

    assert [m.role for m in ask.render("1+1")] == ["user"]

    @promptask.task(template="{{ q }}", format_instructions=False)
    def bare(q: str) -> int: ...

    assert [m.role for m in bare.render("1+1")] == ["user"]


@pytest.mark.parametrize(
    ("decorate", "message"),
    [
        (lambda: promptask.task(lambda text: None), "annotate the return type"),
        (lambda: promptask.task(examples=[{"input": {"text": "x"}, "output": "maybe"}])(_yes_no), "example 0 output"),
        (lambda: promptask.task(examples=[{"input": {}, "output": "yes"}])(_yes_no), "example 0 input"),
        (lambda: promptask.task(template="{{ text }")(_yes_no), "template syntax error"),
        (lambda: promptask.task(template="missing.j2")(_yes_no), "template file 'missing.j2' not found"),
        (lambda: promptask.task(_reserved), "reserved"),
    ],
)
def test_definition_errors_are_clear(decorate: object, message: str) -> None:
    with pytest.raises(TaskDefinitionError, match=message):
        decorate()  # type: ignore[operator]


def _yes_no(text: str) -> Literal["yes", "no"]: ...


def _reserved(backend: str) -> str: ...


# ---------------------------------------------------------------- YAML


TRIAGE_YAML = """\
name: triage
description: Route a support ticket to a team.
inputs:
  ticket: str
  teams: {type: "list[str]", default: [web, billing]}
output:
  type: object
  properties:
    team: {type: string, enum: [web, billing]}
    urgent: {type: boolean}
    tags: {type: array, items: {type: string}, maxItems: 3}
  required: [team, urgent]
template: "Route this ticket: {{ ticket }}"
retries: 1
max_tokens: 64
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_yaml_task_matches_the_decorated_one(tmp_path: Path) -> None:
    loaded = promptask.load_task(write(tmp_path, "triage.yaml", TRIAGE_YAML))
    inputs = {"ticket": "Refund please", "teams": ["web", "billing"]}
    from_file, from_code = loaded.render(**inputs), triage.render(**inputs)
    assert from_file[1:] == from_code[1:]  # each system message shows its own schema, as declared
    assert json.loads(from_file[0].content.split("\n", 1)[1]) == loaded.json_schema()
    reply = {"team": "billing", "urgent": False, "tags": ["refund"]}
    from_yaml = loaded(**inputs, backend=ScriptedBackend([reply]))
    from_python = triage(**inputs, backend=ScriptedBackend([reply]))
    assert from_yaml.model_dump() == from_python.model_dump()


def test_yaml_schema_validation_is_faithful(tmp_path: Path) -> None:
    loaded = promptask.load_task(write(tmp_path, "triage.yaml", TRIAGE_YAML))
    bad = [{"team": "ops", "urgent": True}, {"team": "web"}, {"team": "web", "urgent": True, "tags": list("abcd")}]
    backend = ScriptedBackend([*bad, {"team": "web", "urgent": True}])
    result = loaded.with_options(retries=3).run(ticket="x", backend=backend, cache=False)
    assert [a.error is not None for a in result.attempts] == [True, True, True, False]
    errors = [a.error or "" for a in result.attempts]
    assert errors[0] == 'team: "ops" is not one of "web" or "billing"'
    assert errors[1] == '"urgent" is a required property'
    assert errors[2] == 'tags: ["a","b","c","d"] has more than 3 items'
    assert result.output.model_dump() == {"team": "web", "urgent": True}  # no "tags": null added


def test_template_file_is_found_beside_the_yaml_then_in_prompts(tmp_path: Path) -> None:
    write(tmp_path, "prompts/base.j2", '{% message "user" %}{% block body %}{% endblock %}{% endmessage %}')
    write(tmp_path, "tasks/local.j2", '{% extends "base.j2" %}{% block body %}Q: {{ q }}{% endblock %}')
    spec = "name: {name}\ninputs: {{q: str}}\noutput: str\ntemplate_file: {file}\n"
    write(tmp_path, "tasks/a.yaml", spec.format(name="a", file="local.j2"))
    write(tmp_path, "tasks/b.yaml", spec.format(name="b", file="base.j2"))
    tasks = promptask.load_tasks(tmp_path / "tasks")
    assert sorted(tasks) == ["a", "b"]
    assert tasks["a"].render(q="why")[-1].content == "Q: why"


def test_user_template_can_extend_a_builtin_one(tmp_path: Path) -> None:
    write(
        tmp_path,
        "mine.yaml",
        "name: mine\ninputs: {text: str}\noutput: str\ntemplate: \"{% include 'sentiment.j2' %}\"\n",
    )
    messages = promptask.load_task(tmp_path / "mine.yaml").render(text="so good")
    assert messages[0].content.startswith("You are a sentiment classifier.")
    assert messages[-1].content == "Text: so good"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("name: x\noutput: str\ninputs:\n  a: str\n   b: int\n", 5, "invalid YAML"),
        ("name: x\noutput: str\ninputs:\n  a: strr\n", 4, "unknown type 'strr'"),
        ("name: x\noutput: str\ntemplat: hi\n", 3, "unknown key 'templat'"),
        ("name: x\ninputs: {a: str}\noutput: str\ntemplate: |\n  fine\n  {{ a }\n", 6, "template syntax error"),
        ("name: x\noutput:\n  type: object\n  properties: {a: {type: strin}}\n", 4, "unknown JSON Schema type 'strin'"),
        ("name: x\ninputs: {a: str}\noutput: str\nexamples:\n  - input: {a: 1}\n", 5, "example 0"),
        ("inputs: {a: str}\n", 1, "missing required key 'name'"),
        ("name: x\noutput: str\nretries: 2\ntemperature: hot\n", 4, "temperature must be a number >= 0, got 'hot'"),
        ("name: x\noutput: str\nmax_tokens: 0\n", 3, "max_tokens must be an integer >= 1"),
    ],
)
def test_yaml_errors_name_file_and_line(tmp_path: Path, text: str, line: int | None, message: str) -> None:
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(TaskDefinitionError, match=message) as info:
        promptask.load_task(path)
    assert info.value.source == str(path)
    assert info.value.line == line


def test_duplicate_task_names_in_a_folder_are_reported(tmp_path: Path) -> None:
    write(tmp_path, "one.yaml", "name: same\noutput: str\n")
    write(tmp_path, "two.yaml", "name: same\noutput: str\n")
    with pytest.raises(TaskDefinitionError, match="also defined"):
        promptask.load_tasks(tmp_path)


def test_builtin_tasks_are_attributes_of_promptask_tasks() -> None:
    import promptask.tasks

    assert "sentiment" in promptask.builtin_task_names()
    assert promptask.tasks.sentiment is promptask.builtin_task("sentiment")
    with pytest.raises(AttributeError):
        promptask.tasks.no_such_task


def test_map_schemas_keep_their_size_and_key_constraints() -> None:
    from promptask.tasks.schema import json_schema, model_from_schema

    ages = {"type": "object", "additionalProperties": {"type": "integer"}, "minProperties": 1, "maxProperties": 2,
            "propertyNames": {"maxLength": 5}}  # fmt: skip
    model = model_from_schema({"type": "object", "properties": {"ages": ages}, "required": ["ages"]}, name="Ages")
    generated = json_schema(model)["properties"]["ages"]
    assert generated["maxProperties"] == 2 and generated["minProperties"] == 1
    assert generated["propertyNames"] == {"maxLength": 5}
    model.model_validate({"ages": {"ann": 3}})
    for bad, message in (({}, "at least 1 item"), ({"a": 1, "b": 2, "c": 3}, "at most 2 items"),
                         ({"annabel": 3}, "at most 5 characters")):  # fmt: skip
        with pytest.raises(ValidationError, match=message):
            model.model_validate({"ages": bad})
