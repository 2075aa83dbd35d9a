"""Shared fixtures: every test runs with its own cache directory and a clean configuration.

Tests that load a model or start a server are marked ``slow``, and only those;
:func:`slow_means_model_or_server` fails an unmarked test that uses a model in
this process or opens a listening socket, and ``tests/guard/sitecustomize.py``
makes a model load fail in any Python subprocess such a test starts, so the
mark cannot drift.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import chromium  # the real headless Chromium fixture for page tests

import promptask
from promptask.backends.local import ModelPool

__all__ = ["chromium"]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("PROMPTASK_CACHE_DIR", str(cache_dir))
    for name in ("PROMPTASK_BACKEND", "PROMPTASK_CACHE", "PROMPTASK_DEBUG", "PROMPTASK_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    promptask.config.reset()
    yield cache_dir
    promptask.config.reset()


@pytest.fixture
def cache_dir(isolated: Path) -> Path:
    return isolated


GUARD = str(Path(__file__).parent / "guard")


@pytest.fixture(autouse=True)
def slow_means_model_or_server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if request.node.get_closest_marker("slow") is not None:
        yield
        return
    used: list[str] = []
    get, listen = ModelPool.get, socket.socket.listen

    def model(pool: Any, key: Any) -> Any:
        used.append(f"uses a model ({key})")
        return get(pool, key)

    def server(sock: socket.socket, *args: Any) -> None:
        used.append(f"starts a server ({sock.getsockname()})")
        listen(sock, *args)

    monkeypatch.setattr(ModelPool, "get", model)
    monkeypatch.setattr(socket.socket, "listen", server)
    monkeypatch.setenv("PROMPTASK_TEST_UNMARKED", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([GUARD, *filter(None, [os.environ.get("PYTHONPATH")])]))
    yield
    if used:
        pytest.fail(f"this test {used[0]}: mark it @pytest.mark.slow (and keep unmarked tests model- and server-free)")
