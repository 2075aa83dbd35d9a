"""The README stays true: its commands and its Python examples run as written."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import promptask
from promptask.backends import ExampleBackend

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SERVER_URL = "http://127.0.0.1:8080/v1"  # where the README's server examples expect a server


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    command = next(line.strip() for line in README.splitlines() if "pytest" in line and "pip install" in line)
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


@pytest.mark.slow
def test_the_main_job_runs_on_the_default_model(tmp_path: Path) -> None:
    line = next(line for line in README.splitlines() if "promptask run sentiment" in line)
    assert "pip install" in line  # the one-line install-and-run command near the top
    args = shlex.split(line[line.index("promptask run") :])[1:]
    env = {k: v for k, v in os.environ.items() if k != "PROMPTASK_BACKEND"}
    out = subprocess.run(
        [sys.executable, "-m", "promptask", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["label"] in {"positive", "negative", "neutral"}
    assert out.stderr == ""


@pytest.mark.slow  # the README's llama.cpp and transformers blocks run their real models
def test_python_examples_run_in_order(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)  # the examples write files

    promptask.configure(backend=ExampleBackend())
    namespace: dict[str, Any] = {"__name__": "readme"}
    blocks = re.findall(r"```python\n(.*?)```", README, re.DOTALL)
    assert len(blocks) >= 4
    for block in blocks:
        if SERVER_URL in block:
            continue  # needs a running server: tests/test_openai.py runs it against one
        exec(compile(block, "README.md", "exec", dont_inherit=True), namespace)
    assert namespace["label"] == "positive"
    assert namespace["routed"].team == "web"
