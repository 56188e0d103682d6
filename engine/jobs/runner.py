"""Background job runner: engine jobs (predict, evaluate, retrain) one at a time on a worker thread.

No Qt here. A job is a function `fn(ctx: JobContext) -> result`; it reports progress and
partial results through `ctx` and polls `ctx.should_stop()` to honour cancellation. Every
state change is delivered as a `JobEvent` to the `on_event` callback *on the worker thread*;
the studio turns these into Qt signals (`fkp_studio/engine_thread.py`).

The worker loop is `JobRunner.serve()`: by default the runner starts its own daemon thread
for it; a host that owns a thread already (a `QThread.run`) passes `start_thread=False` and
calls `serve()` itself.

GPU memory: the thread that runs a job is the one that first touches CUDA (the studio's model
thread, never the Qt main thread), and after each job the runner hands the memory PyTorch
cached back to the driver (`release_gpu_cache`), so an idle studio holds no GPU memory beyond
its CUDA context and a failed job's memory is free for the next.
"""

from __future__ import annotations

import enum
import itertools
import queue
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.io.messages import describe_error


class JobCancelled(Exception):
    """Raised inside a job (by `JobContext.check_cancelled`) to stop it early."""


class JobError(Exception):
    """Raised by a job whose failure message is written for the user: shown as it is, without
    the exception's type and source line that other failures get."""


class JobState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class JobEvent:
    """One thing that happened to a job. `kind` is one of started, progress, partial, finished,
    failed, cancelled; `payload` is (done, total, message) for progress, the partial result,
    the final result, or the error message."""

    kind: str
    job_id: int
    name: str
    payload: Any = None


class JobContext:
    """What a running job sees: progress and partial-result reporting, and cancellation."""

    def __init__(self, handle: JobHandle, emit: Callable[[JobEvent], None]):
        self._handle = handle
        self._emit = emit

    def should_stop(self) -> bool:
        return self._handle._cancel.is_set()

    def check_cancelled(self) -> None:
        if self.should_stop():
            raise JobCancelled()

    def progress(self, done: float, total: float, message: str = "") -> None:
        self._emit(JobEvent("progress", self._handle.id, self._handle.name, (done, total, message)))

    def partial(self, result: Any) -> None:
        self._emit(JobEvent("partial", self._handle.id, self._handle.name, result))


@dataclass(eq=False)
class JobHandle:
    """A submitted job: its state, result or error, and a way to cancel or wait for it."""

    id: int
    name: str
    fn: Callable[[JobContext], Any]
    state: JobState = JobState.QUEUED
    result: Any = None
    error: str | None = None
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    def cancel(self) -> None:
        """Ask the job to stop; a queued job never starts, a running one stops at its next check."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ended (finished, failed or cancelled); False on timeout."""
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()


_STOP = object()


class JobRunner:
    """Runs submitted jobs one at a time, in order, on one long-lived worker thread."""

    def __init__(self, on_event: Callable[[JobEvent], None] | None = None, start_thread: bool = True,
                 name: str = "fkp-engine", release_gpu_memory: bool = True):
        self._on_event = on_event
        self._release_gpu_memory = release_gpu_memory
        self._queue: queue.Queue = queue.Queue()
        self._ids = itertools.count(1)
        self._current: JobHandle | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if start_thread:
            self._thread = threading.Thread(target=self.serve, name=name, daemon=True)
            self._thread.start()

    def submit(self, name: str, fn: Callable[[JobContext], Any]) -> JobHandle:
        handle = JobHandle(next(self._ids), name, fn)
        self._queue.put(handle)
        return handle

    @property
    def current(self) -> JobHandle | None:
        with self._lock:
            return self._current

    def cancel_all(self) -> None:
        """Cancel the running job and every queued one."""
        with self._lock:
            if self._current is not None:
                self._current.cancel()
        for handle in list(self._queue.queue):
            if isinstance(handle, JobHandle):
                handle.cancel()

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        """Cancel everything and stop the worker loop."""
        self.cancel_all()
        self._queue.put(_STOP)
        if wait and self._thread is not None:
            self._thread.join(timeout)

    def serve(self) -> None:
        """The worker loop: run jobs until `shutdown()`. Call it on the thread that should do the work."""
        while True:
            handle = self._queue.get()
            if handle is _STOP:
                return
            self._run(handle)

    def _run(self, handle: JobHandle) -> None:
        if handle._cancel.is_set():
            self._end(handle, JobState.CANCELLED, "cancelled", None)
            return
        with self._lock:
            self._current = handle
        handle.state = JobState.RUNNING
        self._emit(JobEvent("started", handle.id, handle.name))
        try:
            result = handle.fn(JobContext(handle, self._emit))
        except JobCancelled:
            end = (JobState.CANCELLED, "cancelled", None)
        except BaseException as e:  # noqa: BLE001 — a failing job must never kill the worker
            handle.error = _describe(e)
            end = (JobState.FAILED, "failed", handle.error)
        else:
            handle.result = result
            state, kind = (JobState.CANCELLED, "cancelled") if handle._cancel.is_set() else (JobState.FINISHED, "finished")
            end = (state, kind, result)
        finally:
            with self._lock:
                self._current = None
        # Here, past the except blocks, the failed job's traceback (and the tensors its frames
        # held) is gone: what the job cached on the GPU can go back before the next job starts.
        if self._release_gpu_memory:
            release_gpu_cache()
        self._end(handle, *end)

    def _end(self, handle: JobHandle, state: JobState, kind: str, payload: Any) -> None:
        handle.state = state
        try:
            self._emit(JobEvent(kind, handle.id, handle.name, payload))
        finally:
            handle._done.set()

    def _emit(self, event: JobEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:  # a broken listener must not take the engine down
            traceback.print_exc()


def release_gpu_cache() -> None:
    """`engine.model.device.release_gpu_cache` once torch is loaded: never imports torch for it (the
    studio starts without it)."""
    if "torch" in sys.modules:
        from engine.model.device import release_gpu_cache as release

        release()


def _describe(error: BaseException) -> str:
    """A one-line message for the user; the traceback's last frame names where it failed."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if isinstance(error, JobError):
        return message
    if isinstance(error, OSError):  # a file the user can act on: "path: reason", no type, no source line
        return describe_error(error)
    if isinstance(error, MemoryError) or "out of memory" in message.lower():
        return f"out of memory: {message}"
    tb = traceback.extract_tb(error.__traceback__)
    where = f" (at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
    return f"{type(error).__name__}: {message}{where}"
