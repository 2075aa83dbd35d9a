"""One registry resolves backend URIs (``scheme:rest``) to backend objects.

Built-in schemes are imported lazily, so ``import promptask`` never pulls in
llama.cpp, torch or an HTTP client.  A URI resolves to the same instance for
the life of the process, so a model file is loaded once however many tasks use it.

>>> from promptask.backends import resolve_backend
>>> resolve_backend('scripted:{"answer": 1}').generate  # doctest: +ELLIPSIS
<bound method ScriptedBackend.generate of ...>
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable

from promptask.backends.base import Backend, BaseBackend, adapt
from promptask.errors import ConfigurationError

__all__ = ["BackendFactory", "register_backend", "registered_schemes", "resolve_backend"]

BackendFactory = Callable[[str], Backend]

# scheme -> (module, function, extra to install if the import fails)
_BUILTIN: dict[str, tuple[str, str, str | None]] = {
    "scripted": ("promptask.backends.scripted", "from_uri", None),
    "llamacpp": ("promptask.backends.llamacpp", "from_uri", "llamacpp"),
    "hf": ("promptask.backends.transformers", "from_uri", "transformers"),
    "openai": ("promptask.backends.openai", "from_uri", None),
}
_factories: dict[str, BackendFactory] = {}
_instances: dict[str, BaseBackend] = {}
# Re-entrant: a factory may resolve another URI.  Held while building, so two
# threads asking for the same model never load it twice.
_lock = threading.RLock()


def register_backend(scheme: str, factory: BackendFactory) -> None:
    """Make ``scheme:rest`` URIs resolve through ``factory(rest)``.

    >>> from promptask.backends import ScriptedBackend
    >>> register_backend("echo", lambda rest: ScriptedBackend.always(rest))
    >>> resolve_backend("echo:hello").generate  # doctest: +ELLIPSIS
    <bound method ...>
    """
    if not scheme.isidentifier():
        raise ValueError(f"backend scheme must be an identifier, got {scheme!r}")
    with _lock:
        _factories[scheme] = factory
        for uri in [u for u in _instances if u.split(":", 1)[0] == scheme]:
            del _instances[uri]


def registered_schemes() -> list[str]:
    """The URI schemes that :func:`resolve_backend` understands."""
    return sorted(set(_BUILTIN) | set(_factories))


def _factory(scheme: str) -> BackendFactory:
    if scheme in _factories:
        return _factories[scheme]
    if scheme not in _BUILTIN:
        known = ", ".join(f"{s}:" for s in registered_schemes())
        raise ConfigurationError(f"unknown backend scheme {scheme + ':'!r}; known schemes: {known}")
    module_name, function, extra = _BUILTIN[scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"; install it with: pip install 'promptask[{extra}]'" if extra else ""
        raise ConfigurationError(
            f"the {scheme}: backend needs a package that is not installed ({exc.name}){hint}"
        ) from None
    factory: BackendFactory = getattr(module, function)
    return factory


def resolve_backend(spec: Backend | str) -> BaseBackend:
    """The backend ``spec`` is (seen through :class:`BaseBackend`), or the one its URI names (built once)."""
    if not isinstance(spec, str):
        if not isinstance(spec, Backend):
            raise ConfigurationError(f"{type(spec).__name__} is not a backend: it has no generate(request) method")
        return adapt(spec)
    uri = spec.strip()
    scheme, sep, rest = uri.partition(":")
    if not sep or not scheme:
        raise ConfigurationError(
            f"backend {uri!r} is not a URI; write scheme:rest, e.g. 'scripted:{{}}' "
            f"(known schemes: {', '.join(registered_schemes())})"
        )
    with _lock:
        backend = _instances.get(uri)
        if backend is None:
            backend = _instances[uri] = adapt(_factory(scheme)(rest))
        return backend
