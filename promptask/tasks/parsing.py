"""Finding the JSON value in a model's answer.

Model output is untrusted text.  Whatever it holds, parsing ends in a value
or a ``ValueError`` the model can read: an answer nested deeper than
:data:`MAX_DEPTH` levels is refused (Python's ``json`` would raise
``RecursionError`` near 1,000, and validators and the cache recurse too), and
lenient parsing tries at most :data:`MAX_CANDIDATES` places where a JSON value
could start, so its time stays linear in the answer's length.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["MAX_CANDIDATES", "MAX_DEPTH", "extract_json"]

MAX_DEPTH = 100
"""Most levels of nested arrays and objects an answer may have."""

MAX_CANDIDATES = 64
"""Most places in prose (opening brackets, but not the rest of a run) lenient parsing reads a JSON value from."""

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_DECODER = json.JSONDecoder()
_OPENERS = re.compile(r"[{\[]")


class _TooDeepError(ValueError):
    pass


def _too_deep() -> _TooDeepError:
    return _TooDeepError(f"the answer is nested more than {MAX_DEPTH} levels deep; reply with a flatter JSON value")


def _nesting(text: str, start: int = 0) -> int:
    """The deepest bracket nesting in ``text`` from ``start``, outside strings (a linear scan, no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text[start:]:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    return deepest
        elif ch in "]}":
            depth = max(depth - 1, 0)
    return deepest


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise _too_deep() from None


def extract_json(text: str, *, lenient: bool) -> Any:
    """Parse the JSON value in ``text``.

    Strict mode (for backends that constrain decoding) accepts exactly one JSON
    value.  Lenient mode also accepts one inside a code fence or surrounded by
    prose, as free-running models like to write it.  Raises ``ValueError``
    with a message meant for the model to read.

    >>> extract_json('Sure! ```json\\n{"a": 1}\\n``` Hope that helps.', lenient=True)
    {'a': 1}
    >>> extract_json("[" * 5000, lenient=False)
    Traceback (most recent call last):
    ...
    ValueError: the answer is nested more than 100 levels deep; reply with a flatter JSON value
    """
    stripped = text.strip()
    too_deep = _nesting(stripped) > MAX_DEPTH
    try:
        if too_deep:
            raise _too_deep()
        return _loads(stripped)
    except _TooDeepError as exc:
        if not lenient:
            raise ValueError(str(exc)) from None
        first_error: json.JSONDecodeError | _TooDeepError = _too_deep()
    except json.JSONDecodeError as exc:
        if not lenient:
            raise ValueError(f"the answer is not valid JSON ({exc.msg} at position {exc.pos})") from None
        first_error = exc
    for fenced in _FENCE.findall(stripped):
        try:
            if _nesting(fenced) <= MAX_DEPTH:
                return _loads(fenced.strip())
        except ValueError:
            pass
    tries = 0
    for match in _OPENERS.finditer(stripped):
        start = match.start()
        if start and stripped[start - 1] == stripped[start]:
            continue  # inside a run of "[[[" whose first bracket was tried: the same value, or none
        tries += 1
        if tries > MAX_CANDIDATES:
            break
        try:
            value, _ = _DECODER.raw_decode(stripped, match.start())
        except (json.JSONDecodeError, RecursionError):
            continue
        if too_deep and _depth(value) > MAX_DEPTH:
            continue
        return value
    if not stripped:
        raise ValueError("the answer is empty; reply with a JSON value")
    if isinstance(first_error, _TooDeepError):
        raise first_error
    raise ValueError(f"the answer contains no valid JSON value ({first_error.msg} at position {first_error.pos})")


def _depth(value: Any) -> int:
    """Nesting depth of a parsed value, without recursion."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, level)
            if deepest > MAX_DEPTH:
                return deepest
            pending.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest
