"""Backends: where a task's request meets a model.

``Backend`` is a protocol with one method, ``generate(request) -> Generation``.
Built-in URI schemes: ``scripted:`` (always answers with the text after the
colon).  Register more with :func:`register_backend`.
"""

from promptask.backends.base import (
    Backend,
    BackendInfo,
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
from promptask.backends.scripted import ScriptedBackend

__all__ = [
    "Backend",
    "BackendInfo",
    "Generation",
    "GenerationRequest",
    "Message",
    "Role",
    "Sampling",
    "SchemaEnforcement",
    "ScriptedBackend",
    "Usage",
    "describe",
    "register_backend",
    "registered_schemes",
    "resolve_backend",
]
