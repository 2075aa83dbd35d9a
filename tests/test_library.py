"""The built-in library's typed layer, per-call schemas ($eval) and checks, and overriding built-ins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import promptask
from promptask import OutputValidationError, ScriptedBackend, TaskDefinitionError
from promptask.tasks import BUILTIN_TASKS, library
from promptask.tasks.loader import load_task, task_from_mapping

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", promptask.builtin_task_names())
def test_typed_outputs_match_the_yaml_schemas(name: str) -> None:
    from_yaml = load_task(BUILTIN_TASKS / f"{name}.yaml")
    typed = promptask.builtin_task(name)
    assert typed.json_schema() == from_yaml.json_schema()
    assert list(typed.input_model.model_fields) == list(from_yaml.input_model.model_fields)
    assert typed.output_model.__module__ == library.__name__


def test_builtins_are_typed_for_type_checkers(tmp_path: Path) -> None:
    user = tmp_path / "use.py"
    user.write_text(
        textwrap.dedent(
            """
            import promptask
            result = promptask.tasks.classify("A late goal won the cup.", ["sport", "politics"])
            reveal_type(result)
            promptask.tasks.summarize(text="x", max_words="many")
            """
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", str(user)], capture_output=True, text=True, cwd=ROOT
    )
    assert 'Revealed type is "promptask.tasks.library.Classification"' in out.stdout
    assert 'error: No overload variant of "__call__" of "Task" matches argument types "str", "str"' in out.stdout
    assert "def __call__(self, text: str, max_words: int = ...) -> Summary" in out.stdout


def test_eval_values_shape_decoding_per_call_but_not_the_prompt() -> None:
    classify = promptask.tasks.classify
    backend = ScriptedBackend([{"labels": ["b"]}, {"labels": ["y"]}])
    assert classify("t", ["a", "b"], backend=backend, cache=False).label == "b"
    assert classify("t", ["x", "y", "z"], backend=backend, cache=False).label == "y"
    first, second = backend.requests
    assert first.schema["properties"]["labels"]["items"]["enum"] == ["a", "b"]
    assert second.schema["properties"]["labels"]["items"]["enum"] == ["x", "y", "z"]
    assert second.schema["properties"]["labels"]["maxItems"] == 1
    assert first.messages[0] == second.messages[0]  # same system message: the KV prefix is reused
    assert "enum" not in json.dumps(classify.json_schema())


def test_checks_reject_outputs_and_the_model_sees_why() -> None:
    backend = ScriptedBackend([{"labels": ["c"]}, {"labels": ["a"]}])
    result = promptask.tasks.classify.run("t", ["a", "b"], backend=backend, cache=False)
    assert result.output.label == "a"
    assert result.attempts[0].error == '"c" is not one of ["a", "b"].'
    assert '"c" is not one of' in backend.requests[1].messages[-1].content


def test_entity_offsets_are_checked() -> None:
    wrong = {"entities": [{"text": "Ada", "type": "PERSON", "start": 1, "end": 4}]}
    with pytest.raises(OutputValidationError, match='"Ada" is not at characters 1-4 of the text'):
        promptask.tasks.extract_entities.with_options(retries=0).run(
            "Ada met Charles.", backend=ScriptedBackend([wrong]), cache=False
        )


def test_span_constraints_only_offer_spans_of_the_input() -> None:
    backend = ScriptedBackend([{"answer": "unanswerable"}])
    promptask.tasks.answer_question("Who?", "Tom won the race.", backend=backend, cache=False)
    enum = backend.requests[0].schema["properties"]["answer"]["enum"]
    assert enum[0] == "unanswerable" and "Tom won the race" in enum and all(a in "Tom won the race." for a in enum[1:])


def test_eval_and_checks_errors_name_the_file(tmp_path: Path) -> None:
    spec = {"name": "t", "inputs": {"a": "str"}, "output": {"type": "object", "properties": {
        "x": {"type": "string", "enum": {"$eval": "a |"}}}}}  # fmt: skip
    with pytest.raises(TaskDefinitionError, match=r"output: \$eval 'a \|'"):
        task_from_mapping(spec, source="t.yaml")
    bad_check = tmp_path / "c.yaml"
    bad_check.write_text("name: c\ninputs: {a: str}\noutput: str\nchecks: |\n  fine\n  {% if %}\n")
    with pytest.raises(TaskDefinitionError) as info:
        load_task(bad_check)
    assert info.value.line == 6


def test_a_project_task_overrides_the_builtin_of_the_same_name(tmp_path: Path) -> None:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "sentiment.yaml").write_text(
        "name: sentiment\ndescription: Mine.\ninputs: {text: str}\noutput: str\ntemplate: 'Mood of {{ text }}'\n"
    )
    env = {**os.environ, "PROMPTASK_BACKEND": 'scripted:{"answer": "mine"}'}
    run = subprocess.run([sys.executable, "-m", "promptask", "run", "sentiment", "-i", "text=x"], cwd=tmp_path,
                         env=env, capture_output=True, text=True)  # fmt: skip
    assert run.stdout.strip() == "mine"
    listed = subprocess.run([sys.executable, "-m", "promptask", "list"], cwd=tmp_path, capture_output=True, text=True)
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert names.count("sentiment") == 1 and "Mine." in listed.stdout


def test_cli_batch_with_constant_inputs(tmp_path: Path) -> None:
    (tmp_path / "news.csv").write_text("id,text\n1,Goal!\n2,Vote!\n")
    env = {**os.environ, "PROMPTASK_BACKEND": 'scripted:{"labels": ["sport"]}'}
    cmd = [sys.executable, "-m", "promptask", "run", "classify", "--file", "news.csv", "--out", "out.jsonl",
           "--input", 'labels=["sport", "politics"]']  # fmt: skip
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(r["id"], r["output"]["labels"]) for r in records] == [("1", ["sport"]), ("2", ["sport"])]
    assert "classify: 2 rows: 2 done" in run.stderr


def test_classify_multi_label_allows_several_given_labels() -> None:
    backend = ScriptedBackend([{"labels": ["a", "c"]}])
    result = promptask.tasks.classify("t", ["a", "b", "c"], multi_label=True, backend=backend, cache=False)
    assert result.labels == ["a", "c"]
    assert backend.requests[0].schema["properties"]["labels"]["maxItems"] == 3
    with pytest.raises(OutputValidationError, match="Give exactly one label"):
        promptask.tasks.classify.with_options(retries=0).run(
            "t", ["a", "b", "c"], backend=ScriptedBackend([{"labels": ["a", "c"]}]), cache=False
        )
