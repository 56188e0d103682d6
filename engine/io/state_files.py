"""The studio's own files in the workspace (editing lock, edit journal, review log, hard set,
hold-out, active version): opened never through a symbolic link, and only when a regular file
this user owns.

A `.fkp/` folder may come from a shared data root, a tar or a git repository: a link planted
there must not make a session truncate, append to or read the file it points at.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # 0 on Windows, which has no such links to plant
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO must not block the open
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def open_owned(path: str | os.PathLike, flags: int, mode: int = 0o644) -> int:
    """A file descriptor of `path` opened with `flags`; PermissionError naming the file (nothing
    read, truncated or written) if it is a symbolic link, not a regular file, or another user's."""
    path = Path(path)
    try:
        fd = os.open(path, flags | _NOFOLLOW | _NONBLOCK | _CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise PermissionError(errno.EPERM, "is a symbolic link; refused", str(path)) from None
        raise
    why = _refusal(os.fstat(fd))
    if why:
        os.close(fd)
        raise PermissionError(errno.EPERM, why, str(path))
    return fd


def _refusal(info: os.stat_result) -> str | None:
    """Why an opened file is not one of ours, or None."""
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file; refused"
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        return "belongs to another user; refused"
    return None


def read_owned(path: str | os.PathLike) -> bytes:
    """The bytes of a state file opened as `open_owned` opens it (FileNotFoundError if missing)."""
    with os.fdopen(open_owned(path, os.O_RDONLY), "rb") as f:
        return f.read()


def open_log(path: str | os.PathLike) -> BinaryIO:
    """An append-only JSON-lines log (the journal, the review log) opened for appending: created
    if missing, refused as `open_owned` refuses, its torn last line cut."""
    fd = open_owned(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
    try:
        _cut_torn_tail(fd)
        return os.fdopen(fd, "ab")
    except BaseException:
        os.close(fd)
        raise


def _cut_torn_tail(fd: int) -> None:
    """Drop an incomplete last line (never acknowledged to the user), so the next record starts
    on a line of its own; read from the end, as a log may be large."""
    size = end = os.fstat(fd).st_size
    while end > 0:
        start = max(0, end - (1 << 16))
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    if end != size:
        os.ftruncate(fd, end)
        os.fsync(fd)
