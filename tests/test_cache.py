"""The persistent cache: hits, misses, modes, safety, corruption and several processes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import diskcache
import pytest

import promptask
from promptask import ScriptedBackend
from promptask.backends import Message, Sampling
from promptask.cache import ResultCache, cache_key


@promptask.task(template="Summarize: {{ text }}")
def summary(text: str) -> str: ...


def answers(*texts: str) -> ScriptedBackend:
    return ScriptedBackend([{"answer": t} for t in texts])


def test_hit_returns_cached_without_calling_the_backend() -> None:
    backend = answers("short", "other")
    first = summary.run(text="a long text", backend=backend)
    second = summary.run(text="a long text", backend=backend)
    assert (first.cached, second.cached) == (False, True)
    assert second.output == "short" and second.raw == first.raw
    assert second.attempts == () and second.usage.total_tokens == 0
    assert len(backend.requests) == 1


def test_changed_input_or_template_is_a_miss() -> None:
    backend = answers("one", "two", "three")
    summary.run(text="a", backend=backend)
    assert not summary.run(text="b", backend=backend).cached

    @promptask.task(template="Summarize briefly: {{ text }}", name="summary")
    def changed(text: str) -> str: ...

    result = changed.run(text="a", backend=backend)
    assert not result.cached and result.output == "three"
    assert changed.digest != summary.digest


def test_cache_off_and_refresh(monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> None:
    backend = answers("1", "2", "3", "4")
    summary.run(text="t", backend=backend)
    assert summary.run(text="t", backend=backend, cache="refresh").output == "2"  # recomputed...
    assert summary.run(text="t", backend=backend).output == "2"  # ...and stored
    assert summary.run(text="t", backend=backend, cache=False).output == "3"
    monkeypatch.setenv("PROMPTASK_CACHE", "0")
    assert summary.run(text="t", backend=backend).output == "4"
    promptask.configure(cache="on")  # configure() outranks the environment
    assert summary.run(text="t", backend=backend).cached


def test_cache_directory_is_private(cache_dir: Path) -> None:
    summary.run(text="t", backend=answers("x"))
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700


def _key_for(text: str, backend: ScriptedBackend) -> str:
    return cache_key(
        task_digest=summary.digest,
        messages=summary.render(text=text),
        sampling=summary.sampling,
        backend_fingerprint=backend.fingerprint(),
        version=promptask.__version__,
    )


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {os.environ['PROMPTASK_CACHE_DIR']}/PWNED",))


def test_a_pickled_entry_is_never_unpickled(cache_dir: Path) -> None:
    backend = answers("fresh")
    cache_dir.mkdir(mode=0o700)
    with diskcache.Cache(str(cache_dir)) as raw:  # the default Disk pickles
        raw.set(_key_for("t", backend), _Exploit())
    result = summary.run(text="t", backend=backend)
    assert result.output == "fresh" and not result.cached
    assert not (cache_dir / "PWNED").exists()


def test_corrupt_or_stale_entries_are_misses(cache_dir: Path) -> None:
    backend = answers("first", "second")
    cache = ResultCache(cache_dir)
    cache.set(_key_for("t", backend), {"output": {"answer": 42}, "raw": "42"})  # fails validation
    promptask.configure(cache=cache)
    assert summary.run(text="t", backend=backend).output == "first"
    with diskcache.Cache(str(cache_dir)) as raw:
        raw.set(_key_for("u", backend), b"\xff not json")
    assert summary.run(text="u", backend=backend).output == "second"
    cache.close()


def test_a_corrupt_database_warns_once_and_runs_uncached(cache_dir: Path) -> None:
    cache_dir.mkdir(mode=0o700)
    (cache_dir / "cache.db").write_bytes(b"this is not a sqlite database" * 100)
    backend = answers("a", "b")
    with pytest.warns(RuntimeWarning, match="cache at .* is unusable"):
        assert summary.run(text="t", backend=backend).output == "a"
    assert summary.run(text="t", backend=backend).output == "b"  # no second warning: -W error would fail


def test_key_changes_with_everything_that_changes_the_answer() -> None:
    base = {
        "task_digest": "d",
        "messages": [Message("user", "hi")],
        "sampling": Sampling(),
        "backend_fingerprint": "model-sha",
        "version": "1",
    }
    variants = [
        {"task_digest": "e"},
        {"messages": [Message("user", "hi!")]},
        {"messages": [Message("system", "hi")]},
        {"sampling": Sampling(temperature=0.5)},
        {"sampling": Sampling(seed=1)},
        {"backend_fingerprint": "other-model"},
        {"version": "2"},
    ]
    keys = {cache_key(**{**base, **v}) for v in variants} | {cache_key(**base)}  # type: ignore[arg-type]
    assert len(keys) == len(variants) + 1


WRITER = """
import sys
from promptask.cache import ResultCache
cache = ResultCache(sys.argv[1])
for i in range(50):
    cache.set(f"{sys.argv[2]}-{i}", {"output": {"answer": i}, "raw": str(i)})
"""


def test_several_processes_share_one_cache(cache_dir: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(cache_dir), f"p{n}"]) for n in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    cache = ResultCache(cache_dir)
    assert len(cache) == 200
    assert cache.get("p3-49") == {"output": {"answer": 49}, "raw": "49", "format": 1}
    cache.close()


def test_cached_results_survive_the_process(cache_dir: Path) -> None:
    cmd = [sys.executable, "-m", "promptask", "run", "sentiment", "--input", "text=great", "--json"]
    env = {**os.environ, "PROMPTASK_BACKEND": 'scripted:{"label": "positive"}'}
    runs = [json.loads(subprocess.run(cmd, env=env, capture_output=True, check=True, text=True).stdout) for _ in "ab"]
    assert [r["cached"] for r in runs] == [False, True]
    assert runs[1]["output"] == {"label": "positive"}
