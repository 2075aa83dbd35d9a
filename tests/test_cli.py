"""The command line, run as a real subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTED = 'scripted:{"label": "negative"}'


def promptask(*args: str, cwd: Path | None = None, backend: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PROMPTASK_BACKEND"}
    if backend:
        env["PROMPTASK_BACKEND"] = backend
    return subprocess.run(
        [sys.executable, "-m", "promptask", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "prompts").mkdir()
    (tmp_path / "tasks" / "topic.yaml").write_text(
        "name: topic\ndescription: Name the topic of a text.\ninputs:\n  text: str\n  labels: list[str]\n"
        "output: str\ntemplate_file: topic.j2\n"
    )
    (tmp_path / "prompts" / "topic.j2").write_text("Labels: {{ labels | join(', ') }}\nText: {{ text }}")
    return tmp_path


def test_list_shows_project_and_builtin_tasks(project: Path) -> None:
    out = promptask("list", cwd=project)
    assert out.returncode == 0, out.stderr
    assert re.search(r"^topic +Name the topic of a text\.  \[tasks/topic\.yaml\]$", out.stdout, re.M)
    assert "sentiment" in out.stdout and "[built-in]" in out.stdout


def test_show_prints_schema_and_rendered_messages(project: Path) -> None:
    out = promptask("show", "topic", "--input", "text=Goal!", "--input", 'labels=["sport", "politics"]', cwd=project)
    assert out.returncode == 0, out.stderr
    assert '"answer"' in out.stdout
    assert "--- user ---\nLabels: sport, politics\nText: Goal!" in out.stdout


def test_run_prints_the_output_and_json_on_request(tmp_path: Path) -> None:
    out = promptask("run", "sentiment", "--input", "text=Awful service.", backend=SCRIPTED, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"label": "negative"}
    out = promptask("run", "sentiment", "-i", "text=Awful.", "--json", "--backend", SCRIPTED, cwd=tmp_path)
    result = json.loads(out.stdout)
    assert result["output"] == {"label": "negative"} and result["backend"] == "scripted"
    assert len(result["attempts"]) == 1 and result["usage"]["completion_tokens"] > 0


def test_input_can_be_read_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "review.txt").write_text("Never again.")
    out = promptask("show", "sentiment", "--input", "text=@review.txt", cwd=tmp_path)
    assert "Text: Never again." in out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "nosuchtask"], "unknown task 'nosuchtask'"),
        (["run", "sentiment"], "text: missing required input"),
        (["run", "sentiment", "--input", "colour=red"], "colour: unknown input"),
        (["run", "sentiment", "--input", "novalue"], "write NAME=VALUE"),
        (["run", "sentiment", "-i", "text=x", "--backend", "warp:9"], "unknown backend scheme"),
        (["show", "sentiment", "-i", "text=@missing.txt"], "cannot read 'missing.txt'"),
    ],
)
def test_user_mistakes_exit_2_with_one_line_and_no_traceback(tmp_path: Path, args: list[str], message: str) -> None:
    out = promptask(*args, cwd=tmp_path, backend=SCRIPTED)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_bad_task_file_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "broken.yaml").write_text("name: broken\noutput: str\ninputs:\n  text: strng\n")
    out = promptask("run", "broken", "-i", "text=x", cwd=tmp_path, backend=SCRIPTED)
    assert out.returncode == 2
    assert "broken.yaml:4: inputs.text: unknown type 'strng'" in out.stderr
    listed = promptask("list", cwd=tmp_path)
    assert listed.returncode == 2 and "sentiment" in listed.stdout and "broken.yaml:4" in listed.stderr


def test_output_that_never_validates_exits_1_with_every_attempt(tmp_path: Path) -> None:
    out = promptask("run", "sentiment", "-i", "text=x", cwd=tmp_path, backend='scripted:{"label": "meh"}')
    assert out.returncode == 1
    assert "produced no valid output in 3 attempts" in out.stderr
    assert out.stderr.count("attempt ") == 3 and "Traceback" not in out.stderr
