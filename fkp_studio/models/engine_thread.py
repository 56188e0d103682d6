"""Engine jobs off the main thread, with their events delivered as Qt signals.

A thin bridge over `engine.jobs.JobRunner`: the runner calls back on its worker thread;
`_Relay` re-emits each event as a signal, which Qt queues to the main thread. Callers pass
per-job callbacks (`on_done`, `on_error`, `on_progress`, `on_partial`) that then run on the main
thread: a job's partial results go to its own `on_partial`, never through a side table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal

from engine.jobs.runner import JobContext, JobEvent, JobHandle, JobRunner


@dataclass(frozen=True)
class _Job:
    """A queued or running job: its name and what it calls back on the main thread (each optional)."""

    name: str = ""
    on_done: Callable[[Any], None] | None = None
    on_error: Callable[[str], None] | None = None
    on_progress: Callable[[float, float, str], None] | None = None
    on_partial: Callable[[Any], None] | None = None
    on_cancelled: Callable[[], None] | None = None


class EngineThread(QObject):
    """Runs engine functions one at a time on a worker thread."""

    event = Signal(object)  # JobEvent, delivered on the main thread
    busyChanged = Signal(bool)

    def __init__(self, name: str = "engine", parent: QObject | None = None):
        super().__init__(parent)
        self.name = name
        self._jobs: dict[int, _Job] = {}    # queued or running, oldest first
        self.event.connect(self._dispatch)
        # The worker thread is named for what it runs ("fkp-model"): the model thread is the one
        # that imports torch and creates the CUDA context, never the Qt main thread. Only it
        # hands cached GPU memory back after its jobs: the io thread's jobs never use the GPU,
        # and releasing from there would empty the cache under a running prediction or retrain.
        self._runner = JobRunner(on_event=self.event.emit, name=f"fkp-{name}", release_gpu_memory=name == "model")

    def submit(self, name: str, fn: Callable[[JobContext], Any], on_done: Callable[[Any], None] | None = None,
               on_error: Callable[[str], None] | None = None,
               on_progress: Callable[[float, float, str], None] | None = None,
               on_partial: Callable[[Any], None] | None = None,
               on_cancelled: Callable[[], None] | None = None) -> JobHandle:
        """Queue `fn(ctx)`; the callbacks run on the main thread."""
        handle = self._runner.submit(name, fn)
        self._jobs[handle.id] = _Job(name, on_done, on_error, on_progress, on_partial, on_cancelled)
        if len(self._jobs) == 1:
            self.busyChanged.emit(True)
        return handle

    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    def job_names(self) -> list[str]:
        """The names of the jobs queued or running, oldest first."""
        return [job.name for job in self._jobs.values()]

    def _dispatch(self, ev: JobEvent) -> None:
        calls = self._jobs.get(ev.job_id, _Job())
        if ev.kind == "progress" and calls.on_progress is not None:
            calls.on_progress(*ev.payload)
        elif ev.kind == "partial" and calls.on_partial is not None:
            calls.on_partial(ev.payload)
        elif ev.kind in ("finished", "failed", "cancelled"):
            ended = self._jobs.pop(ev.job_id, None)
            if ev.kind == "finished" and calls.on_done is not None:
                calls.on_done(ev.payload)
            elif ev.kind == "failed" and calls.on_error is not None:
                calls.on_error(str(ev.payload))
            elif ev.kind == "cancelled" and calls.on_cancelled is not None:
                calls.on_cancelled()
            if ended is not None and not self._jobs:
                self.busyChanged.emit(False)

    def shutdown(self, timeout: float = 5.0) -> None:
        self._runner.shutdown(wait=True, timeout=timeout)
