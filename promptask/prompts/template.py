"""A compiled prompt template: source, where it came from, and how it renders.

>>> from promptask.prompts import PromptTemplate
>>> t = PromptTemplate.from_string("Classify: {{ text }}")
>>> t.render({"text": "great {{ not code }}"})
[Message(role='user', content='Classify: great {{ not code }}')]
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta

from promptask.errors import TaskDefinitionError
from promptask.prompts.environment import environment, referenced_templates, render_text, search_path_of
from promptask.prompts.messages import split_messages
from promptask.types import Message

__all__ = ["PromptTemplate"]


@dataclass(frozen=True)
class PromptTemplate:
    """A Jinja template compiled in the sandbox, with a digest of everything it reads."""

    source: str
    origin: str
    search_path: tuple[str, ...]
    digest: str
    variables: frozenset[str]
    _template: jinja2.Template = field(repr=False, compare=False)

    @classmethod
    def from_string(
        cls,
        source: str,
        *,
        search_path: Sequence[str | Path] = (),
        origin: str = "<inline>",
        line_offset: int = 0,
    ) -> PromptTemplate:
        """Compile inline template text.

        ``origin`` and ``line_offset`` place syntax errors in the file the text
        came from (a YAML task, say).
        """
        path = search_path_of(search_path)
        env = environment(path)
        try:
            template = env.from_string(source)
            ast = env.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TaskDefinitionError(
                f"template syntax error: {exc.message}",
                source=exc.filename or origin,
                line=(exc.lineno + line_offset) if exc.filename is None else exc.lineno,
            ) from None
        return cls(
            source=source,
            origin=origin,
            search_path=path,
            digest=_digest(env, source, None),
            variables=frozenset(meta.find_undeclared_variables(ast)),
            _template=template,
        )

    @classmethod
    def from_file(cls, name: str, *, search_path: Sequence[str | Path] = ()) -> PromptTemplate:
        """Load a template file found on ``search_path`` (then the built-in prompts)."""
        path = search_path_of(search_path)
        env = environment(path)
        try:
            source, filename, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
            # Compiled under its own name, so that `{% extends "<its name>" %}` reaches the next file of that name.
            template = env.get_template(name)
        except jinja2.TemplateNotFound:
            where = ", ".join(path) or "(no directories)"
            raise TaskDefinitionError(
                f"template file {name!r} not found; searched {where} and the built-in prompts"
            ) from None
        except jinja2.TemplateSyntaxError as exc:
            raise TaskDefinitionError(
                f"template syntax error: {exc.message}", source=exc.filename or filename, line=exc.lineno
            ) from None
        except (UnicodeDecodeError, OSError) as exc:
            raise TaskDefinitionError(f"template file {name!r} cannot be read: {exc}") from None
        return cls(
            source=source,
            origin=filename or name,
            search_path=path,
            digest=_digest(env, source, name),
            variables=frozenset(meta.find_undeclared_variables(env.parse(source))),
            _template=template,
        )

    def render(self, variables: Mapping[str, Any]) -> list[Message]:
        """Render into chat messages (see :mod:`promptask.prompts.messages`)."""
        return split_messages(self.render_text(variables), template=self.origin)

    def render_text(self, variables: Mapping[str, Any]) -> str:
        """Render into plain text."""
        return render_text(self._template, dict(variables))


def _digest(env: jinja2.Environment, source: str, name: str | None) -> str:
    """Hash the source and, recursively, every template it extends or includes (resolved as rendering does)."""
    h = hashlib.sha256(source.encode())
    seen: set[str] = set()
    pending = [(ref, name) for ref in referenced_templates(env, source)]
    while pending:
        ref, parent = pending.pop()
        resolved = env.join_path(ref, parent) if parent is not None else ref
        if resolved in seen:
            continue
        seen.add(resolved)
        try:
            text, _, _ = env.loader.get_source(env, resolved)  # type: ignore[union-attr]
            refs = referenced_templates(env, text)
        except (jinja2.TemplateNotFound, jinja2.TemplateSyntaxError, UnicodeDecodeError, OSError):
            # Reported with a proper message when it is rendered.
            continue
        h.update(b"\x00" + resolved.encode() + b"\x00" + text.encode())
        pending.extend((child, resolved) for child in refs)
    return h.hexdigest()
