"""Atomic file writes: a crash or a full disk never leaves a half-written file behind."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None],
                 unchanged: FileVersion | None = None) -> None:
    """Call `write(f)` on a temporary file beside `path`, fsync it, then rename it over `path`.

    On any error the temporary file is removed and `path` is left as it was; an OSError names
    `path`, never the temporary file. With `unchanged` (what `read_versioned` returned when the
    file was read), `path` is replaced only if it still holds that version just before the
    rename: else FileChangedError, and a change made meanwhile by another program is kept.
    """
    path = Path(path)
    _refuse_write_protected(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _naming_target(e, path, None) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o644)
        if unchanged is not None:
            _refuse_changed(path, unchanged)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and not isinstance(e, FileChangedError):
            raise _naming_target(e, path, tmp) from None
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, unchanged: FileVersion | None = None) -> None:
    atomic_write(path, lambda f: f.write(data), unchanged)


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


class FileChangedError(OSError):
    """The file changed on disk between reading it and replacing it: nothing was written."""


@dataclass(frozen=True)
class FileVersion:
    """The content of a file as it was read (its size and SHA-256), or `ABSENT`."""

    size: int
    sha256: str


ABSENT = FileVersion(-1, "")


def read_versioned(path: str | os.PathLike, missing_ok: bool = False) -> tuple[bytes, FileVersion]:
    """The bytes of `path` and their version, for `atomic_write(..., unchanged=)`; with
    `missing_ok`, a missing file is (b"", ABSENT)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        if not missing_ok:
            raise
        return b"", ABSENT
    return data, FileVersion(len(data), hashlib.sha256(data).hexdigest())


def _refuse_changed(path: Path, expected: FileVersion) -> None:
    """FileChangedError unless `path` holds `expected` (the hash decides: the content, not a touch)."""
    try:
        now = read_versioned(path, missing_ok=True)[1]
    except OSError:
        now = None  # unreadable now: not the version read
    if now != expected:
        raise FileChangedError(errno.EAGAIN, "changed on disk after it was read (by another program?): "
                                             "nothing was written, run it again", str(path))


def _naming_target(error: OSError, path: Path, tmp: str | None) -> OSError:
    """`error` naming `path` where it named the temporary file (or no file): the user knows
    only the target."""
    if error.strerror is None or (error.filename is not None and error.filename != tmp):
        return error  # about another file (one `write` read, say): it names that one
    try:
        return type(error)(error.errno, error.strerror, str(path))
    except TypeError:
        return OSError(error.errno, error.strerror, str(path))
