"""Retraining the active model on the hard set (or every reviewed image) of a snapshot of the
annotations, on the state's model thread; the retrained version is accepted (it becomes active and
predicts again) or discarded. The retrain dialog only emits what the user asks for and draws what
this controller reports."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from engine.io.messages import shorten
from engine.jobs.model_jobs import retrain_job
from engine.jobs.runner import JobHandle
from engine.training.retrain_config import RetrainConfig
from fkp_studio.controllers.predict import PredictController
from fkp_studio.models.state import StudioState


class RetrainController(QObject):
    """Start, cancel, accept or discard a retrain of the state's active model version."""

    started = Signal()
    progressed = Signal(float, float, str)   # done, total, what (keypoint network, then detector)
    lossReported = Signal(float)              # one training step's loss
    retrainFinished = Signal(object)          # the retrain job's result dict
    retrainFailed = Signal(str)

    def __init__(self, state: StudioState, predict: PredictController):
        super().__init__(state)
        self.state = state
        self.predict = predict
        self.handle: JobHandle | None = None

    def start(self, config: RetrainConfig, source: str = "hard") -> JobHandle | None:
        """Retrain the active version on the hard set (or the reviewed images) of a snapshot of
        the annotations."""
        s, doc = self.state, self.state.doc
        version = doc.workspace.active_model_version() if doc is not None else None
        if version is None:
            s.show_error("No model", "This data set has no model to retrain: predict with a model first.")
            return None
        hard, left_out = s.split_trainable(source)
        if not hard:
            s.show_error("Nothing to train on", "Add images to the hard set first (H, or Add worst N by NE)."
                         if source == "hard" else "Review images first (Enter accepts and marks reviewed).")
            return None
        if left_out:
            s.show_message(f"{len(left_out)} {'hard' if source == 'hard' else 'reviewed'} image(s) left out of the "
                           f"retrain: no annotated point or no category ({shorten(', '.join(left_out), 200)})", 10000)
        # Editing goes on meanwhile: the job trains on a snapshot.
        snapshot = doc.ann.subset(s.trainable_rows())
        snapshot.add_keypoint_columns()
        job = retrain_job(doc.workspace, snapshot, hard, config, base_version=version)
        self.handle = s.model_thread.submit(f"retrain {version}", job, on_done=self.retrainFinished.emit,
                                            on_error=self.retrainFailed.emit, on_progress=self._progress,
                                            on_partial=lambda payload: self.lossReported.emit(payload["loss"]))
        self.started.emit()
        return self.handle

    def _progress(self, done: float, total: float, what: str) -> None:
        self.state.show_progress(done, total, what)
        self.progressed.emit(done, total, what)

    def cancel(self) -> None:
        """Stop a running retrain; the active model stays as it is."""
        if self.handle is not None and not self.handle.done:
            self.handle.cancel()

    def accept_version(self, version: str) -> None:
        """The retrained version becomes active; its predictions replace the old ones."""
        self.state.doc.workspace.set_active_model(version)
        self.state.show_message(f"Model {version} is active; predicting again", 8000)
        self.predict.predict_all()

    def discard_version(self, version: str) -> None:
        try:
            self.state.doc.workspace.remove_model_version(version)
        except (OSError, ValueError) as e:
            self.state.show_error("Cannot discard the model", str(e))
