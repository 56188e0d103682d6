"""Predicting with the data set's model: use a model package (checked on the model thread before
it becomes a version), predict all or the images on show, cancel, evaluate, and show a version's
saved predictions when the data set opens.

All model work is an `engine.jobs.model_jobs` job on the state's model thread; each batch the job
reports goes to its own `on_partial` callback and into the document (`fill_predictions`), which
emits, so the list, the canvas and the charts draw it at once. Images without a category take the
detector's class when the run ends (one undo step).

A prediction belongs to the category it was predicted with: when an image's category changes
(`C`, `1`-`5`, the category box, undo), its crosses of the old category are hidden at once and the
image is predicted again with the new one (a small job on the model thread; `Enter` waits for it,
`StudioState.waits_for_prediction`); a category it had before gets its earlier prediction back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from engine.io.predictions import Predictions
from engine.jobs.model_jobs import evaluate_job, model_source, predict_job, use_package_job
from engine.jobs.runner import JobError, JobHandle
from fkp_studio.controllers.questions import UserQuestions
from fkp_studio.models import commands
from fkp_studio.models.document import AnnotationDocument
from fkp_studio.models.state import StudioState


DEMO_MODEL_DIR = Path(__file__).resolve().parents[2] / "resources" / "models" / "demo"


def demo_model() -> Path | None:
    """The demo model package shipped with the studio, when it is installed (one file check)."""
    from engine.io.model_files import package_file

    file = package_file(DEMO_MODEL_DIR)
    return file if file.is_file() else None


def _describe_device() -> str:
    from engine.model.device import describe_device, pick_device

    return describe_device(pick_device())


DEVICE_JOB = "find the device"  # quick: a refinement after a correction may queue behind it
NO_MODEL = "This data set has no model yet: choose one with File › Predict with model…."


class PredictController(QObject):
    """Predict / evaluate with the active model version of the state's document."""

    predictionsDone = Signal(str)      # model version whose predictions are complete
    batchShown = Signal(object)        # data rows whose predictions and NE just arrived
    runningChanged = Signal(bool)      # a prediction run started (True) or ended
    deviceFound = Signal(str)          # where the model runs, in words

    def __init__(self, state: StudioState, questions: UserQuestions | None = None):
        super().__init__(state)
        self.state = state
        self.questions = questions  # None: no one to ask (a script): no demo model is offered
        self.version: str | None = None            # model version shown in the list
        self.handle: JobHandle | None = None       # the running (or last) prediction run
        self._detected: dict[int, int] = {}        # row -> the detector's class, this run
        self._aside: dict[tuple[int, int], Predictions] = {}  # (row, category) -> a hidden prediction of that category
        self._stale: set[int] = set()              # rows to predict again with their new category
        state.documentChanged.connect(self._follow)
        if state.doc is not None:  # built after a document was opened (a script, a test)
            self._follow(state.doc)
        state.datasetOpened.connect(self._show_active_version)
        state.session.modelRequested.connect(self.use_model_package)

    def find_device(self) -> None:
        """Say where the model runs. Importing torch and asking CUDA take seconds: on the model
        thread (which owns the CUDA context from then on), never on the Qt main thread."""
        self.state.model_thread.submit(DEVICE_JOB, lambda ctx: _describe_device(),
                                       on_done=self.deviceFound.emit,
                                       on_error=lambda msg: self.deviceFound.emit("unknown"))

    def _follow(self, doc: AnnotationDocument) -> None:
        """A document was opened: its predictions say the category each was made with
        (`Predictions.categories`: a file's category column, a run's category)."""
        self._aside.clear()
        self._stale.clear()
        doc.rowsChanged.connect(lambda rows: self._category_check(doc, rows))

    # --- a category change predicts the image again --------------------------------------

    def _category_check(self, doc: AnnotationDocument, rows: np.ndarray) -> None:
        """Rows whose category is no longer the one their prediction was made with: hide that
        prediction (kept aside), bring back one made with the new category, else predict again."""
        p = doc.predictions
        if self.state.doc is not doc or p is None:
            return
        rows = np.asarray(rows, np.int64)
        rows = rows[(doc.categories[rows] != p.categories[rows]) & ~doc.uncategorized[rows]]
        if not len(rows):
            return
        for r in rows.tolist():
            if p.present[r]:
                self._aside[(r, int(p.categories[r]))] = p.take([r])
        doc.clear_predictions(rows)
        for r in rows.tolist():
            earlier = self._aside.pop((r, int(doc.categories[r])), None)
            if earlier is not None:
                doc.fill_predictions(earlier)
            else:
                self._stale.add(r)
                self.state.predicting_rows.add(r)  # Enter waits from now on, not from the job's start
        if self._stale:
            # After the edit's own signals (and once for a step changing many images).
            QTimer.singleShot(0, lambda: self._predict_stale(doc))

    def _predict_stale(self, doc: AnnotationDocument) -> None:
        """Predict the images whose category changed, with their new category, on the model thread."""
        s = self.state
        rows = np.array(sorted(self._stale), np.int64)
        self._stale.clear()
        if s.doc is not doc or not len(rows):
            return
        version = doc.workspace.active_model_version()
        if version is None:
            s.predicting_rows.difference_update(rows.tolist())
            s.show_message("The category changed: its old predictions are hidden (no model to predict it again)")
            return
        job = predict_job(doc.workspace, version, doc.csv_path, doc.ann.subset(np.arange(len(doc))), rows=rows)

        def landed(part: Predictions) -> None:
            # Only where the category is still the one predicted with (the user may have changed it again).
            ok = np.flatnonzero((doc.categories[part.rows] == part.categories) & ~doc.uncategorized[part.rows])
            if s.doc is doc and doc.predictions is not None and len(ok):
                part = part.take(ok)
                doc.fill_predictions(part)
                self.batchShown.emit(part.rows)

        def ended(*_args) -> None:
            s.predicting_rows.difference_update(rows.tolist())
            if s.doc is doc and doc.predictions is not None:
                self._finish(doc)

        s.model_thread.submit(f"predict {len(rows)} image{'s' if len(rows) != 1 else ''} with the new category",
                              job, on_done=ended, on_partial=landed, on_cancelled=ended,
                              on_error=lambda msg: (ended(), s.show_error("Prediction failed", msg)))
        s.show_message("Predicting the image again with its new category…", 4000)

    # --- which predictions are shown ------------------------------------------------------

    def _show_active_version(self) -> None:
        """A data set was opened: show its active version's saved predictions, if any."""
        self.version = None
        version = self.state.doc.workspace.active_model_version()
        if version is not None:
            self.show_saved_predictions(version)

    def show_saved_predictions(self, version: str) -> bool:
        """Show the saved predictions of `version` (no re-run); False when there are none."""
        doc = self.state.doc
        path = doc.workspace.predictions_path(version, doc.csv_path)
        if not path.is_file():
            return False
        self.version = version
        self.state.session.load_predictions(path)
        return True

    def use_model_package(self, package: str | Path) -> JobHandle | None:
        """Make a model package the active version (imported once) and show its predictions:
        the saved ones when there are, else a fresh "predict all". The package is loaded first, on
        the model thread (`use_package_job`): a refused one is an error naming the file, and
        becomes no version."""
        s, doc = self.state, self.state.doc
        if doc is None:
            return None
        check = use_package_job(doc.workspace, package)

        def job(ctx) -> dict:
            from engine.model.checkpoints import CheckpointError

            try:
                return check(ctx)
            except CheckpointError as e:  # names the file already: shown as it is, one line
                raise JobError(str(e)) from None
            except ValueError as e:
                raise JobError(f"{package}: {e}") from None

        def done(result: dict) -> None:
            if s.doc is doc and not self.show_saved_predictions(result["version"]):
                self.predict_all()

        return s.model_thread.submit(f"use model {Path(package).name}", job, on_done=done,
                                     on_error=lambda msg: s.show_error("Cannot use the model", msg),
                                     on_progress=s.show_progress)

    def choose_model(self, path: str) -> None:
        """File › Predict with model (the window asks for the file)."""
        if path:
            self.use_model_package(path)

    # --- predict ----------------------------------------------------------------------

    def predict_all(self) -> JobHandle | None:
        """Predict every image with the active version; with none yet, offer the demo model (one
        question: yes uses it and predicts, no does nothing)."""
        doc = self.state.doc
        if doc is None:
            return None
        if doc.workspace.active_model_version() is None:
            return self._offer_demo_model()
        return self.predict_rows(np.arange(len(doc)))

    def _offer_demo_model(self) -> JobHandle | None:
        demo = demo_model()
        if demo is None or self.questions is None:
            self.state.show_error("No model", NO_MODEL)
            return None
        if not self.questions.yes_no(
                "No model", "This data set has no model yet.\n\nPredict every image with the demo model "
                "that comes with the studio? (File › Predict with model… uses another one.)"):
            return None
        return self.use_model_package(demo)

    def predict_selection(self) -> JobHandle | None:
        """Predict the images on show in the list (the filtered rows), or the current image."""
        s = self.state
        if s.doc is None or s.list_model is None:
            return None
        rows = np.asarray(s.list_model.order)
        if len(rows) == len(s.doc) and s.current_row is not None:
            rows = np.array([s.current_row])
        return self.predict_rows(rows)

    def predict_rows(self, rows: np.ndarray) -> JobHandle | None:
        """Predict these data rows with the active version; each batch is shown as it arrives."""
        s, doc = self.state, self.state.doc
        if doc is None or len(rows) == 0:
            return None
        version = doc.workspace.active_model_version()
        if version is None:
            s.show_error("No model", NO_MODEL)
            return None
        if self.handle is not None and not self.handle.done:
            self.handle.cancel()
        snapshot = doc.ann.subset(np.arange(len(doc)))
        if not self._showing(version):
            doc.start_predictions(model_source(version))
            self.version = version
        self._detected.clear()
        # Images without a category take the detector's class (applied when the run ends).
        job = predict_job(doc.workspace, version, doc.csv_path, snapshot, rows=np.asarray(rows, np.int64),
                          detector_chooses=doc.uncategorized.copy())

        def done(result: dict) -> None:
            self.runningChanged.emit(False)
            if s.doc is doc and doc.predictions is not None:
                self._finish(doc)
                msg = f"Predicted {result['predicted']} images with {version}"
                if result["errors"]:
                    msg += f"; {len(result['errors'])} unreadable (shown without prediction)"
                categorized = self._apply_detected_categories(doc)
                if categorized:
                    msg += f"; {categorized} without a category took the detector's (Ctrl+Z undoes)"
                s.show_message(msg, 8000)
                s.predictionsShown.emit()
                self.predictionsDone.emit(version)

        def failed(message: str) -> None:
            self.runningChanged.emit(False)
            s.show_error("Prediction failed", message)

        def cancelled() -> None:
            if self.handle is handle:  # a run replaced by a newer one ends quietly
                self.runningChanged.emit(False)
                if s.doc is doc and doc.predictions is not None:
                    self._finish(doc)
                    self._apply_detected_categories(doc)

        handle = s.model_thread.submit(f"predict {version}", job, on_done=done, on_error=failed,
                                       on_progress=s.show_progress,
                                       on_partial=lambda part: self._batch(doc, part), on_cancelled=cancelled)
        self.handle = handle
        self.runningChanged.emit(True)
        return handle

    def _showing(self, version: str) -> bool:
        """Whether the list shows this version's predictions (made here or loaded from the workspace)."""
        doc = self.state.doc
        p = doc.predictions
        if p is None or self.version != version:
            return False
        saved = doc.workspace.predictions_path(version, doc.csv_path).resolve()
        return p.source in (model_source(version), str(saved))

    def _batch(self, doc: AnnotationDocument, part: Predictions) -> None:
        """One batch of predictions arrived: into the document, which emits."""
        if self.state.doc is not doc or doc.predictions is None or part.source != model_source(self.version):
            return
        rows = part.rows
        doc.fill_predictions(part)
        self._category_check(doc, rows)  # a category changed while the run was predicting it
        read = np.array([str(doc.ann.image_ids[r]) not in part.errors for r in rows.tolist()], bool)
        self._detected.update(zip(rows[read].tolist(), part.categories[read].tolist()))
        self.batchShown.emit(rows)

    @staticmethod
    def _finish(doc: AnnotationDocument) -> None:
        """The run ended: the error types and suspects once, over every point."""
        doc.set_predictions(doc.predictions, (doc.ne, doc.errors))

    def _apply_detected_categories(self, doc: AnnotationDocument) -> int:
        """Give the images still without a category the detector's class from the last prediction
        run (one undo step); returns how many took one."""
        detected, self._detected = self._detected, {}
        if doc.read_only or not detected:
            return 0
        command = commands.categories_from_model(doc, np.fromiter(detected.keys(), np.int64, len(detected)),
                                                 np.fromiter(detected.values(), np.int64, len(detected)))
        if command is None:
            return 0
        self.state.undo_stack.push(command)
        return len(command.parts)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.runningChanged.emit(False)
            self.state.show_message("Prediction cancelled; the finished images are kept")

    # --- evaluate -----------------------------------------------------------------------

    def evaluate(self) -> JobHandle | None:
        """Score the active version's saved predictions (overall, per category, hard set) in the
        background; the figures go to the status bar."""
        s, doc = self.state, self.state.doc
        version = doc.workspace.active_model_version() if doc is not None else None
        if version is None:
            return None
        snapshot = doc.ann.subset(np.arange(len(doc)))

        def done(r: dict) -> None:
            cats = ", ".join(f"{c} {100 * v:.2f} %" for c, v in r["per_category"].items())
            hard = f"; hard set {100 * r['hard']:.2f} %" if np.isfinite(r["hard"]) else ""
            s.show_message(f"{version}: NE {100 * r['ne']:.2f} % on {r['images']} images ({cats}){hard}", 20000)

        return s.model_thread.submit(f"evaluate {version}",
                                     evaluate_job(doc.workspace, version, doc.csv_path, snapshot, s.hard_members()),
                                     on_done=done, on_error=lambda msg: s.show_error("Evaluation failed", msg))
