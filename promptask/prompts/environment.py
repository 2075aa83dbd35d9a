"""The sandboxed Jinja environment every prompt template renders in.

Templates are untrusted text.  They render in Jinja's immutable sandbox with
``StrictUndefined`` (a misspelt variable is an error, not an empty string).
What one render (or one ``$eval`` expression) may use is bounded, and going
past any bound is a :class:`~promptask.TemplateError`:

- no string, list or output larger than :data:`MAX_RENDERED_CHARS`: the
  operations that could build one in a single step (``*``, ``**``, ``%``,
  ``~``, ``+``, ``str.format``, ``join``, ``replace``, ``translate``,
  ``wordwrap``, ``sum``, padding methods and filters, block and macro bodies)
  are checked before they run, every other call's result after it;
- no more than :data:`MAX_RENDER_WORK` characters or items built in all, so
  many steps that are each within the cap cannot add up to a memory bomb;
- no more than :data:`MAX_LOOP_ITERATIONS` loop iterations and
  :data:`MAX_CALL_DEPTH` nested macro calls;
- no longer than :data:`MAX_RENDER_SECONDS` of wall-clock time, checked at
  every loop iteration, call and operation.
"""

from __future__ import annotations

import contextvars
import functools
import json
import os
import posixpath
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import jinja2
from jinja2 import meta, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.loaders import split_template_path
from jinja2.runtime import LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment

from promptask.errors import TemplateError
from promptask.prompts.messages import MessageExtension

__all__ = [
    "BUILTIN_PROMPTS",
    "MAX_CALL_DEPTH",
    "MAX_LOOP_ITERATIONS",
    "MAX_RENDERED_CHARS",
    "MAX_RENDER_SECONDS",
    "MAX_RENDER_WORK",
    "environment",
    "evaluate",
    "render_text",
    "task_search_path",
]

T = TypeVar("T")

MAX_RENDERED_CHARS = 1_000_000
"""Upper bound on the length of one rendered prompt, and of any string or list a template builds."""

MAX_RENDER_WORK = 50 * MAX_RENDERED_CHARS
"""Upper bound on the characters and items one render builds in all (output, intermediate strings, lists)."""

MAX_LOOP_ITERATIONS = 1_000_000
"""Upper bound on the loop iterations of one render, nested loops counted in full."""

MAX_CALL_DEPTH = 64
"""Upper bound on nested macro (and recursive loop) calls."""

MAX_RENDER_SECONDS = 2.0
"""Upper bound on the wall-clock time of one render."""

BUILTIN_PROMPTS = Path(__file__).parent / "builtin"
"""The package's own templates: always last on the search path."""

_NUMBER = re.compile(r"\d+")
_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


def _too_big(size: int) -> SecurityError:
    return SecurityError(
        f"template would build a string or list of {size:,} items; the limit is {MAX_RENDERED_CHARS:,}"
    )


class _Budget:
    """What one render has used so far (see the module docstring)."""

    __slots__ = ("deadline", "depth", "iterations", "work")

    def __init__(self) -> None:
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS
        self.work = 0
        self.iterations = 0
        self.depth = 0

    def spend(self, size: int) -> None:
        self.work += size
        if self.work > MAX_RENDER_WORK:
            raise SecurityError(f"template built more than {MAX_RENDER_WORK:,} characters and items in all")
        self.clock()

    def clock(self) -> None:
        if time.monotonic() > self.deadline:
            raise SecurityError(f"template took longer than {MAX_RENDER_SECONDS:g} s to render")

    def iterate(self) -> None:
        self.iterations += 1
        if self.iterations > MAX_LOOP_ITERATIONS:
            raise SecurityError(f"template ran more than {MAX_LOOP_ITERATIONS:,} loop iterations")
        if not self.iterations & 0x3FF:
            self.clock()


# The budget of the render running in this thread (or task); None outside renders.
_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("promptask_render_budget", default=None)


