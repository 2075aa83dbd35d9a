"""Random documents a JSON Schema admits, drawn through the real constraint engine with a byte tokenizer.

A walk picks each next byte among those llguidance allows (leaning towards
the bytes that close strings, arrays and objects, so that walks end); walks
that do not finish within a budget are dropped.  The documents are diverse
near-misses and hits of the schema, for checking what one schema admits
against another.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any, ClassVar

import llguidance
import numpy as np

from promptask.backends.constraints import SchemaConstraints

EOS = 256
_CLOSERS = [ord(c) for c in '"}],']


class _Bytes:
    eos_token_id = EOS
    bos_token_id = None
    tokens: ClassVar[list[bytes]] = [bytes([i]) for i in range(256)] + [b"<eos>"]
    special_token_ids: ClassVar[list[int]] = [EOS]

    def __call__(self, text: bytes) -> list[int]:
        return list(text)


TOKENIZER = llguidance.LLTokenizer(llguidance.TokenizerWrapper(_Bytes()))


def documents(schema: Any, count: int, *, seed: int = 0, budget: int = 1500) -> Iterator[Any]:
    """Up to ``count`` JSON values the engine admits for ``schema`` (fewer when walks do not end).

    ``schema`` is compiled as the local backends compile it (patterns the
    engine lacks left out, as they are while decoding).
    """
    constraints = SchemaConstraints(TOKENIZER, EOS + 1)
    rng = random.Random(seed)
    for _ in range(count * 3):
        walk = constraints.start(schema)
        out = bytearray()
        while not walk.finished() and len(out) < budget:
            allowed = np.flatnonzero(walk.allowed())
            closing = [int(t) for t in allowed if t in _CLOSERS or t == EOS]
            token = rng.choice(closing) if closing and rng.random() < 0.35 else int(rng.choice(allowed))
            if token == EOS:
                break
            walk.consume(token)
            out.append(token)
        try:
            yield json.loads(out.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue  # the walk ran out of budget
        count -= 1
        if count == 0:
            return
