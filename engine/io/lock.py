"""An advisory lock per annotation file: one editing session at a time.

The lock is an open file holding `flock` (POSIX), so it is released by the operating system
when its owner exits or is killed: a lock is never stale. The file also says who holds it
(pid, host, user, start time) for the message the second session shows. Where `fcntl` is
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

    def __init__(self, path: Path, fd: int, owner: LockOwner, took_over: LockOwner | None):
        self.path, self._fd, self.owner = path, fd, owner
        self.took_over = took_over  # the owner before us, gone without releasing (crashed, killed)

    def release(self) -> None:
        if self._fd is None:
            return
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


def acquire_lock(path: str | os.PathLike) -> AnnotationLock:
    """Take the lock at `path` (created if needed); LockedError naming the holder if it is held;
    PermissionError naming the file if it is a link, not a regular file or another user's."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_owned(path, os.O_RDWR | os.O_CREAT)  # a planted link is refused, never truncated
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockedError(path, LockOwner.parse(_read(fd))) from None
        previous = LockOwner.parse(_read(fd))
        me = LockOwner.me()
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(asdict(me)).encode("utf-8"), 0)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    return AnnotationLock(path, fd, me, previous)


def _read(fd: int) -> str:
    return os.pread(fd, 4096, 0).decode("utf-8", "replace")
