"""Atomic file writes: a crash or a full disk never leaves a half-written file behind."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(f)` on a temporary file beside `path`, fsync it, then rename it over `path`.

    On any error the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    _refuse_write_protected(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    atomic_write_bytes(path, text.encode(encoding))


def _refuse_write_protected(path: Path) -> None:
    # Replacing a file needs only its folder's permission: respect the file's own (no write bit
    # for anyone refuses even root, as editors do).
    if path.exists() and (not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222):
        raise PermissionError(errno.EACCES, "the file is write-protected", str(path))


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make a created, renamed or removed entry of `directory` durable (a no-op where folders
    cannot be opened, as on Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_writable(path: str | os.PathLike, expected_bytes: int = 0) -> None:
    """Raise OSError now, before long work, if `path` could not be written later: its folder is
    missing, the file or folder is write-protected, or the disk lacks `expected_bytes` (twice
    that, for the temporary copy an atomic write makes)."""
    path = Path(path)
    folder = path.resolve().parent
    if not folder.is_dir():
        raise FileNotFoundError(errno.ENOENT, "output folder not found", str(folder))
    _refuse_write_protected(path)
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
    except OSError as e:
        raise type(e)(e.errno, e.strerror, str(folder)) from None
    os.close(fd)
    os.unlink(probe)
    free = shutil.disk_usage(folder).free
    if free < 2 * expected_bytes:
        raise OSError(errno.ENOSPC, f"No space left on device (about {2 * expected_bytes >> 20} MB needed, "
                                    f"{free >> 20} MB free)", str(folder))
