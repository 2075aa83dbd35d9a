"""Shared fixtures: every test runs with its own cache directory and a clean configuration."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import chromium  # the real headless Chromium fixture for page tests

import promptask

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
