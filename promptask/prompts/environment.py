"""The sandboxed Jinja environment every prompt template renders in.

Templates are untrusted text.  They render in Jinja's immutable sandbox with
``StrictUndefined`` (a misspelt variable is an error, not an empty string),
and output is capped at :data:`MAX_RENDERED_CHARS` characters.  The cap is
checked while rendering streams, and the operations that could build a huge
string in a single step (``*``, ``**``, ``%``, ``str.format``, padding
methods and filters) are checked before they run.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from promptask.errors import TemplateError
from promptask.prompts.messages import MessageExtension

__all__ = ["MAX_RENDERED_CHARS", "BUILTIN_PROMPTS", "environment", "render_text"]

MAX_RENDERED_CHARS = 1_000_000
"""Upper bound on the length of one rendered prompt, in characters."""

BUILTIN_PROMPTS = Path(__file__).parent / "builtin"
"""The package's own templates: always last on the search path."""

_NUMBER = re.compile(r"\d+")
_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


def _too_big(size: int) -> SecurityError:
    return SecurityError(
        f"template would build a string or list of {size:,} items; the limit is {MAX_RENDERED_CHARS:,}"
    )


def _check_size(size: int) -> None:
    if size > MAX_RENDERED_CHARS:
        raise _too_big(size)


def _check_format_spec(fmt: str) -> None:
    # Widths and precisions live in the format string itself ("%9999999s",
    # "{:9999999}"); a number in it above the cap could allocate that much.
    for match in _NUMBER.finditer(fmt):
        if len(match.group()) > 7:
            _check_size(int(match.group()))


