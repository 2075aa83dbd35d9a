"""Process-wide defaults: which backend and which cache a call uses when not told.

Precedence, highest first: the call's own argument (``backend=``, ``cache=``),
the task's own setting, :func:`configure`, environment variables
(``PROMPTASK_BACKEND``, ``PROMPTASK_CACHE``, ``PROMPTASK_CACHE_DIR``), built-in
defaults.  Environment variables are read when a call needs them, not at
import, and :func:`reset` restores the built-in state (handy in tests).

>>> import promptask
>>> promptask.configure(backend='scripted:{"answer": "positive"}', cache=False)
>>> promptask.config.reset()
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from promptask.backends.base import Backend, BaseBackend
from promptask.backends.registry import resolve_backend
from promptask.cache import CacheMode, ResultCache, default_cache_dir
from promptask.errors import ConfigurationError

__all__ = ["CacheSetting", "configure", "reset", "resolve_cache", "resolve_default_backend"]

CacheSetting = bool | str | CacheMode | ResultCache
"""``True``/``"on"``, ``False``/``"off"``, ``"refresh"``, or a :class:`ResultCache`."""


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET = _Unset()


@dataclass
class _Settings:
    backend: Backend | str | None = None
    cache: CacheSetting | None = None
    cache_dir: Path | None = None


_settings = _Settings()
_caches: dict[Path, ResultCache] = {}
_lock = threading.Lock()


def configure(
    *,
    backend: Backend | str | _Unset | None = _UNSET,
    cache: CacheSetting | _Unset | None = _UNSET,
    cache_dir: str | os.PathLike[str] | _Unset | None = _UNSET,
) -> None:
    """Set the process defaults.  Arguments left out keep their current value; ``None`` unsets.

    Args:
        backend: a backend object or URI (``"scripted:..."``, later ``"llamacpp:"``...).
        cache: ``True``/``"on"``, ``False``/``"off"``, ``"refresh"`` (recompute and
            store, never read), or a :class:`~promptask.cache.ResultCache`.
        cache_dir: where the default cache lives.

    >>> configure(cache="refresh", cache_dir="/tmp/my-cache")
    >>> reset()
    """
    if not isinstance(backend, _Unset):
        if backend is not None:
            resolve_backend(backend)  # fail now, not at the first call
        _settings.backend = backend
    if not isinstance(cache, _Unset):
        if cache is not None and not isinstance(cache, ResultCache):
            _cache_mode(cache, source="configure(cache=...)")
        _settings.cache = cache
    if not isinstance(cache_dir, _Unset):
        _settings.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None


def reset() -> None:
    """Forget everything :func:`configure` set and close the caches opened so far."""
    global _settings
    _settings = _Settings()
    with _lock:
        for cache in _caches.values():
            cache.close()
        _caches.clear()


DEFAULT_BACKEND = "llamacpp:"
"""llama.cpp on the CPU with the bundled SmolLM2 model: runs anywhere, offline."""


def resolve_default_backend() -> BaseBackend:
    """The configured backend, else ``$PROMPTASK_BACKEND``, else :data:`DEFAULT_BACKEND`."""
    spec = _settings.backend or os.environ.get("PROMPTASK_BACKEND")
    if spec:
        return resolve_backend(spec)
    try:
        return resolve_backend(DEFAULT_BACKEND)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"no backend is configured and the default one is unavailable ({exc}); pass backend=... "
            "(--backend on the command line), call promptask.configure(backend=...), or set PROMPTASK_BACKEND"
        ) from None


def _cache_mode(setting: CacheSetting, *, source: str) -> CacheMode:
    if isinstance(setting, CacheMode):
        return setting
    if isinstance(setting, bool):
        return CacheMode.ON if setting else CacheMode.OFF
    if isinstance(setting, str):
        word = setting.strip().lower()
        aliases = {"1": "on", "true": "on", "yes": "on", "0": "off", "false": "off", "no": "off"}
        try:
            return CacheMode(aliases.get(word, word))
        except ValueError:
            pass
    raise ConfigurationError(f"{source}: cache setting {setting!r} is not one of on, off, refresh (or true/false)")


def resolve_cache(override: CacheSetting | None = None) -> tuple[ResultCache | None, CacheMode]:
    """The cache and mode a call uses, after the precedence rules above."""
    setting: CacheSetting | None = override
    source = "cache argument"
    if setting is None:
        setting, source = _settings.cache, "configure(cache=...)"
    if setting is None:
        setting, source = os.environ.get("PROMPTASK_CACHE", "on"), "PROMPTASK_CACHE"
    if isinstance(setting, ResultCache):
        return setting, CacheMode.ON
    mode = _cache_mode(setting, source=source)
    if mode is CacheMode.OFF:
        return None, mode
    directory = (_settings.cache_dir or default_cache_dir()).resolve()
    with _lock:
        cache = _caches.get(directory)
        if cache is None:
            cache = _caches[directory] = ResultCache(directory)
    return cache, mode
