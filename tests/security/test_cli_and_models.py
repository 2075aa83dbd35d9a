"""The CLI with a careless user's files, and model identity after files change under a running process."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from promptask.backends import llamacpp
from promptask.backends.llamacpp import LlamaCppBackend
from promptask.backends.model_files import directory_digest, file_digest


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROMPTASK_BACKEND": 'scripted:{"label": "positive"}', "PROMPTASK_CACHE": "0"}
    return subprocess.run([sys.executable, "-m", "promptask", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


def test_input_from_a_binary_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "photo.bin").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    done = cli("run", "sentiment", "--input", "text=@photo.bin", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "'photo.bin' is not UTF-8 text" in done.stderr


def test_a_prompts_folder_in_the_working_directory_does_not_replace_a_built_in_template(tmp_path: Path) -> None:
    before = cli("show", "sentiment", "--input", "text=nice", cwd=tmp_path).stdout
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "sentiment.j2").write_text('{% extends "sentiment.j2" %}')  # the README's advice
    after = cli("show", "sentiment", "--input", "text=nice", cwd=tmp_path)
    assert after.returncode == 0 and after.stdout == before
    (tmp_path / "prompts" / "sentiment.j2").write_text("HIJACKED {{ text }}")
    assert "HIJACKED" not in cli("show", "sentiment", "--input", "text=nice", cwd=tmp_path).stdout


def test_an_unexpected_error_is_one_line_unless_debugging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from promptask import cli as command

    def broken(args: Any) -> int:
        raise RuntimeError("something deep broke")

    monkeypatch.setattr(command, "_cmd_list", broken)
    assert command.main(["list"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: RuntimeError: something deep broke" in err
    monkeypatch.setenv("PROMPTASK_DEBUG", "1")
    with pytest.raises(RuntimeError):
        command.main(["list"])


def test_a_same_size_same_mtime_swap_gets_a_new_digest(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"model one")
    first = file_digest(model)
    info = model.stat()
    swap = tmp_path / "new.gguf"
    swap.write_bytes(b"model two")  # same size
    os.replace(swap, model)
    os.utime(model, ns=(info.st_atime_ns, info.st_mtime_ns))  # and the same mtime
    assert file_digest(model) == hashlib.sha256(b"model two").hexdigest() != first
    with model.open("r+b") as f:  # rewritten in place, mtime set back
        f.write(b"model 333")
    os.utime(model, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert file_digest(model) == hashlib.sha256(b"model 333").hexdigest()


@pytest.mark.parametrize(
    "changed", ["chat_template.jinja", "merges.txt", "vocab.txt", "tokenizer/special.json", "weights.safetensors"]
)
def test_every_file_of_a_model_folder_counts(tmp_path: Path, changed: str) -> None:
    names = ["chat_template.jinja", "merges.txt", "vocab.txt", "tokenizer/special.json", "weights.safetensors",
             "config.json"]  # fmt: skip
    for name in names:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(f"{name} v1")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "big.pack").write_text("bookkeeping")
    before = directory_digest(tmp_path)
    (tmp_path / ".git" / "big.pack").write_text("changed bookkeeping")
    assert directory_digest(tmp_path) == before  # hidden folders do not count
    (tmp_path / changed).write_text(f"{changed} v2")
    assert directory_digest(tmp_path) != before


class _FakePool:
    """Stands in for the model pool: records the settings a model would load with (no model is loaded)."""

    def __init__(self) -> None:
        self.loaded: dict[Any, object] = {}

    def get(self, key: Any) -> object:
        return self.loaded.setdefault(key, object())


def test_a_swapped_gguf_file_is_a_new_model_under_a_new_fingerprint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = _FakePool()
    monkeypatch.setattr(llamacpp, "_models", pool)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"old weights")
    backend = LlamaCppBackend(model)
    old_fingerprint, old_model = backend.fingerprint(), backend.model
    model.write_bytes(b"new weights!")
    assert backend.fingerprint() != old_fingerprint
    assert backend.model is not old_model  # the old model does not answer under the new digest
    assert {dataclasses.asdict(k)["digest"] for k in pool.loaded} == {
        hashlib.sha256(b"old weights").hexdigest(),
        hashlib.sha256(b"new weights!").hexdigest(),
    }
