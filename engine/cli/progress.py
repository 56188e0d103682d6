"""A text progress bar for long command-line jobs (training): rate, loss, time left.

On a terminal it redraws one line; into a file (nohup, CI logs) it prints a line every
`log_every` seconds instead, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """`update(done, **figures)` after each step; `close()` ends the line."""

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None, log_every: float = 30.0, width: int = 24):
        self.total = max(1, int(total))
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_every = log_every
        self.width = width
        self.start = time.monotonic()
        self._last_print = 0.0
        self._line = ""

    def update(self, done: int, **figures: float) -> None:
        now = time.monotonic()
        frac = min(1.0, done / self.total)
        elapsed = now - self.start
        eta = elapsed / frac - elapsed if frac > 0 else float("nan")
        filled = int(round(frac * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        extra = "  ".join(f"{k} {v:.4g}" for k, v in figures.items())
        self._line = f"{self.label} [{bar}] {done}/{self.total}  {extra}  eta {_clock(eta)}"
        if self.tty:
            self.stream.write("\r" + self._line + "\x1b[K")
            self.stream.flush()
        elif now - self._last_print >= self.log_every or done >= self.total:
            self.stream.write(self._line + "\n")
            self.stream.flush()
            self._last_print = now

    def close(self) -> None:
        if self.tty and self._line:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):  # NaN / unknown
        return "--:--"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
