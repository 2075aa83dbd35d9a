"""The examples run as written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_support_triage_project_runs_from_the_cli() -> None:
    reply = {
        "team": "billing",
        "urgency": "high",
        "summary": "Charged twice.",
        "customer": {"mood": "angry", "wants_refund": True},
    }
    env = {**os.environ, "PROMPTASK_BACKEND": "scripted:" + json.dumps(reply)}
    out = subprocess.run(
        [sys.executable, "-m", "promptask", "run", "triage", "--input", "ticket=I was charged twice!"],
        cwd=EXAMPLES / "support_triage",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == reply
    listed = subprocess.run(
        [sys.executable, "-m", "promptask", "list"], cwd=EXAMPLES / "support_triage", capture_output=True, text=True
    )
    assert "triage" in listed.stdout
