"""Backends for the Ray tests, importable by Ray workers (the tests put this folder on their PYTHONPATH)."""

from __future__ import annotations

import hashlib
import os
import time

from promptask import ScriptedBackend
from promptask.backends import GenerationRequest

LABELS = ("positive", "negative", "neutral")


def _label(request: GenerationRequest) -> dict[str, str]:
    text = request.messages[-1].content
    return {"label": LABELS[hashlib.sha256(text.encode()).digest()[0] % 3]}


def labeller() -> ScriptedBackend:
    """A label that depends on the row's text, at once."""
    return ScriptedBackend(_label)


def slow_labeller() -> ScriptedBackend:
    """The same labels, after $RAY_TEST_DELAY_S seconds a row (default 0.05)."""
    delay = float(os.environ.get("RAY_TEST_DELAY_S", "0.05"))

    def reply(request: GenerationRequest) -> dict[str, str]:
        time.sleep(delay)
        return _label(request)

    return ScriptedBackend(reply)
