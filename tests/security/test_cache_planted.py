"""Planted rows and a hostile database, against a real diskcache database: nothing outside the cache
directory is read or removed, and a tampered database is one warning, then calls run uncached."""

from __future__ import annotations

import json
import os
import sqlite3
import time
import warnings
from pathlib import Path

import diskcache
import pytest

import promptask
from promptask import ScriptedBackend
from promptask.cache import ResultCache, cache_key


@promptask.task(template="Summarize: {{ text }}")
def summary(text: str) -> str: ...


def key_for(text: str, backend: ScriptedBackend) -> str:
    return cache_key(
        task_digest=summary.digest,
        messages=summary.render(text=text),
        sampling=summary.sampling,
        backend_fingerprint=backend.fingerprint(),
        version=promptask.__version__,
    )


def make_cache(cache_dir: Path) -> None:
    cache = ResultCache(cache_dir)
    cache.set("seed", {"output": {"answer": "x"}, "raw": "x"})
    cache.close()


def plant(cache_dir: Path, key: str, *, mode: int, filename: str, expire: float | None = None) -> None:
    with sqlite3.connect(cache_dir / "cache.db") as db:
        now = time.time()
        db.execute(
            "INSERT OR REPLACE INTO Cache (key, raw, store_time, expire_time, access_time, access_count, tag, size,"
            " mode, filename, value) VALUES (?, 1, ?, ?, ?, 0, NULL, 0, ?, ?, NULL)",
            (key, now, expire, now, mode, filename),
        )


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    folder = tmp_path / "home" / "important"
    folder.mkdir(parents=True)
    file = folder / "important.txt"
    file.write_text(json.dumps({"output": {"answer": "planted"}, "raw": '{"answer": "planted"}', "format": 1}))
    return file


def names(victim: Path) -> list[str]:
    """Ways a planted row can name the victim: absolute, climbing out, and shaped like diskcache's own names."""
    return [str(victim), f"../home/{victim.parent.name}/{victim.name}", "../" * 12 + str(victim).lstrip("/")]


@pytest.mark.parametrize("which", range(3))
def test_an_expired_row_culled_on_the_next_write_deletes_nothing_outside(
    cache_dir: Path, victim: Path, which: int
) -> None:
    make_cache(cache_dir)
    plant(cache_dir, "planted", mode=diskcache.core.MODE_BINARY, filename=names(victim)[which], expire=1.0)
    summary.run(text="any call", backend=ScriptedBackend([{"answer": "a"}]))  # its cache write culls
    assert victim.exists() and victim.parent.exists()
    with sqlite3.connect(cache_dir / "cache.db") as db:  # the row itself is gone
        assert db.execute("SELECT count(*) FROM Cache WHERE key = 'planted'").fetchone() == (0,)


@pytest.mark.parametrize("mode", [diskcache.core.MODE_PICKLE, diskcache.core.MODE_TEXT, 7])
def test_a_row_of_another_mode_under_the_exact_key_is_a_miss_and_deletes_nothing(
    cache_dir: Path, victim: Path, mode: int
) -> None:
    make_cache(cache_dir)
    backend = ScriptedBackend([{"answer": "fresh"}])
    plant(cache_dir, key_for("t", backend), mode=mode, filename=str(victim))
    result = summary.run(text="t", backend=backend)
    assert (result.output, result.cached) == ("fresh", False)
    assert victim.exists() and victim.parent.exists()


@pytest.mark.parametrize("which", range(3))
def test_a_binary_row_pointing_outside_is_never_read(cache_dir: Path, victim: Path, which: int) -> None:
    make_cache(cache_dir)
    backend = ScriptedBackend([{"answer": "fresh"}])
    plant(cache_dir, key_for("t", backend), mode=diskcache.core.MODE_BINARY, filename=names(victim)[which])
    result = summary.run(text="t", backend=backend)
    assert (result.output, result.cached) == ("fresh", False)  # not "planted"
    assert victim.exists()


def test_a_value_file_reached_through_a_planted_symlink_is_never_read(cache_dir: Path, victim: Path) -> None:
    make_cache(cache_dir)
    (cache_dir / "ab").symlink_to(victim.parent.parent, target_is_directory=True)
    (victim.parent.parent / "cd").mkdir()
    outside = victim.parent.parent / "cd" / ("0" * 28 + ".val")
    outside.write_bytes(victim.read_bytes())
    backend = ScriptedBackend([{"answer": "fresh"}])
    plant(cache_dir, key_for("t", backend), mode=diskcache.core.MODE_BINARY, filename=f"ab/cd/{'0' * 28}.val")
    assert not summary.run(text="t", backend=backend).cached
    assert outside.exists()


def test_large_entries_stored_in_files_still_round_trip(cache_dir: Path) -> None:
    big = "word " * 20_000  # over diskcache's 32 kB: stored as a value file, read back through the checks
    backend = ScriptedBackend([{"answer": big}])
    assert not summary.run(text="big", backend=backend).cached
    again = summary.run(text="big", backend=backend)
    assert again.cached and again.output == big
    assert list(cache_dir.glob("*/*/*.val"))


def test_a_known_setting_with_a_bad_value_is_overridden(cache_dir: Path) -> None:
    make_cache(cache_dir)
    with sqlite3.connect(cache_dir / "cache.db") as db:
        db.execute("UPDATE Settings SET value = 'bogus' WHERE key = 'eviction_policy'")  # was a KeyError per call
    backend = ScriptedBackend([{"answer": "a"}])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary.run(text="t", backend=backend)
        assert summary.run(text="t", backend=backend).cached  # every setting is passed explicitly


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("size_limit", "abc"),
        ("disk_evil", 1),
        ("sqlite_evil", 1),
        ("count", "x"),
        ("_directory", "/"),
        ("disk__directory", "/"),
        ("cull_limit", None),
        ("eviction_policy", 3),
    ],
)
def test_a_hostile_settings_table_is_one_warning_then_uncached(cache_dir: Path, name: str, value: object) -> None:
    make_cache(cache_dir)
    with sqlite3.connect(cache_dir / "cache.db") as db:
        db.execute("INSERT OR REPLACE INTO Settings VALUES (?, ?)", (name, value))
    backend = ScriptedBackend([{"answer": "a"}, {"answer": "b"}])
    with pytest.warns(RuntimeWarning, match="cache at .* is unusable.*Settings table holds"):
        assert summary.run(text="t", backend=backend).output == "a"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        assert summary.run(text="t", backend=backend).output == "b"


@pytest.mark.parametrize("target", ["directory", "database"])
def test_a_cache_others_can_write_is_refused(cache_dir: Path, target: str) -> None:
    make_cache(cache_dir)
    path = cache_dir if target == "directory" else cache_dir / "cache.db"
    os.chmod(path, 0o777 if target == "directory" else 0o666)
    with pytest.warns(RuntimeWarning, match="can be written by other users"):
        assert not summary.run(text="t", backend=ScriptedBackend([{"answer": "a"}])).cached


def test_a_cache_of_the_users_own_is_used(cache_dir: Path) -> None:
    make_cache(cache_dir)
    backend = ScriptedBackend([{"answer": "a"}])
    summary.run(text="t", backend=backend)
    assert summary.run(text="t", backend=backend).cached
