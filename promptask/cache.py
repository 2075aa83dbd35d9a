"""The persistent result cache, on diskcache (SQLite: safe across threads and processes).

Entries are JSON, never pickles: diskcache unpickles by default, which would
make a shared cache directory a code-execution risk, so the ``Disk`` used
here stores JSON bytes only and refuses to read an entry of any other kind.
Every entry is validated again by the task when read; an entry that fails is
a miss.  A database that cannot be opened or read is reported once as a
warning and the call goes on uncached.

A cache database is data someone else may have written, so nothing in it is
trusted.  diskcache joins a row's ``filename`` to the cache directory to
read, and to delete when a row expires or is culled; here only file names of
the form diskcache itself generates (``ab/cd/<28 hex>.val``), resolving inside
the cache directory, are ever read or removed.  Its Settings table can
rename attributes and run PRAGMAs, so every setting is passed explicitly and
a table holding anything else makes the cache unusable (one warning).  A
directory or database that another user owns or can write is refused the
same way: whoever can write it can plant entries.

>>> import tempfile
>>> from promptask.cache import ResultCache
>>> cache = ResultCache(tempfile.mkdtemp())
>>> cache.set("k", {"output": {"answer": 1}, "raw": '{"answer": 1}'})
>>> cache.get("k")["raw"]
'{"answer": 1}'
>>> cache.close()
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import os
import re
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


class _UnsafeCacheError(Exception):
    """The directory or database cannot be trusted: the cache is not used."""


# The only file names diskcache's Disk.filename() generates: two levels of hex folders.
_VALUE_FILE = re.compile(r"[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{28}\.val")

# Every setting, given explicitly: diskcache lets a stored Settings row override
# any setting it is not given, and a bad one breaks every call.
_SETTINGS: dict[str, Any] = {
    **diskcache.DEFAULT_SETTINGS,
    "eviction_policy": "least-recently-stored",
    "size_limit": 2**30,
    "disk_min_file_size": 2**15,
    "disk_pickle_protocol": 0,  # never used: nothing is pickled
}
_METADATA = frozenset(diskcache.core.METADATA)


class _JsonOnlyDisk(diskcache.Disk):  # type: ignore[misc]
    """A diskcache Disk that will not unpickle, nor touch a file outside its directory, whatever the database says."""

    def __init__(self, directory: str, min_file_size: int = 0, pickle_protocol: int = 0) -> None:
        super().__init__(directory, min_file_size=min_file_size, pickle_protocol=pickle_protocol)
        self._root = os.path.realpath(directory)

    def _inside(self, filename: Any) -> str:
        """The full path of a value file named in a row, if it is one this cache could have written."""
        if not isinstance(filename, str) or not _VALUE_FILE.fullmatch(filename.replace(os.sep, "/")):
            raise _UnsafeEntryError("value file name not made by the cache")
        full = os.path.realpath(os.path.join(self._root, filename))
        if os.path.commonpath([full, self._root]) != self._root:
            raise _UnsafeEntryError("value file outside the cache directory")
        return full

    def remove(self, file_path: Any) -> None:
        # diskcache's own remove() joins any path (an absolute one escapes) and
        # then removes every emptied parent folder.
        try:
            full = self._inside(file_path)
        except _UnsafeEntryError:
            return
        for path, remove in ((full, os.remove), (os.path.dirname(full), os.rmdir),
                             (os.path.dirname(os.path.dirname(full)), os.rmdir)):  # fmt: skip
            try:
                remove(path)
            except OSError:
                return  # gone already (another process), or the folder is not empty

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
        if mode == diskcache.core.MODE_RAW:
            return super().fetch(mode, filename, value, read)
        if mode != diskcache.core.MODE_BINARY:
            raise _UnsafeEntryError(f"entry of mode {mode}")
        with open(self._inside(filename), "rb") as reader:
            return reader.read()


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
                    _check_trusted(self.directory)
                    self._store = diskcache.Cache(str(self.directory), disk=_JsonOnlyDisk, **_SETTINGS)
                except (OSError, sqlite3.Error, _UnsafeCacheError) as exc:
                    self._fail(exc)
                except (TypeError, ValueError, KeyError, AttributeError) as exc:
                    # A database crafted to break diskcache's own set-up: unusable, not a crash.
                    self._fail(exc)
            return self._store

    def _fail(self, exc: BaseException) -> None:
        self._broken = True
        store, self._store = self._store, None
        if store is not None:
            with contextlib.suppress(OSError, sqlite3.Error):
                store.close()
        reason = str(exc) if isinstance(exc, _UnsafeCacheError) else f"{type(exc).__name__}: {exc}"
        warnings.warn(
            f"promptask cache at {self.directory} is unusable ({reason}); "
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
        except (OSError, sqlite3.Error, *_TAMPERED) as exc:
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
        except (OSError, sqlite3.Error, *_TAMPERED) as exc:
            self._fail(exc)

    def delete(self, key: str) -> None:
        store = self._open()
        if store is not None:
            try:
                store.delete(key)
            except (OSError, sqlite3.Error, *_TAMPERED) as exc:
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


# What diskcache raises on rows of the wrong type (a text size, a number as a file name):
# such a database is reported as unusable, like a corrupt one.
_TAMPERED = (TypeError, ValueError, KeyError, _UnsafeEntryError)


def _check_trusted(directory: Path) -> None:
    """Refuse a directory or database that another user owns or can write, or a tampered Settings table."""
    database = directory / "cache.db"
    if os.name == "posix":
        for path in (directory, database, directory / "cache.db-wal", directory / "cache.db-shm"):
            try:
                info = path.stat()
            except FileNotFoundError:
                continue
            if info.st_uid != os.getuid():
                raise _UnsafeCacheError(f"{path} belongs to another user, who could plant entries")
            if info.st_mode & 0o022:
                raise _UnsafeCacheError(
                    f"{path} can be written by other users (mode {oct(info.st_mode & 0o777)}), who could plant "
                    f"entries; run chmod go-w on it"
                )
    if not database.is_file():
        return
    connection = sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)
    try:
        rows = connection.execute("SELECT key, value FROM Settings").fetchall()
    except sqlite3.OperationalError:
        return  # no Settings table yet: diskcache creates it
    finally:
        connection.close()
    for name, value in rows:
        # Known names with values of the type diskcache writes; anything else was not written by it.
        expected = int if name in _METADATA else type(_SETTINGS[name]) if name in _SETTINGS else None
        if expected is None or type(value) is not expected:
            raise _UnsafeCacheError(f"its Settings table holds {name!r} = {value!r}, which diskcache never writes")


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
