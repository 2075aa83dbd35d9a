"""Backend resolution and process configuration."""

from __future__ import annotations

import pytest

import promptask
from promptask import ConfigurationError, ScriptedBackend
from promptask.backends import registry, resolve_backend


@promptask.task
def echo(text: str) -> str: ...


def reply(text: str) -> ScriptedBackend:
    return ScriptedBackend.always({"answer": text})


def test_precedence_call_then_task_then_configure_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTASK_BACKEND", 'scripted:{"answer": "env"}')
    assert echo(text="x", cache=False) == "env"
    promptask.configure(backend=reply("configured"))
    assert echo(text="x", cache=False) == "configured"
    pinned = echo.with_options(backend=reply("task"))
    assert pinned(text="x", cache=False) == "task"
    assert pinned(text="x", backend=reply("call"), cache=False) == "call"


def test_default_backend_is_llamacpp() -> None:
    assert promptask.config.DEFAULT_BACKEND == "llamacpp:"
    assert type(echo.resolve_backend(None)).__name__ == "LlamaCppBackend"


def test_without_the_default_backend_the_error_says_how_to_configure_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry._BUILTIN, "llamacpp", ("promptask_no_such_module", "from_uri", "llamacpp"))
    monkeypatch.setattr(registry, "_instances", {})
    with pytest.raises(ConfigurationError, match=r"pip install 'promptask\[llamacpp\]'.*PROMPTASK_BACKEND"):
        echo(text="x")


def test_uris_resolve_once_per_process() -> None:
    assert resolve_backend("scripted:hi") is resolve_backend("scripted:hi")
    backend = ScriptedBackend(["x"])
    assert resolve_backend(backend) is backend


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nonsense", "not a URI"),
        ("warp:drive", "unknown backend scheme 'warp:'; known schemes: hf:, llamacpp:, openai:, scripted:"),
        (42, "int is not a backend"),
    ],
)
def test_bad_backend_specs(spec: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        resolve_backend(spec)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        promptask.configure(backend=spec)  # type: ignore[arg-type]


def test_missing_optional_dependency_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry._BUILTIN, "heavy", ("promptask_no_such_module", "from_uri", "heavy"))
    with pytest.raises(ConfigurationError, match=r"pip install 'promptask\[heavy\]'"):
        resolve_backend("heavy:model")


def test_registered_schemes_resolve() -> None:
    promptask.register_backend("shout", lambda rest: ScriptedBackend.always({"answer": rest.upper()}))
    assert "shout" in promptask.backends.registered_schemes()
    assert echo(text="x", backend="shout:hey", cache=False) == "HEY"


def test_bad_cache_settings_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="not one of on, off, refresh"):
        promptask.configure(cache="sometimes")
    monkeypatch.setenv("PROMPTASK_CACHE", "maybe")
    with pytest.raises(ConfigurationError, match="PROMPTASK_CACHE"):
        echo(text="x", backend=reply("y"))
