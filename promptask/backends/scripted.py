"""A backend that answers from a script: for testing tasks without a model.

>>> from promptask.backends import GenerationRequest, Message, ScriptedBackend
>>> backend = ScriptedBackend(['{"label": "positive"}'])
>>> backend.generate(GenerationRequest(messages=(Message("user", "hi"),))).text
'{"label": "positive"}'
>>> backend.requests[0].messages[0].content
'hi'
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel

from promptask.backends.base import BaseBackend
from promptask.errors import BackendError
from promptask.schemas.examples import example_for
from promptask.types import Generation, GenerationRequest, SchemaEnforcement, Usage

__all__ = ["ExampleBackend", "ScriptedBackend"]

Reply = str | Generation | BaseModel | dict[str, Any] | list[Any]
ReplyFunction = Callable[[GenerationRequest], Reply]


def _approx_tokens(text: str) -> int:
    # A stable stand-in for a tokenizer: about four characters a token.
    return (len(text) + 3) // 4


def _to_text(reply: Reply) -> str:
    if isinstance(reply, str):
        return reply
    if isinstance(reply, BaseModel):
        return reply.model_dump_json()
    if isinstance(reply, Generation):
        return reply.text
    return json.dumps(reply, ensure_ascii=False)


class ScriptedBackend(BaseBackend):
    """Returns scripted replies in order, or whatever a function of the request returns.

    A reply may be a string (the raw model text), a pydantic model, dict or list
    (sent as JSON), or a complete :class:`Generation` (to script a truncation
    with ``finish_reason="length"``, say).  Every request received is recorded
    in :attr:`requests`.  Token usage is approximated as one token per four
    characters, so usage sums can be tested.

    Args:
        replies: the replies in order, or a function ``request -> reply``.
        repeat: when the list is used up, start again from its first reply
            instead of raising :class:`~promptask.BackendError`.

    Use :meth:`always` for a backend that gives the same reply every time.

    >>> from promptask.backends import GenerationRequest, Message
    >>> backend = ScriptedBackend(lambda request: {"n": len(request.messages)})
    >>> backend.generate(GenerationRequest(messages=(Message("user", "hi"),))).text
    '{"n": 1}'
    """

    name = "scripted"
    schema_enforcement = SchemaEnforcement.NONE

    def __init__(self, replies: Iterable[Reply] | ReplyFunction, *, repeat: bool = False) -> None:
        self._function: ReplyFunction | None = None
        self._replies: list[Reply] = []
        if callable(replies):
            self._function = replies
        else:
            self._replies = list(replies)
            if not self._replies:
                raise ValueError("ScriptedBackend needs at least one reply")
        self._repeat = repeat
        self._lock = threading.Lock()
        self._identity = f"scripted:{uuid.uuid4().hex}"
        self.requests: list[GenerationRequest] = []

    @classmethod
    def always(cls, reply: Reply) -> ScriptedBackend:
        """A backend that gives ``reply`` to every request.

        Its cache fingerprint depends only on the reply, so separate processes
        share cache entries (the ``scripted:`` URI builds one of these).
        """
        backend = cls([reply], repeat=True)
        digest = hashlib.sha256(_to_text(reply).encode()).hexdigest()
        backend._identity = f"scripted-always:{digest}"
        return backend

    def fingerprint(self) -> str:
        return self._identity

    def generate(self, request: GenerationRequest) -> Generation:
        with self._lock:
            index = len(self.requests)
            self.requests.append(request)
            if self._function is not None:
                reply = self._function(request)
            elif index < len(self._replies) or self._repeat:
                reply = self._replies[index % len(self._replies)]
            else:
                raise BackendError(
                    f"ScriptedBackend ran out of replies: request {index + 1} but "
                    f"{len(self._replies)} scripted (pass repeat=True to cycle)"
                )
        if isinstance(reply, Generation):
            return reply
        text = _to_text(reply)
        prompt = sum(_approx_tokens(m.content) for m in request.messages)
        return Generation(text=text, finish_reason="stop", usage=Usage(prompt, _approx_tokens(text)))

    def __repr__(self) -> str:
        source = "function" if self._function is not None else f"{len(self._replies)} replies"
        return f"ScriptedBackend({source}, requests={len(self.requests)})"


class ExampleBackend(ScriptedBackend):
    """Answers every request with a small valid example of its JSON Schema: tests of your own tasks need no script.

    >>> import promptask
    >>> promptask.tasks.classify("A late goal won the cup.", ["sport", "politics"], backend=ExampleBackend(),
    ...                          cache=False).labels
    ['sport']

    The example satisfies the schema the call sends (so per-call ``$eval``
    values such as classify's labels too); a task's own validators and checks
    may still reject it, as they would a model's answer.  Requests are
    recorded in :attr:`requests`, as for :class:`ScriptedBackend`.
    """

    name = "example"

    def __init__(self) -> None:
        super().__init__(self._example)

    @staticmethod
    def _example(request: GenerationRequest) -> Reply:
        if request.schema is None:
            return "example"
        try:
            value = example_for(request.schema)
        except ValueError as exc:
            raise BackendError(f"ExampleBackend cannot build a valid example for this schema: {exc}") from None
        return json.dumps(value)


def from_uri(rest: str) -> ScriptedBackend:
    """``scripted:TEXT`` answers every request with TEXT."""
    return ScriptedBackend.always(rest)
