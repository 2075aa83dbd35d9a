"""Finding the JSON value in a model's answer."""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["extract_json"]

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_DECODER = json.JSONDecoder()


def extract_json(text: str, *, lenient: bool) -> Any:
    """Parse the JSON value in ``text``.

    Strict mode (for backends that constrain decoding) accepts exactly one JSON
    value.  Lenient mode also accepts one inside a code fence or surrounded by
    prose, as free-running models like to write it.  Raises ``ValueError``
    with a message meant for the model to read.

    >>> extract_json('Sure! ```json\\n{"a": 1}\\n``` Hope that helps.', lenient=True)
    {'a': 1}
    """
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as exc:
        if not lenient:
            raise ValueError(f"the answer is not valid JSON ({exc.msg} at position {exc.pos})") from None
        first_error = exc
    for fenced in _FENCE.findall(stripped):
        try:
            return json.loads(fenced.strip())
        except json.JSONDecodeError:
            pass
    for match in re.finditer(r"[{\[]", stripped):
        try:
            value, _ = _DECODER.raw_decode(stripped, match.start())
        except json.JSONDecodeError:
            continue
        return value
    if not stripped:
        raise ValueError("the answer is empty; reply with a JSON value")
    raise ValueError(f"the answer contains no valid JSON value ({first_error.msg} at position {first_error.pos})")