def _guard_filter(fn: Callable[..., Any], size_of: Callable[..., int]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _check_size(size_of(*args, **kwargs))
        return fn(*args, **kwargs)

    return guarded


_WORD = re.compile(r"\w+(?:['\u2019.\-]\w+)*")  # apostrophes, dots and hyphens inside words
_POSSESSIVE = re.compile(r"\w['\u2019][sS]$")  # "Acme's": the name alone ("Acme") is a span too
_CONNECTORS = frozenset({"of", "and", "for", "the", "de", "du", "la", "le", "van", "von", "del", "da", "&"})
MAX_SPANS = 5000
"""Most candidate spans a span helper returns: bounds the schemas built from them."""


def _span_positions(text: str, max_words: int) -> list[tuple[int, int]]:
    """Runs of 1 to ``max_words`` words, a possessive's name without its ``'s``, and longer names.

    A run of capitalised words (joined by connectors such as "of") longer than
    ``max_words`` is a candidate too, so a long name ("Fairhaven Community Housing
    Trust of North Devon") can always be named whole.
    """
    source = str(text)
    words = [(m.start(), m.end(), m.end() - 2 if _POSSESSIVE.search(m.group()) else None)
             for m in _WORD.finditer(source)]  # fmt: skip
    positions: list[tuple[int, int]] = []
    for i in range(len(words)):
        for j in range(i, min(i + max_words, len(words))):
            positions.append((words[i][0], words[j][1]))
            possessive = words[j][2]
            if possessive is not None:
                positions.append((words[i][0], possessive))
    positions += _long_names(source, words, max_words)
    if len(positions) > MAX_SPANS:
        raise SecurityError(f"text has {len(positions):,} candidate spans; the limit is {MAX_SPANS:,}")
    return positions


def _long_names(text: str, words: list[tuple[int, int, int | None]], max_words: int) -> list[tuple[int, int]]:
    """Runs of capitalised words longer than ``max_words`` (connectors such as "of" inside, never at either end)."""
    found: list[tuple[int, int]] = []
    i = 0
    while i < len(words):
        if not text[words[i][0]].isupper():
            i += 1
            continue
        last = j = i
        while j + 1 < len(words) and text[words[j][1] : words[j + 1][0]] in (" ", " & "):
            following = text[words[j + 1][0] : words[j + 1][1]]
            if not (following[0].isupper() or following.lower() in _CONNECTORS):
                break
            j += 1
            if following[0].isupper():
                last = j
        capitals = [k for k in range(i, last + 1) if text[words[k][0]].isupper()]
        for start in capitals:  # "The Fairhaven ... Trust", "Fairhaven ... Trust", "Fairhaven ... Devon"
            for end in capitals:
                if end - start + 1 > max_words:
                    found.append((words[start][0], words[end][1]))
                    possessive = words[end][2]
                    if possessive is not None:
                        found.append((words[start][0], possessive))
        i = last + 1
    return found


def spans(text: str, max_words: int = 3) -> list[str]:
    """The ``spans`` filter: each distinct run of 1 to ``max_words`` words of ``text``, in order.

    >>> spans("Ada met Charles.", 2)
    ['Ada', 'Ada met', 'met', 'met Charles', 'Charles']
    >>> spans("Acme's chief", 1)
    ["Acme's", 'Acme', 'chief']
    """
    seen: dict[str, None] = {}
    for start, end in _span_positions(text, max_words):
        seen.setdefault(str(text)[start:end], None)
    return list(seen)


def span_schema(text: str, max_words: int = 3, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``span_schema`` filter: one object per span occurrence, its ``text``, ``start`` and ``end`` fixed.

    Decoding under this schema can only name real spans of ``text`` with their
    true character offsets; ``extra`` adds properties chosen freely
    (``{"type": {"enum": ["PER", "LOC"]}}``).
    """
    extra = dict(extra or {})
    options = []
    for start, end in _span_positions(text, max_words):
        properties = {"text": {"const": str(text)[start:end]}, **extra, "start": {"const": start},
                      "end": {"const": end}}  # fmt: skip
        options.append({"type": "object", "properties": properties, "required": list(properties),
                        "additionalProperties": False})  # fmt: skip
    return {"anyOf": options} if options else {"not": {}}


def _words(text: Any) -> int:
    """The ``words`` filter: how many words a text has (runs of non-space characters)."""
    return len(str(text).split())


def _text(value: Any) -> str:
    """The ``text`` filter: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json", by_alias=True)
    return json.dumps(value, ensure_ascii=False, default=str)


class _PromptEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: jinja2.runtime.Context, op: str, left: Any, right: Any) -> Any:
        if op == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                    _check_size(len(seq) * n)
        elif op == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
                _check_size(left.bit_length() * right // 8)
        elif op == "%" and isinstance(left, str):
            _check_format_spec(left)
        return self.binop_table[op](left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt: str = value.__self__
        _check_format_spec(fmt)
        return wrapped

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            name = getattr(__obj, "__name__", "")
            if name in _PADDING_METHODS and args and isinstance(args[0], int):
                _check_size(args[0])
            elif name == "expandtabs" and args and isinstance(args[0], int):
                _check_size(len(owner) + owner.count("\t") * args[0])
            elif name == "replace" and len(args) >= 2:
                _check_size(len(owner) + owner.count(str(args[0])) * len(str(args[1])))
        return super().call(__context, __obj, *args, **kwargs)


@functools.lru_cache(maxsize=64)
def environment(search_path: tuple[str, ...]) -> jinja2.Environment:
    """The (cached) sandboxed environment for a template search path."""
    loader = jinja2.FileSystemLoader([*search_path, str(BUILTIN_PROMPTS)])
    env = _PromptEnvironment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[MessageExtension],
    )
    filters = env.filters
    filters["center"] = _guard_filter(filters["center"], lambda s, width=80: int(width))
    filters["indent"] = _guard_filter(
        filters["indent"], lambda s, width=4, *a, **k: len(str(s)) + (str(s).count("\n") + 1) * _width(width)
    )
    filters["format"] = _guard_filter(filters["format"], lambda s, *a, **k: _format_size(str(s)))
    filters["text"] = _text
    filters["spans"] = spans
    filters["span_schema"] = span_schema
    filters["words"] = _words
    env.globals.pop("lipsum", None)  # lipsum(10**9) is a one-call memory bomb
    env.globals["range"] = _safe_range
    return env


def _width(width: Any) -> int:
    return len(width) if isinstance(width, str) else int(width)


def _format_size(fmt: str) -> int:
    _check_format_spec(fmt)
    return len(fmt)


def _safe_range(*args: int) -> range:
    rng = range(*args)
    _check_size(len(rng))
    return rng


def render_text(template: jinja2.Template, variables: dict[str, Any]) -> str:
    """Render ``template`` with a streaming length check; errors become TemplateError."""
    parts: list[str] = []
    size = 0
    try:
        for chunk in template.generate(variables):
            size += len(chunk)
            if size > MAX_RENDERED_CHARS:
                raise _too_big(size)
            parts.append(chunk)
    except SecurityError as exc:
        raise TemplateError(f"template {_name(template)} was stopped by the sandbox: {exc}") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template {_name(template)}: {exc}") from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"template {_name(template)}: {exc}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
        raise TemplateError(f"template {_name(template)} failed: {type(exc).__name__}: {exc}") from None
    return "".join(parts)


def _name(template: jinja2.Template) -> str:
    return repr(template.name) if template.name else "<inline>"


def referenced_templates(env: jinja2.Environment, source: str) -> Iterable[str]:
    """Names of templates that ``source`` extends, includes or imports (literal names only)."""
    return [name for name in meta.find_referenced_templates(env.parse(source)) if name]


def search_path_of(dirs: Sequence[str | Path]) -> tuple[str, ...]:
    """Normalise a list of directories into the hashable form :func:`environment` takes."""
    seen: dict[str, None] = {}
    for d in dirs:
        p = Path(d)
        if p.is_dir():
            seen.setdefault(str(p.resolve()), None)
    return tuple(seen)
