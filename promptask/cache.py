"""The persistent result cache, on diskcache (SQLite: safe across threads and processes).

Entries are JSON, never pickles: diskcache unpickles by default, which would
make a shared cache directory a code-execution risk, so the ``Disk`` used
here stores JSON bytes only and refuses to read an entry of any other kind.
Every entry is validated again by the task when read; an entry that fails is
a miss.  A database that cannot be opened or read is reported once as a
warning and the call goes on uncached.

>>> import tempfile
>>> from promptask.cache import ResultCache
>>> cache = ResultCache(tempfile.mkdtemp())
>>> cache.set("k", {"output": {"answer": 1}, "raw": '{"answer": 1}'})
>>> cache.get("k")["raw"]
'{"answer": 1}'
>>> cache.close()
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import sqlite3
import sys
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import diskcache

from promptask.types import Message, Sampling

__all__ = ["CacheMode", "ResultCache", "cache_key", "default_cache_dir"]

_FORMAT = 1  # bump when the stored record's layout changes


class CacheMode(str, enum.Enum):
    """``on``: read and write; ``off``: neither; ``refresh``: write without reading."""

    ON = "on"
    OFF = "off"
    REFRESH = "refresh"


class _UnsafeEntryError(Exception):
    pass


class _JsonOnlyDisk(diskcache.Disk):  # type: ignore[misc]
    """A diskcache Disk that will not unpickle, whatever the database says."""

    def put(self, key: Any) -> tuple[Any, bool]:
        if not isinstance(key, str):
            raise TypeError("cache keys are strings")
        return super().put(key)  # type: ignore[no-any-return]

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise _UnsafeEntryError("pickled key")
        return super().get(key, raw)

    def store(self, value: Any, read: bool, key: Any = diskcache.UNKNOWN) -> Any:
        if not isinstance(value, bytes):
            raise TypeError("cache values are JSON bytes")
        return super().store(value, read, key=key)

    def fetch(self, mode: int, filename: Any, value: Any, read: bool) -> Any:
        if mode not in (diskcache.core.MODE_RAW, diskcache.core.MODE_BINARY):
            raise _UnsafeEntryError(f"entry of mode {mode}")
        return super().fetch(mode, filename, value, read)


def default_cache_dir() -> Path:
    """``$PROMPTASK_CACHE_DIR``, else the platform's user cache directory + ``promptask``."""
    configured = os.environ.get("PROMPTASK_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "promptask"


class ResultCache:
    """Validated task results on disk, keyed by :func:`cache_key`."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).expanduser()
        self._lock = threading.Lock()
        self._store: diskcache.Cache | None = None
        self._broken = False

    def _open(self) -> diskcache.Cache | None:
        with self._lock:
            if self._store is None and not self._broken:
                try:
                    _make_private_dir(self.directory)
                    self._store = diskcache.Cache(str(self.directory), disk=_JsonOnlyDisk)
                except (OSError, sqlite3.Error) as exc:
                    self._fail(exc)
            return self._store

    def _fail(self, exc: BaseException) -> None:
        self._broken = True
        self._store = None
        warnings.warn(
            f"promptask cache at {self.directory} is unusable ({type(exc).__name__}: {exc}); "
            "continuing without a cache. Delete the directory or set PROMPTASK_CACHE_DIR to fix it.",
            RuntimeWarning,
            stacklevel=4,
        )

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored record, or ``None`` on a miss (corrupt entries are misses, and removed)."""
        store = self._open()
        if store is None:
            return None
        try:
            data = store.get(key)
        except _UnsafeEntryError:
            self.delete(key)
            return None
        except (OSError, sqlite3.Error) as exc:
            self._fail(exc)
            return None
        if data is None:
            return None
        try:
            record = json.loads(data)
        except (TypeError, ValueError):
            record = None
        if not isinstance(record, dict) or record.get("format") != _FORMAT:
            self.delete(key)
            return None
        return record

    def set(self, key: str, record: Mapping[str, Any]) -> None:
        """Store a JSON-serialisable record."""
        store = self._open()
        if store is None:
            return
        data = json.dumps({**record, "format": _FORMAT}, ensure_ascii=False).encode()
        try:
            store.set(key, data)
        except (OSError, sqlite3.Error) as exc:
            self._fail(exc)

    def delete(self, key: str) -> None:
        store = self._open()
        if store is not None:
            try:
                store.delete(key)
            except (OSError, sqlite3.Error) as exc:
                self._fail(exc)

    def clear(self) -> None:
        """Remove every entry."""
        store = self._open()
        if store is not None:
            store.clear()

    def __len__(self) -> int:
        store = self._open()
        return len(store) if store is not None else 0

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def __repr__(self) -> str:
        return f"ResultCache({str(self.directory)!r})"


def _make_private_dir(directory: Path) -> None:
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
        if os.name == "posix":
            os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask


def cache_key(
    *,
    task_digest: str,
    messages: Sequence[Message],
    sampling: Sampling,
    backend_fingerprint: str,
    version: str,
) -> str:
    """The one place a cache key is derived: a hash of everything that changes the answer.

    ``task_digest`` covers the task's name, version, templates, schema,
    examples and validators' identity; credentials never reach any argument.
    """
    payload = json.dumps(
        [
            version,
            task_digest,
            [[m.role, m.content] for m in messages],
            sampling.to_dict(),
            backend_fingerprint,
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()