def _check_size(size: int) -> None:
    if size > MAX_RENDERED_CHARS:
        raise _too_big(size)
    budget = _BUDGET.get()
    if budget is not None:
        budget.spend(size)


def _size_of(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)) else 0


def _check_result(value: T) -> T:
    """After an operation: its result counts against the caps too."""
    size = _size_of(value)
    if size:
        _check_size(size)
    else:
        budget = _BUDGET.get()
        if budget is not None:
            budget.clock()
    return value


def _joined_size(items: Iterable[Any], separator: int = 0) -> int:
    """The length ``separator.join(map(str, items))`` would have, counted only up to the cap."""
    size = 0
    for item in items:
        size += (len(item) if isinstance(item, str) else len(str(item))) + separator
        if size > MAX_RENDERED_CHARS:
            break
    return size


def _check_format_spec(fmt: str) -> None:
    # Widths and precisions live in the format string itself ("%9999999s",
    # "{:9999999}"); a number in it above the cap could allocate that much.
    for match in _NUMBER.finditer(fmt):
        if len(match.group()) > 7:
            _check_size(int(match.group()))


def _guard_filter(fn: Callable[..., Any], size_of: Callable[..., int] | None = None) -> Callable[..., Any]:
    """``fn`` with its result's size checked, and with ``size_of`` (the size it would build) checked first."""

    @functools.wraps(fn)  # keeps Jinja's pass_context / pass_environment marks
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if size_of is not None:
            _check_size(size_of(*args[_passed(fn) :], **kwargs))
        return _check_result(fn(*args, **kwargs))

    return guarded


def _passed(fn: Callable[..., Any]) -> int:
    """How many leading arguments Jinja passes a filter before the value (context, environment)."""
    return 1 if getattr(fn, "jinja_pass_arg", None) is not None else 0


def _join_size(value: Any, d: str = "", attribute: Any = None) -> int:
    items = list(value) if not isinstance(value, (list, tuple, str)) else value
    return _joined_size(items, len(str(d)))


def _replace_size(s: Any, old: Any, new: Any, count: Any = None) -> int:
    text, old, new = str(s), str(old), str(new)
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * len(new)


def _wordwrap_size(s: Any, width: Any = 79, break_long_words: Any = True, wrapstring: Any = None, **_: Any) -> int:
    text = str(s)
    lines = len(text) // max(int(width), 1) + len(text.split()) + 1  # more than wrap() can make
    return len(text) + lines * len(str(wrapstring if wrapstring is not None else "\n"))


def _sum_size(iterable: Any, attribute: Any = None, start: Any = 0) -> int:
    if isinstance(start, (int, float)):
        return 0  # numbers: nothing to build
    items = iterable if isinstance(iterable, (list, tuple)) else []
    return _size_of(start) + sum(_size_of(item) for item in items)


def _translate_size(text: str, table: Any) -> int:
    if isinstance(table, dict):
        longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
        return len(text) * max(longest, 1)
    return len(text)


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


_NEXT = "\x00after "  # in a template name: look only in the search-path folders after the given index


class _SearchPathLoader(jinja2.FileSystemLoader):
    """A FileSystemLoader that can skip folders, so a template can extend (or include) its own name.

    ``{% extends "sentiment.j2" %}`` in a ``prompts/sentiment.j2`` means the next
    ``sentiment.j2`` on the search path (the built-in one), not itself.
    """

    def locate(self, template: str) -> tuple[int, str]:
        name, _, after = template.partition(_NEXT)
        start = int(after) + 1 if after else 0
        pieces = split_template_path(name)  # refuses ".." and absolute names
        for index in range(start, len(self.searchpath)):
            filename = posixpath.join(self.searchpath[index], *pieces)
            if os.path.isfile(filename):
                return index, filename
        raise jinja2.TemplateNotFound(name)

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        _, filename = self.locate(template)
        with open(filename, encoding=self.encoding) as f:
            contents = f.read()
        mtime = os.path.getmtime(filename)

        def uptodate() -> bool:
            try:
                return os.path.getmtime(filename) == mtime
            except OSError:
                return False

        return contents, os.path.normpath(filename), uptodate


