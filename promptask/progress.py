"""Progress for long runs: a redrawn line on a terminal, periodic plain lines elsewhere."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Counts finished rows and reports rows/s, ETA and failures to ``stream``.

    >>> meter = Progress(2, label="demo", enabled=False)
    >>> meter.advance(ok=True); meter.advance(ok=False); meter.close()
    >>> meter.done, meter.failed
    (2, 1)
    """

    def __init__(
        self,
        total: int | None,
        *,
        label: str = "",
        enabled: bool = True,
        stream: TextIO | None = None,
        interval_s: float | None = None,
    ) -> None:
        self.total = total
        self.label = label
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = interval_s if interval_s is not None else (0.1 if self.tty else 10.0)
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self._last = 0.0
        self._lock = threading.Lock()

    def advance(self, *, ok: bool) -> None:
        with self._lock:
            self.done += 1
            self.failed += 0 if ok else 1
            now = time.monotonic()
            if self.enabled and now - self._last >= self.interval_s:
                self._last = now
                self._write(now)

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        rate = self.done / elapsed
        total = f"/{self.total}" if self.total is not None else ""
        parts = [f"{self.label}: {self.done}{total} rows", f"{rate:.2f} rows/s"]
        if self.total is not None and rate > 0 and self.done < self.total:
            parts.append(f"ETA {_duration((self.total - self.done) / rate)}")
        parts.append(f"{self.failed} failed")
        return ", ".join(parts)

    def bar(self, width: int = 24) -> str:
        if not self.total:
            return ""
        filled = int(width * min(self.done, self.total) / self.total)
        return "[" + "#" * filled + "." * (width - filled) + "] "

    def _write(self, now: float) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K" + self.bar() + self.line(now))
        else:
            self.stream.write(self.line(now) + "\n")
        self.stream.flush()

    def close(self) -> None:
        with self._lock:
            if self.enabled and self.done:
                self._write(time.monotonic())
                if self.tty:
                    self.stream.write("\n")
                    self.stream.flush()
                self.enabled = False


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
