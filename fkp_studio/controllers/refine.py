"""Refinement after a correction (issue 32): when the reviewer drags, places, swaps or accepts one
point, the model predicts the image's other untouched points again from the points set by hand,
on the model thread (`engine.jobs.model_jobs.refine_job`).

- A point with an annotation (placed, dragged or accepted by hand) is never moved: only the
  prediction of the points without one changes, and Enter accepts them.
- The refined prediction belongs to the correction's undo step (`SetKeypointsCommand.
  attach_refinement`): undo brings back the points and the prediction as they were before it.
- A refinement still running when the next action comes (another edit, an undo, another image,
  another document) is dropped, never applied late. Enter waits for the one running
  (`StudioState.refining_row`), then accepts the refined rest.
- Off (`set_enabled(False)`, View ▸ Refine after each correction) nothing is asked of the model.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal

from engine.jobs.model_jobs import RefinerHolder, refine_job
from engine.jobs.runner import JobHandle
from engine.schema import CATEGORY_MASK
from fkp_studio.controllers.predict import DEVICE_JOB
from fkp_studio.models.commands import SetKeypointsCommand
from fkp_studio.models.state import StudioState


REFINE_JOB = "refine after a correction"


@dataclass
class _Request:
    """The refinement asked after `command`, the undo stack at `index`."""

    command: SetKeypointsCommand
    index: int
    handle: JobHandle | None = None


class RefineController(QObject):
    """Asks for a refinement after each correction by hand and applies it while it is current."""

    refined = Signal(int, object)  # data row, the prediction's coordinates (24, 2) before the refinement

    def __init__(self, state: StudioState):
        super().__init__(state)
        self.state = state
        self.enabled = True
        self._holder = RefinerHolder()   # the loaded model, kept on the model thread between corrections
        self._request: _Request | None = None
        state.undo_stack.indexChanged.connect(self._stack_moved)
        state.currentRowChanged.connect(lambda _row: self._drop())
        state.documentChanged.connect(lambda _doc: self._drop())

    def set_enabled(self, on: bool) -> None:
        self.enabled = bool(on)
        if not on:
            self._drop()

    def _stack_moved(self, index: int) -> None:
        stack = self.state.undo_stack
        if self._request is not None and (self._request.index != index
                                          or stack.command(index - 1) is not self._request.command):
            self._drop()  # the next action came first
        command = stack.command(index - 1) if index > 0 else None
        # A redo brings its refinement back itself; a command is refined once.
        if (self.enabled and isinstance(command, SetKeypointsCommand) and command.refines
                and not command.refine_asked):
            command.refine_asked = True
            self._ask(command, index)

    def _ask(self, command: SetKeypointsCommand, index: int) -> None:
        s, doc, row = self.state, self.state.doc, command.row
        p = doc.predictions if doc is not None else None
        version = doc.workspace.active_model_version() if doc is not None else None
        if p is None or version is None or not p.present[row] or row != s.current_row:
            return
        if any(name not in (REFINE_JOB, DEVICE_JOB) for name in s.model_thread.job_names()):
            return  # a prediction or a retrain has the model: the reviewer does not wait behind it
        fixed = (doc.ann.visibility[row] >= 0) & CATEGORY_MASK[int(doc.categories[row])]
        if not (p.visibility[row][~fixed] >= 0).any():
            return  # every predicted point has its annotation: nothing left to refine
        request = _Request(command, index)
        job = refine_job(self._holder, doc.workspace, version, str(doc.ann.image_ids[row]), int(doc.categories[row]),
                         p.take([row]), fixed, doc.ann.coords[row].copy())
        self._request = request
        s.refining_row = row
        request.handle = s.model_thread.submit(
            REFINE_JOB, job, on_done=lambda result: self._landed(request, result),
            on_error=lambda message: self._ended(request, f"Refinement failed: {message}"),
            on_cancelled=lambda: self._ended(request))

    def _landed(self, request: _Request, result: dict) -> None:
        if request is not self._request:
            return  # dropped: the next action came first
        doc, row = self.state.doc, request.command.row
        before = doc.predictions.coords[row].copy()
        request.command.attach_refinement(result["prediction"])
        self._settle()
        self.refined.emit(row, before)

    def _ended(self, request: _Request, message: str | None = None) -> None:
        if request is self._request:
            self._settle()
            if message:
                self.state.show_message(message, 8000)

    def _drop(self) -> None:
        """The running refinement will not be applied (its result is ignored when it lands)."""
        request, self._request = self._request, None
        if request is not None:
            if request.handle is not None:
                request.handle.cancel()
            self.state.refining_row = None
            self.state.refinementSettled.emit(False)

    def _settle(self) -> None:
        self._request = None
        self.state.refining_row = None
        self.state.refinementSettled.emit(True)