class _GuardedCodeGenerator(CodeGenerator):
    """Jinja's compiler, with ``~`` routed through the size check (it compiles to a plain join otherwise)."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:  # noqa: N802 (Jinja's visitor name)
        self.write("environment.guarded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


def _loop_guard(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _BUDGET.get()
    for item in iterable:
        if budget is not None:
            budget.iterate()
        yield item


class _PromptEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _GuardedCodeGenerator

    def concat(self, parts: Iterable[Any]) -> str:
        # Block, macro and call bodies: a loop can append one constant string a million times.
        parts = list(parts)
        _check_size(_joined_size(parts))
        return "".join(parts)

    @staticmethod
    def guarded_concat(parts: Sequence[Any]) -> str:
        _check_size(_joined_size(parts))
        return "".join(map(str, parts))

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        # Every loop iterates through _loop_guard, which counts iterations and watches the clock.
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, "_loop_guard", [], [], None, None, lineno=loop.lineno)
        return tree

    def join_path(self, template: str, parent: str) -> str:
        if template == parent.partition(_NEXT)[0] and isinstance(self.loader, _SearchPathLoader):
            try:
                index, _ = self.loader.locate(parent)
            except jinja2.TemplateNotFound:
                return template
            return f"{template}{_NEXT}{index}"
        return template

    def call_binop(self, context: jinja2.runtime.Context, op: str, left: Any, right: Any) -> Any:
        if op == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int):
                    _check_size(len(seq) * n)
        elif op == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
                _check_size(left.bit_length() * right // 8)
        elif op == "%" and isinstance(left, str):
            _check_format_spec(left)
        elif op == "+":
            _check_size(_size_of(left) + _size_of(right))
        return _check_result(self.binop_table[op](left, right))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt: str = value.__self__
        _check_format_spec(fmt)
        return wrapped

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, (str, bytes)):
            name = getattr(__obj, "__name__", "")
            if name in _PADDING_METHODS and args and isinstance(args[0], int):
                _check_size(args[0])
            elif name == "expandtabs":
                width = args[0] if args and isinstance(args[0], int) else 8
                tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
                _check_size(len(owner) + tabs * width)
            elif name == "replace" and len(args) >= 2:
                _check_size(_replace_size(owner, args[0], args[1], args[2] if len(args) > 2 else None))
            elif name == "join" and args:
                _check_size(_join_size(args[0], owner if isinstance(owner, str) else ""))
            elif name == "translate" and args and isinstance(owner, str):
                _check_size(_translate_size(owner, args[0]))
        if isinstance(__obj, (Macro, LoopContext)):
            return _check_result(__self._nested_call(__context, __obj, *args, **kwargs))
        return _check_result(super().call(__context, __obj, *args, **kwargs))

    def _nested_call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        budget = _BUDGET.get()
        if budget is None:
            return super().call(__context, __obj, *args, **kwargs)
        budget.depth += 1
        try:
            if budget.depth > MAX_CALL_DEPTH:
                raise SecurityError(f"macros call each other more than {MAX_CALL_DEPTH} levels deep")
            return super().call(__context, __obj, *args, **kwargs)
        finally:
            budget.depth -= 1


@functools.lru_cache(maxsize=64)
def environment(search_path: tuple[str, ...]) -> jinja2.Environment:
    """The (cached) sandboxed environment for a template search path."""
    loader = _SearchPathLoader([*search_path, str(BUILTIN_PROMPTS)])
    env = _PromptEnvironment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[MessageExtension],
        finalize=_check_result,  # every {{ value }} counts against the budget, in blocks and macros too
    )
    filters = env.filters
    filters["text"] = _text
    filters["spans"] = spans
    filters["span_schema"] = span_schema
    filters["words"] = _words
    # Filters that can build far more than they are given: their size is checked first.
    builds: dict[str, Callable[..., int]] = {
        "center": lambda s, width=80: int(width),
        "indent": lambda s, width=4, *a, **k: len(str(s)) + (str(s).count("\n") + 1) * _width(width),
        "format": lambda s, *a, **k: _format_size(str(s)),
        "join": _join_size,
        "replace": _replace_size,
        "wordwrap": _wordwrap_size,
        "sum": _sum_size,
    }
    for name, fn in list(filters.items()):
        filters[name] = _guard_filter(fn, builds.get(name))
    filters["_loop_guard"] = _loop_guard
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
    """Render ``template`` within the bounds of the module docstring; every failure becomes TemplateError."""

    def run() -> str:
        parts: list[str] = []
        size = 0
        for chunk in template.generate(variables):
            size += len(chunk)
            if size > MAX_RENDERED_CHARS:
                raise _too_big(size)
            parts.append(chunk)
        return "".join(parts)

    return _bounded(run, f"template {_name(template)}")


def evaluate(expression: Callable[..., Any], variables: Mapping[str, Any], what: str) -> Any:
    """Call a compiled expression (``env.compile_expression``) within the render bounds.

    The value must be JSON data no larger than :data:`MAX_RENDERED_CHARS` when written out.
    """
    value = _bounded(lambda: expression(**variables), what)
    size = _json_size(value)
    if size > MAX_RENDERED_CHARS:
        raise TemplateError(f"{what} gave a value of over {MAX_RENDERED_CHARS:,} characters as JSON; the limit")
    return value


def _bounded(run: Callable[[], T], what: str) -> T:
    token = _BUDGET.set(_Budget()) if _BUDGET.get() is None else None
    try:
        return run()
    except SecurityError as exc:
        raise TemplateError(f"{what} was stopped by the sandbox: {exc}") from None
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(
            f"{what}: template file {exc.name!r} not found on the search path (a template that extends or "
            "includes its own name gets the next file of that name on the path)"
        ) from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{what}: {_plain(str(exc))}") from None
    except RecursionError:
        raise TemplateError(f"{what} was stopped: it calls or includes itself too deeply") from None
    except MemoryError:
        raise TemplateError(f"{what} was stopped: it ran out of memory") from None
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
        raise TemplateError(f"{what} failed: {type(exc).__name__}: {_plain(str(exc))}") from None
    finally:
        if token is not None:
            _BUDGET.reset(token)


def _json_size(value: Any) -> int:
    """Roughly how long ``json.dumps(value)`` is, counted without building it and only up to the cap."""
    size = 0
    pending = [value]
    while pending and size <= MAX_RENDERED_CHARS:
        item = pending.pop()
        if isinstance(item, Mapping):
            size += 2 + 2 * len(item)
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            size += 2 + len(item)
            pending.extend(item)
        else:
            size += len(item) + 2 if isinstance(item, str) else 8
    return size


def _plain(text: str) -> str:
    """A message without our internal template-name marker."""
    return text.replace(_NEXT, " after folder ")


def _name(template: jinja2.Template) -> str:
    return repr(template.name.partition(_NEXT)[0]) if template.name else "<inline>"


def task_search_path(task_dirs: Sequence[str | Path]) -> list[str | Path]:
    """A task's template folders: its own, ``./prompts``, then the built-in prompts.

    The built-in tasks read the built-in prompts before ``./prompts``, so a
    ``prompts/sentiment.j2`` of the user's (which may extend the built-in one)
    never replaces the template of the built-in ``sentiment`` task.
    """
    builtin_tasks = BUILTIN_PROMPTS.parent.parent / "tasks" / "builtin"
    own = [Path(d) for d in task_dirs]
    first = [BUILTIN_PROMPTS] if any(d.resolve() == builtin_tasks.resolve() for d in own if d.is_dir()) else []
    return [*task_dirs, *first, Path.cwd() / "prompts"]


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
