"""Imported by every Python subprocess a test starts (tests/conftest.py puts this folder on PYTHONPATH).

In a test not marked ``slow`` (``PROMPTASK_TEST_UNMARKED`` is set), loading a
model fails loudly, so a subprocess cannot hide a model from the marks.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any

WATCHED = "promptask.backends.local"


class _ForbidModels(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != WATCHED:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            load(module)

            def forbidden(pool: Any, key: Any) -> Any:
                raise RuntimeError(f"a test not marked slow loads a model ({key}): mark it @pytest.mark.slow")

            module.ModelPool.get = forbidden  # type: ignore[attr-defined]

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("PROMPTASK_TEST_UNMARKED"):
    sys.meta_path.insert(0, _ForbidModels())
