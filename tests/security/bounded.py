"""Run code in a child process with a hard time and memory limit, so a bomb that is not defused fails a test
instead of taking the machine down with it."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from typing import Any

MEMORY_LIMIT = 768 * 2**20  # bytes of address space: a few times what promptask needs, far below any bomb


def run_bounded(code: str, *, seconds: float = 60, memory: int = MEMORY_LIMIT, cwd: str | None = None) -> Any:
    """Run ``code`` (which prints one JSON value last) in a fresh interpreter; that value."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    done = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=seconds,
        cwd=cwd,
        check=False,
    )
    assert done.returncode == 0, f"child failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])
