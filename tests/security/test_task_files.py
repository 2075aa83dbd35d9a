"""Hostile and mistaken task files: a YAML alias bomb is refused before anything walks it (checked in a
bounded child), and every mistake is a TaskDefinitionError naming the file and line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from bounded import run_bounded

import promptask
from promptask import TaskDefinitionError
from promptask.tasks.yaml_safe import MAX_ALIASES

BASE = """\
name: t
inputs:
  text: str
output:
  type: object
  properties:
    a: {type: string}
  required: [a]
"""


def bomb(levels: int = 7, width: int = 9) -> str:
    lines = ["name: t", "output: str", "junk:", f"  l0: &l0 [{', '.join(['x'] * width)}]"]
    for level in range(1, levels):
        lines.append(f"  l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def test_the_alias_bomb_is_small() -> None:
    assert len(bomb()) < 600


def test_an_alias_bomb_is_refused_in_bounded_time_and_memory(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text(bomb())
    code = f"""
import json, time, promptask
from promptask import TaskDefinitionError
started = time.monotonic()
try:
    promptask.load_task({str(tmp_path / "bomb.yaml")!r})
    outcome = "loaded"
except TaskDefinitionError as exc:
    outcome = "TaskDefinitionError: " + str(exc)
print(json.dumps([outcome, time.monotonic() - started]))
"""
    outcome, seconds = run_bounded(code, seconds=60, memory=512 * 2**20)
    assert outcome.startswith("TaskDefinitionError: ") and "bomb.yaml:" in outcome and "aliases" in outcome
    assert seconds < 2


def test_promptask_list_reports_the_bomb_and_lists_the_rest(tmp_path: Path) -> None:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "bomb.yaml").write_text(bomb())
    (tmp_path / "tasks" / "fine.yaml").write_text("name: fine\noutput: str\ntemplate: hi\n")
    env = {**os.environ, "PROMPTASK_CACHE": "0"}
    done = subprocess.run([sys.executable, "-m", "promptask", "list"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "bomb.yaml:" in done.stderr and "fine" in done.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: t\noutput: str\na: &a [*a]\n", "refers to the value that contains it"),
        ("name: t\noutput: str\n" + "x: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than"),
        ("name: t\noutput: str\nv: &v x\nl: [" + ", ".join(["*v"] * (MAX_ALIASES + 1)) + "]\n", "aliases"),
    ],
)
def test_other_yaml_shapes_that_cost_too_much(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "t.yaml").write_text(text)
    with pytest.raises(TaskDefinitionError, match=message):
        promptask.load_task(tmp_path / "t.yaml")


def test_a_few_aliases_still_work(tmp_path: Path) -> None:
    text = BASE + "examples:\n  - input: &in {text: hi}\n    output: {a: x}\n  - input: *in\n    output: {a: y}\n"
    (tmp_path / "t.yaml").write_text(text)
    assert promptask.load_task(tmp_path / "t.yaml").name == "t"


MISTAKES = [
    ("pattern", BASE.replace("a: {type: string}", "a: {type: string, pattern: '('}"), 7, "pattern"),
    ("maxLength", BASE.replace("a: {type: string}", "a: {type: string, maxLength: abc}"), 7, "maxLength"),
    ("minimum", BASE.replace("a: {type: string}", "a: {type: integer, minimum: [1]}"), 7, "minimum"),
    ("required", BASE.replace("required: [a]", "required: 5"), 8, "required"),
    ("anyOf", BASE.replace("a: {type: string}", "a: {anyOf: 5}"), 7, "anyOf"),
    ("examples", BASE + "examples: 5\n", 9, "examples"),
    ("checks", BASE + "checks: [1]\n", 9, "checks"),
    ("template", BASE + "template: [1]\n", 9, "template"),
    ("description", BASE + "description: [1]\n", 9, "description"),
    ("system", BASE + "system: [1]\n", 9, "system"),
    ("private input", BASE.replace("  text: str", "  text: str\n  _private: str"), 4, "_private"),
    ("model_config input", BASE.replace("  text: str", "  text: str\n  model_config: str"), 4, "model_config"),
    ("hyphenated input", BASE.replace("  text: str", "  user-name: str"), 3, "user-name"),
    (
        "default of the wrong type",
        BASE.replace("  text: str", "  text: str\n  n: {type: integer, default: abc}"),
        4,
        "default 'abc' is not valid",
    ),
    ("duplicate input", BASE.replace("  text: str", "  text: str\n  text: int"), 4, "duplicate key 'text'"),
    ("duplicate top key", BASE + "name: u\n", 9, "duplicate key 'name'"),
    ("input schema keyword", BASE.replace("  text: str", "  text: {type: string, maxLength: -1}"), 3, "maxLength"),
    ("non-UTF-8 file", None, 2, "not UTF-8"),
]


@pytest.mark.parametrize(("name", "text", "line", "message"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_mistake_names_the_file_and_line(tmp_path: Path, name: str, text: str | None, line: int,
                                              message: str) -> None:  # fmt: skip
    path = tmp_path / "bad.yaml"
    if text is None:
        path.write_bytes(b"name: t\ndescription: caf\xe9\noutput: str\n")
    else:
        path.write_text(text)
    with pytest.raises(TaskDefinitionError) as caught:
        promptask.load_task(path)
    assert str(caught.value).startswith(f"{path}:{line}: "), str(caught.value)
    assert message in str(caught.value)


def test_a_valid_default_and_a_null_default_are_accepted(tmp_path: Path) -> None:
    extra = '  text: str\n  n: {type: integer, default: 3}\n  m: {type: ["integer", "null"], minimum: 1, default: null}'
    text = BASE.replace("  text: str", extra)
    (tmp_path / "t.yaml").write_text(text)
    assert promptask.load_task(tmp_path / "t.yaml").input_model(text="x").n == 3  # type: ignore[attr-defined]


def test_an_eval_keyword_value_is_not_checked_statically(tmp_path: Path) -> None:
    text = BASE.replace("a: {type: string}", "a: {type: string, maxLength: {$eval: '3'}}")
    (tmp_path / "t.yaml").write_text(textwrap.dedent(text))
    assert json.dumps(promptask.load_task(tmp_path / "t.yaml").json_schema())
