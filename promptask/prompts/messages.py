"""Turning one rendered template into chat messages.

By default a template's whole output is one user message.  A template that
wants several messages, or other roles, wraps each in a ``message`` block::

    {% message "system" %}You label support tickets.{% endmessage %}
    {% message "user" %}Ticket: {{ ticket }}{% endmessage %}

Only whitespace may stand between blocks.  Blocks are delimited by markers
that carry a random per-process nonce, so an input value that happens to look
like a block, or like a marker, is always plain text.
"""

from __future__ import annotations

import secrets
from typing import Any, cast, get_args

from jinja2 import nodes
from jinja2.exceptions import TemplateRuntimeError
from jinja2.ext import Extension
from jinja2.parser import Parser

from promptask.errors import TemplateError
from promptask.types import Message, Role

__all__ = ["MessageExtension", "split_messages"]

ROLES: tuple[str, ...] = get_args(Role)
_NONCE = secrets.token_hex(8)
_OPEN = f"\x00promptask-message-{_NONCE}:"
_CLOSE = f"\x00promptask-end-{_NONCE}\x00"


class MessageExtension(Extension):
    """The ``{% message "role" %}...{% endmessage %}`` block."""

    tags = {"message"}  # noqa: RUF012 (the type Jinja declares)

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        role = parser.parse_expression()
        body = parser.parse_statements(("name:endmessage",), drop_needle=True)
        call = self.call_method("_render_block", [role])
        return nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _render_block(self, role: Any, caller: Any) -> str:
        if role not in ROLES:
            raise TemplateRuntimeError(f"message role must be one of {', '.join(ROLES)}; got {role!r}")
        return f"{_OPEN}{role}\x00{caller()}{_CLOSE}"


def split_messages(text: str, *, template: str) -> list[Message]:
    """Split rendered text into messages (see the module docstring)."""
    if _OPEN not in text:
        body = text.strip()
        return [Message("user", body)] if body else []
    messages: list[Message] = []
    rest = text
    while rest:
        before, found, after = rest.partition(_OPEN)
        if before.strip():
            raise TemplateError(
                f"template {template}: text outside a message block: {before.strip()[:60]!r}; "
                "when a template uses {% message %} blocks, put all text inside them"
            )
        if not found:
            break
        header, _, after = after.partition("\x00")
        content, closed, rest = after.partition(_CLOSE)
        if not closed or _OPEN in content:
            raise TemplateError(f"template {template}: message blocks cannot be nested")
        messages.append(Message(cast(Role, header), content.strip()))
    return messages
