"""Messages about files and rows that are safe to show: control characters escaped, OS errors
in one line that names the file."""

from __future__ import annotations

import re

# C0 controls but tab, newline and carriage return (the progress bar redraws with \r), DEL and C1
# controls: an image id holding ESC ] 0 ; ... BEL would otherwise retitle the user's terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with every control character written as a visible escape (\\x1b)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def describe_error(error: BaseException) -> str:
    """One line for the user: "path: No space left on device" rather than "[Errno 28] ...: None"."""
    if isinstance(error, OSError) and error.strerror:
        where = error.filename if error.filename is not None else ""
        if error.filename2 is not None:
            where = f"{where} -> {error.filename2}"
        return printable(f"{where}: {error.strerror}" if where else error.strerror)
    return printable(str(error) or type(error).__name__)


def shorten(text: str, limit: int = 120) -> str:
    """`text` cut to about `limit` characters, keeping both ends ("Images/blo…92.jpg"): an id of
    160,000 characters would otherwise take seconds to lay out in every label showing it."""
    if len(text) <= limit:
        return text
    keep = max(limit - 1, 2) // 2
    return f"{text[:keep]}…{text[-keep:]}"
