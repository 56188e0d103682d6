"""An advisory lock per annotation file: one editing session at a time.

The lock is an open file holding `flock` (POSIX), so it is released by the operating system
when its owner exits or is killed: a lock is never stale. The file also says who holds it
(pid, host, user, start time) for the message the second session shows. The lock file is named
after the annotation file's path, so the annotation file itself is `flock`ed too: its other names
(a hard link, a bind mount) meet there, on the file's identity (device and inode). A save that
puts a new file in place moves that lock to it (`follow`). Where `fcntl` is
missing (Windows) every session gets the lock: nothing is locked, nothing is refused.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.io.state_files import open_owned

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


@dataclass(frozen=True)
class LockOwner:
    pid: int
    host: str
    user: str
    started: float

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.started))
        return f"{self.user} (process {self.pid} on {self.host}, since {when})"

    @classmethod
    def me(cls) -> LockOwner:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown user"
        return cls(os.getpid(), socket.gethostname(), user, time.time())

    @classmethod
    def parse(cls, text: str) -> LockOwner | None:
        try:
            obj = json.loads(text)
            return cls(int(obj["pid"]), str(obj["host"]), str(obj["user"]), float(obj["started"]))
        except (ValueError, KeyError, TypeError):
            return None


class AnnotationLock:
    """The held lock of one annotation file; `release()` (or process exit) frees it."""

    def __init__(self, path: Path, fd: int, owner: LockOwner, took_over: LockOwner | None,
                 identity_fd: int | None = None):
        self.path, self._fd, self.owner = path, fd, owner
        self.took_over = took_over  # the owner before us, gone without releasing (crashed, killed)
        self._identity_fd = identity_fd  # the flocked annotation file itself (None: not lockable)

    def follow(self, annotations: str | os.PathLike) -> bool:
        """Lock the annotation file a save just put in place (a new inode) and let go of the one
        it replaced; False if it cannot be locked (another session took it in between)."""
        if self._fd is None:
            return False
        try:
            new = _lock_identity(Path(annotations))
        except LockedError:
            return False
        if new is None:
            return False
        _unlock(self._identity_fd)
        self._identity_fd = new
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        _unlock(self._identity_fd)
        self._identity_fd = None
        try:
            os.ftruncate(self._fd, 0)  # a released lock names nobody
        except OSError:
            pass
        if fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


class LockedError(Exception):
    """Another live session holds the lock."""

    def __init__(self, path: Path, holder: LockOwner | None):
        self.path, self.holder = path, holder
        who = holder.describe() if holder else "another session"
        super().__init__(f"{path}: open for editing by {who}")


def acquire_lock(path: str | os.PathLike, annotations: str | os.PathLike | None = None) -> AnnotationLock:
    """Take the lock at `path` (created if needed) and, when given, of the `annotations` file
    itself (whatever name it is reached by); LockedError naming the holder if either is held;
    PermissionError naming the file if `path` is a link, not a regular file or another user's."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_owned(path, os.O_RDWR | os.O_CREAT)  # a planted link is refused, never truncated
    identity_fd = None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockedError(path, LockOwner.parse(_read(fd))) from None
        if annotations is not None:  # before writing our name: a refused session names nobody
            identity_fd = _lock_identity(Path(annotations))
        previous = LockOwner.parse(_read(fd))
        me = LockOwner.me()
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(asdict(me)).encode("utf-8"), 0)
        os.fsync(fd)
    except BaseException:
        _unlock(identity_fd)
        os.close(fd)
        raise
    return AnnotationLock(path, fd, me, previous, identity_fd)


def _lock_identity(annotations: Path) -> int | None:
    """An open descriptor of the annotation file holding its `flock`; LockedError if another
    session holds it; None where it cannot be locked (no file yet, no `fcntl`, a file system
    without `flock`): the path's lock file still stands."""
    if fcntl is None:
        return None
    for _ in range(3):  # the file may be replaced (a save) between opening and locking it
        try:
            fd = os.open(annotations, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None  # new annotations: the first save's `follow` locks the file
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockedError(annotations, None) from None
        except OSError:
            os.close(fd)
            return None
        if _is_at(fd, annotations):
            return fd
        _unlock(fd)
    return None


def _is_at(fd: int, path: Path) -> bool:
    """Whether the open file `fd` is the one `path` names now (same device and inode)."""
    try:
        now, held = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def _unlock(fd: int | None) -> None:
    """Let go of an annotation file's `flock` (closing it releases it)."""
    if fd is not None:
        os.close(fd)


def _read(fd: int) -> str:
    return os.pread(fd, 4096, 0).decode("utf-8", "replace")
