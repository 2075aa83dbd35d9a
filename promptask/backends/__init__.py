"""Backends: where a task's request meets a model.

A backend needs one method, ``generate(request) -> Generation``; the
optional capabilities are declared, with their defaults, on
:class:`BaseBackend` (see :mod:`promptask.backends.base`).  URIs
(``scheme:rest``) name backends:

* ``llamacpp:`` / ``llamacpp:/path/model.gguf``: llama.cpp in this process (the default);
* ``hf:`` / ``hf:/path`` / ``hf:org/name``: Hugging Face transformers in this process;
* ``openai:http://host:port/v1#model``: any OpenAI-compatible server;
* ``scripted:TEXT``: always answers TEXT, for trying things without a model.

Register more with :func:`register_backend`.  The backend classes are
importable from here; each loads its heavy dependencies only when used:

>>> from promptask.backends import OpenAIBackend
>>> OpenAIBackend("http://127.0.0.1:8080/v1", "smollm2")
OpenAIBackend('http://127.0.0.1:8080/v1', model='smollm2')
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from promptask.backends.base import (
    Backend,
    BackendInfo,
    BaseBackend,
    Generation,
    GenerationRequest,
    Message,
    Role,
    Sampling,
    SchemaEnforcement,
    Usage,
    describe,
)
from promptask.backends.registry import register_backend, registered_schemes, resolve_backend
from promptask.backends.scripted import ExampleBackend, ScriptedBackend
from promptask.errors import ConfigurationError

if TYPE_CHECKING:
    from promptask.backends.llamacpp import LlamaCppBackend
    from promptask.backends.openai import OpenAIBackend
    from promptask.backends.transformers import TransformersBackend

__all__ = [
    "Backend",
    "BackendInfo",
    "BaseBackend",
    "ExampleBackend",
    "Generation",
    "GenerationRequest",
    "LlamaCppBackend",
    "Message",
    "OpenAIBackend",
    "Role",
    "Sampling",
    "SchemaEnforcement",
    "ScriptedBackend",
    "TransformersBackend",
    "Usage",
    "describe",
    "register_backend",
    "registered_schemes",
    "resolve_backend",
]

# class name -> (module, extra to install when its dependencies are missing)
_LAZY = {
    "LlamaCppBackend": ("promptask.backends.llamacpp", "llamacpp"),
    "TransformersBackend": ("promptask.backends.transformers", "transformers"),
    "OpenAIBackend": ("promptask.backends.openai", None),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'promptask.backends' has no attribute {name!r}")
    module_name, extra = _LAZY[name]
    try:
        module = importlib.import_module(module_name)  # llama.cpp, torch, httpx: only when asked for
    except ImportError as exc:
        hint = f": pip install 'promptask[{extra}]'" if extra else ""
        raise ConfigurationError(f"{name} needs {exc.name}, which is not installed{hint}") from None
    return getattr(module, name)
