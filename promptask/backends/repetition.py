"""Watching a JSON answer as it is decoded: which field is being written, and whether a string loops.

A small greedy model sometimes falls into a loop inside a free string
(``"1234567890123456789012345678901234567890…"``, or one sentence again and
again) and would write it until the token limit.  :class:`JsonWatch` follows
the answer's JSON structure as text arrives, so it knows the path of the
string value being written, and reports a loop as soon as the end of that
value repeats itself: a period of ``p`` characters repeated enough times to
rule out ordinary text (six times for one to three characters, four up to
twelve, three up to forty, twice for longer periods), and never fewer than
:data:`MIN_LOOP_CHARS` characters.  Loops in the structure itself (the same
key written again and again, objects nested the same way level after level)
are reported too: the text ending outside a string repeats a period over
:data:`MIN_STRUCTURE_LOOP_CHARS` characters or more, four times where it
repeats keys inside one object, eight where it nests one level deeper each
time (a recursive answer may legitimately nest a few identical levels); the
same item many times in an array is not a loop.  Keys are watched like
string values: a key that loops is reported as ``a key of field ...``.

>>> watch = JsonWatch()
>>> watch.feed('{"order": {"client_token": "1234567890123456789012345678901234567890')
'repetition loop in field order.client_token'
>>> JsonWatch().feed('{"summary": "The battery lasts two days and the screen is bright."}') is None
True
>>> JsonWatch().feed('{"ref": {"type": "string", ' + '"min_length": 1, ' * 8)
'repetition loop in field ref'
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MIN_LOOP_CHARS", "MIN_STRUCTURE_LOOP_CHARS", "JsonWatch", "loop_period"]

MIN_LOOP_CHARS = 24
MAX_PERIOD = 160
MIN_STRUCTURE_LOOP_CHARS = 96
STRUCTURE_REPEATS = 4
NESTING_REPEATS = 8


def _repeats_needed(period: int) -> int:
    if period <= 3:
        return 6
    if period <= 12:
        return 4
    if period <= 40:
        return 3
    return 2


def loop_period(text: str, *, min_chars: int = MIN_LOOP_CHARS, min_repeats: int = 2) -> int | None:
    """The period of a loop at the end of ``text``, or ``None`` (see the module docstring).

    >>> loop_period("Meet at noon. " * 3), loop_period("ababab"), loop_period("no loop here at all, none")
    (14, None, None)
    """
    n = len(text)
    for period in range(1, min(MAX_PERIOD, n // 2) + 1):
        span = max(min_chars, max(min_repeats, _repeats_needed(period)) * period)
        if span <= n and text[n - span : n - period] == text[n - span + period :]:
            return period
    return None


@dataclass
class _Frame:
    kind: str  # "object" or "array"
    key: str | None = None
    index: int = 0
    expect_key: bool = False


@dataclass
class JsonWatch:
    """Follows JSON text fed in pieces; :meth:`feed` returns a problem the moment a string value loops."""

    stack: list[_Frame] = field(default_factory=list)
    in_string: bool = False
    is_key: bool = False
    escaped: bool = False
    string: list[str] = field(default_factory=list)
    checked: int = 0
    tail: str = ""
    awaiting_value: bool = False  # after ``:``, ``[`` or an array's ``,``: a value comes next, none has begun

    def keys(self) -> tuple[str | int, ...] | None:
        """The keys and indexes leading to the value being written or awaited; ``None`` inside a key."""
        keys: list[str | int] = []
        for frame in self.stack:
            if frame.kind == "array":
                keys.append(frame.index)
            elif frame.key is None:
                return None
            else:
                keys.append(frame.key)
        return tuple(keys)

    @property
    def in_value_string(self) -> bool:
        """Whether the text so far ends inside a string value (not a key)."""
        return self.in_string and not self.is_key

    def path(self) -> str:
        parts: list[str] = []
        for frame in self.stack:
            if frame.kind == "object":
                parts.append(f".{frame.key}" if frame.key is not None else "")
            else:
                parts.append(f"[{frame.index}]")
        return "".join(parts).lstrip(".") or "(the answer)"

    def feed(self, text: str) -> str | None:
        for char in text:
            if self.in_string:
                self._string_char(char)
            else:
                self._structure_char(char)
        self.tail = (self.tail + text)[-4 * MAX_PERIOD :]
        if not self.in_string and len(self.tail) >= MIN_STRUCTURE_LOOP_CHARS:
            period = loop_period(self.tail, min_chars=MIN_STRUCTURE_LOOP_CHARS, min_repeats=STRUCTURE_REPEATS)
            kind = self._degenerate(self.tail[-period:]) if period is not None else None
            if kind == "keys" or (kind == "nesting" and loop_period(self.tail, min_chars=MIN_STRUCTURE_LOOP_CHARS,
                                                                    min_repeats=NESTING_REPEATS)):  # fmt: skip
                return f"repetition loop in field {self.path()}"
        if self.in_string and len(self.string) - self.checked >= 1:
            self.checked = len(self.string)
            if len(self.string) >= MIN_LOOP_CHARS and loop_period("".join(self.string[-2 * MAX_PERIOD :])):
                where = "a key of field" if self.is_key else "field"
                return f"repetition loop in {where} {self.path()}"
        return None

    def _degenerate(self, period: str) -> str | None:
        """``"nesting"`` for a structural period that nests deeper each time, ``"keys"`` for one that repeats keys
        inside one object, else ``None``: identical items of an array are left alone, since a list may well hold
        the same value many times."""
        depth = lowest = 0
        for char in period:  # strings inside the period are rare in such loops; brackets in them are counted too
            depth += (char in "{[") - (char in "}]")
            lowest = min(lowest, depth)
        if depth > 0:
            return "nesting"
        level = len(self.stack) - 1 + lowest  # the container whose contents repeat
        return "keys" if level >= 0 and self.stack[level].kind == "object" else None

    def _string_char(self, char: str) -> None:
        if self.escaped:
            self.escaped = False
        elif char == "\\":
            self.escaped = True
        elif char == '"':
            self.in_string = False
            top = self.stack[-1] if self.stack else None
            if self.is_key and top is not None:
                top.key = "".join(self.string)
                top.expect_key = False
            return
        self.string.append(char)

    def _structure_char(self, char: str) -> None:
        top = self.stack[-1] if self.stack else None
        if not char.isspace():
            in_array = top is not None and top.kind == "array"
            self.awaiting_value = char in ":[" or (char == "," and in_array)
        if char == '"':
            self.in_string = True
            self.is_key = top is not None and top.kind == "object" and top.expect_key
            self.string = []
            self.checked = 0
        elif char == "{":
            self.stack.append(_Frame("object", expect_key=True))
        elif char == "[":
            self.stack.append(_Frame("array"))
        elif char in "}]" and self.stack:
            self.stack.pop()
        elif char == "," and top is not None:
            if top.kind == "object":
                top.expect_key = True
                top.key = None
            else:
                top.index += 1
