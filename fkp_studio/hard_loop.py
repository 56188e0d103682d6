"""The hard-example loop in the studio: predict and rank, the hard set, retrain on it.

`HardLoop` attaches to the main window: a "Model" menu (predict all / selection, cancel,
retrain), a "Hard set" dock (listed, filterable by reason, persisted in the workspace) and
the device in the status bar. All model work runs as `engine.jobs.model_jobs` jobs on the
window's model thread; their per-batch partial results fill the NE column as they arrive.
Predictions are saved per model version in the workspace and reloaded when the data set is
opened again. An image the user edits joins the hard set as "corrected" unless the user
removed it from the set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QHBoxLayout, QLabel, QPushButton, QSpinBox,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from engine.training.hard_set import HardSet
from fkp_studio import commands
from fkp_studio.actions import make_actions
from engine.jobs.runner import JobError, JobEvent, JobHandle
from engine.jobs.model_jobs import PredictedBatch, evaluate_job, predict_job, retrain_job, use_package_job
from engine.training.retrain_config import RetrainConfig
from engine.io.messages import shorten
from engine.io.review import REVIEW_STATES, REVIEWED
from engine.io.workspace import HARD_REASONS, REMOVED
from fkp_studio.document import Predictions, compute_errors

def _describe_device() -> str:
    from engine.model.device import describe_device, pick_device

    return describe_device(pick_device())


REASON_LABELS = {"worst-ne": "worst NE", "corrected": "corrected", "manual": "added"}


class HardLoop(QObject):
    """Predict / rank / hard set / retrain for the window's open data set."""

    predictionsDone = Signal(str)      # model version whose predictions are complete
    batchShown = Signal(object)        # data rows whose predictions and NE just arrived
    hardSetChanged = Signal()
    retrainFinished = Signal(object)   # the retrain job's result dict
    retrainFailed = Signal(str)

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.doc = None
        self.hard_set = HardSet()
        self.version: str | None = None            # model version shown in the list
        self.predict_handle: JobHandle | None = None
        self.retrain_handle: JobHandle | None = None
        self._partial_sinks: dict[int, Any] = {}   # job id -> callable(payload)
        self._detected_categories: dict[int, int] = {}  # row -> the detector's class, this run
        self.dialog = None
        window.model_thread.event.connect(self._on_event)
        window.datasetOpened.connect(self._attach)
        self._build_dock()
        self._build_actions()
        self._build_status()

    # --- widgets ----------------------------------------------------------------------

    def _build_dock(self) -> None:
        w = self.window
        panel = QWidget(w)
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(4, 4, 4, 4)
        row = QHBoxLayout()
        self.reason_box = QComboBox(panel)
        self.reason_box.addItem("All reasons", None)
        for reason in HARD_REASONS:
            self.reason_box.addItem(REASON_LABELS[reason], reason)
        self.reason_box.currentIndexChanged.connect(lambda _i: self.refresh_table())
        self.add_button = QPushButton("Add current (H)", panel)
        self.add_button.clicked.connect(self.add_current)
        self.remove_button = QPushButton("Remove", panel)
        self.remove_button.clicked.connect(self.remove_selected)
        row.addWidget(self.reason_box, 1)
        row.addWidget(self.add_button)
        row.addWidget(self.remove_button)
        layout.addLayout(row)
        row2 = QHBoxLayout()
        self.worst_n = QSpinBox(panel)
        self.worst_n.setRange(1, 100000)
        self.worst_n.setValue(20)
        self.per_category = QCheckBox("per category", panel)
        self.worst_button = QPushButton("Add worst N by NE", panel)
        self.worst_button.clicked.connect(lambda: self.add_worst(self.worst_n.value(), self.per_category.isChecked()))
        row2.addWidget(QLabel("N", panel))
        row2.addWidget(self.worst_n)
        row2.addWidget(self.per_category)
        row2.addWidget(self.worst_button, 1)
        layout.addLayout(row2)
        self.table = QTableWidget(0, 3, panel)
        self.table.setHorizontalHeaderLabels(["Image", "Reason", "NE %"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setSortingEnabled(True)
        self.table.cellDoubleClicked.connect(self._go_to)
        layout.addWidget(self.table, 1)
        self.summary = QLabel("", panel)
        layout.addWidget(self.summary)
        self.retrain_button = QPushButton("Retrain on hard samples…", panel)
        self.retrain_button.clicked.connect(self.open_retrain_dialog)
        layout.addWidget(self.retrain_button)
        self.dock = w.add_dock("Hard set", panel, Qt.RightDockWidgetArea)

    def _build_actions(self) -> None:
        w = self.window
        menu = w.menuBar().addMenu("&Model")
        actions = make_actions(w, {
            "model.predict_all": self.predict_all, "model.predict_selection": self.predict_selection,
            "model.cancel_prediction": self.cancel_predict, "model.evaluate": self.evaluate,
            "model.add_to_hard_set": self.add_current,
            "model.add_worst": lambda: self.add_worst(self.worst_n.value(), self.per_category.isChecked()),
            "model.retrain": self.open_retrain_dialog,
        }, {"model": menu})
        w.action_by_id.update(actions)
        self.predict_all_action, self.predict_selection_action = actions["model.predict_all"], actions["model.predict_selection"]
        self.cancel_action, self.add_action = actions["model.cancel_prediction"], actions["model.add_to_hard_set"]
        self.retrain_action = actions["model.retrain"]
        menu.addAction(self.dock.toggleViewAction())
        self.predict_progress_cancel = QPushButton("Cancel", w)
        self.predict_progress_cancel.setVisible(False)
        self.predict_progress_cancel.clicked.connect(self.cancel_predict)
        w.statusBar().addPermanentWidget(self.predict_progress_cancel)

    def _build_status(self) -> None:
        self.device_label = QLabel("Device: …", self.window)
        self.device_label.setToolTip("Where predict and retrain run (CUDA with mixed precision when present)")
        self.window.statusBar().addPermanentWidget(self.device_label)
        # Importing torch and asking CUDA take seconds: on the model thread (which owns the CUDA
        # context from then on), never before the window is first drawn.
        self.window.model_thread.submit("find the device", lambda ctx: _describe_device(),
                                        on_done=lambda text: self.device_label.setText(f"Device: {text}"),
                                        on_error=lambda msg: self.device_label.setText("Device: unknown"))

    # --- data set -----------------------------------------------------------------------

    @property
    def workspace(self):
        return self.doc.workspace if self.doc is not None else None

    def _attach(self) -> None:
        """A data set was opened: load its hard set and the active version's saved predictions."""
        self.doc = doc = self.window.doc
        self.version = None
        try:
            self.hard_set = HardSet.load(doc.workspace)
        except (OSError, ValueError) as e:
            self.hard_set = HardSet(workspace=doc.workspace)
            self.window.show_error("Cannot read the hard set", str(e))
        doc.rowsChanged.connect(lambda rows, doc=doc: self._on_rows_changed(doc, rows))
        self.refresh_table()
        version = doc.workspace.active_model_version()
        if version is not None:
            self.show_saved_predictions(version)

    def show_saved_predictions(self, version: str) -> bool:
        """Show the saved predictions of `version` (no re-run); False when there are none."""
        doc = self.doc
        path = doc.workspace.predictions_path(version, doc.csv_path)
        if not path.is_file():
            return False
        self.version = version
        self.window.load_predictions(path)
        return True

    def use_model_package(self, package: str | Path) -> JobHandle | None:
        """Make a model package the active version (imported once) and show its predictions:
        the saved ones when there are, else a fresh "predict all". The package is loaded first, on
        the model thread (`use_package_job`): a refused one is an error naming the file, and
        becomes no version."""
        doc, w = self.doc, self.window
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
            if self.doc is doc and not self.show_saved_predictions(result["version"]):
                self.predict_all()

        return w.model_thread.submit(f"use model {Path(package).name}", job, on_done=done,
                                     on_error=lambda msg: w.show_error("Cannot use the model", msg),
                                     on_progress=w.show_progress)

    # --- predict ----------------------------------------------------------------------

    def predict_all(self) -> None:
        if self.doc is not None:
            self.predict_rows(np.arange(len(self.doc)))

    def predict_selection(self) -> None:
        """Predict the images on show in the list (the filtered rows), or the current image."""
        w = self.window
        if self.doc is None:
            return
        rows = w.list_panel.shown_rows()
        if len(rows) == len(self.doc) and w.current_row is not None:
            rows = np.array([w.current_row])
        self.predict_rows(rows)

    def predict_rows(self, rows: np.ndarray) -> JobHandle | None:
        doc, w = self.doc, self.window
        if doc is None or len(rows) == 0:
            return None
        version = doc.workspace.active_model_version()
        if version is None:
            w.show_error("No model", "This data set has no model yet: choose one with File › Predict with model….")
            return None
        if self.predict_handle is not None and not self.predict_handle.done:
            self.predict_handle.cancel()
        snapshot = doc.ann.subset(np.arange(len(doc)))
        if not self._showing(version):
            n = len(doc)
            doc.set_predictions(Predictions.empty(n, f"model {version}"))
            self.version = version
        # Images without a category take the detector's class (applied when the run ends).
        self._detected_categories.clear()
        job = predict_job(doc.workspace, version, doc.csv_path, snapshot, rows=np.asarray(rows, np.int64),
                          detector_chooses=doc.uncategorized.copy())

        def done(result: dict) -> None:
            self.predict_progress_cancel.setVisible(False)
            if self.doc is doc and doc.predictions is not None:
                doc.set_predictions(doc.predictions, (doc.ne, doc.errors))
                msg = f"Predicted {result['predicted']} images with {version}"
                if result["errors"]:
                    msg += f"; {len(result['errors'])} unreadable (shown without prediction)"
                categorized = self._apply_detected_categories(doc)
                if categorized:
                    msg += f"; {categorized} without a category took the detector's (Ctrl+Z undoes)"
                w.statusBar().showMessage(msg, 8000)
                w.predictionsReady.emit()
                self.refresh_table()
                self.predictionsDone.emit(version)

        handle = w.model_thread.submit(f"predict {version}", job, on_done=done,
                                       on_error=lambda msg: self._predict_failed(msg), on_progress=w.show_progress)
        self._partial_sinks[handle.id] = lambda part, doc=doc: self._fill(doc, part)
        self.predict_handle = handle
        self.predict_progress_cancel.setVisible(True)
        return handle

    def _showing(self, version: str) -> bool:
        """Whether the list shows this version's predictions (made here or loaded from the workspace)."""
        p = self.doc.predictions
        if p is None or self.version != version:
            return False
        saved = self.doc.workspace.predictions_path(version, self.doc.csv_path).resolve()
        return p.source in (f"model {version}", str(saved))

    def _predict_failed(self, message: str) -> None:
        self.predict_progress_cancel.setVisible(False)
        self.window.show_error("Prediction failed", message)

    def cancel_predict(self) -> None:
        if self.predict_handle is not None:
            self.predict_handle.cancel()
            self.predict_progress_cancel.setVisible(False)
            self.window.statusBar().showMessage("Prediction cancelled; the finished images are kept", 6000)

    def _fill(self, doc, part: PredictedBatch) -> None:
        """One batch of predictions arrived: show it and its NE at once."""
        if self.doc is not doc or doc.predictions is None or part.version != self.version:
            return
        p, rows = doc.predictions, part.rows
        p.coords[rows], p.visibility[rows] = part.coords, part.visibility
        p.scores[rows] = np.where(part.scores >= 0, part.scores, np.nan)
        p.present[rows] = True
        read = np.array([str(doc.ann.image_ids[r]) not in part.errors for r in rows.tolist()], bool)
        self._detected_categories.update(zip(rows[read].tolist(), part.categories[read].tolist()))
        # Scored against the current annotations: edits made meanwhile count.
        doc.ne[rows], doc.errors[rows] = compute_errors(doc.ann, p, rows)
        # The list's cells and the current image at once, the charts at most once a second, the
        # error types once at the end (they cost a pass over every point).
        w = self.window
        if w.list_model is not None:
            w.list_model.refresh_rows(rows)
        if w.current_row is not None and w.current_row in set(rows.tolist()):
            w.refresh_points()
        w.charts.refresh_within_a_second()
        self.batchShown.emit(rows)
        self._update_summary()

    def _on_event(self, ev: JobEvent) -> None:
        if ev.kind == "partial":
            sink = self._partial_sinks.get(ev.job_id)
            if sink is not None:
                sink(ev.payload)
        elif ev.kind in ("finished", "failed", "cancelled"):
            self._partial_sinks.pop(ev.job_id, None)
            if ev.kind == "cancelled" and self.predict_handle is not None and ev.job_id == self.predict_handle.id:
                self.predict_progress_cancel.setVisible(False)
                if self.doc is not None and self.doc.predictions is not None:
                    self.doc.set_predictions(self.doc.predictions, (self.doc.ne, self.doc.errors))
                    self._apply_detected_categories(self.doc)

    def _apply_detected_categories(self, doc) -> int:
        """Give the images still without a category the detector's class from the last prediction
        run (one undo step); returns how many took one."""
        detected, self._detected_categories = self._detected_categories, {}
        if doc.read_only or not detected:
            return 0
        command = commands.categories_from_model(doc, np.fromiter(detected.keys(), np.int64, len(detected)),
                                                 np.fromiter(detected.values(), np.int64, len(detected)))
        if command is None:
            return 0
        self.window.undo_stack.push(command)
        return len(command.parts)

    # --- hard set -----------------------------------------------------------------------

    def members(self) -> list[str]:
        """The hard set's image ids (removed ones excluded)."""
        return self.hard_set.members()

    def member_rows(self) -> np.ndarray:
        if self.doc is None:
            return np.zeros(0, np.int64)
        return self.hard_set.member_rows(self.doc.ann.id_index())

    def _ids(self, rows) -> list[str]:
        return [str(self.doc.ann.image_ids[r]) for r in np.asarray(rows, np.int64).tolist()]

    def add_rows(self, rows, reason: str = "manual") -> int:
        """Add images (data rows) to the hard set; returns how many joined."""
        if self.doc is None:
            return 0
        return self._saving(lambda: self.hard_set.add(self._ids(rows), reason)) or 0

    def remove_rows(self, rows) -> None:
        """Take images out of the hard set; an edited image then stays out (not re-added as corrected)."""
        if self.doc is not None:
            self._saving(lambda: self.hard_set.remove(self._ids(rows)))

    def add_current(self) -> None:
        row = self.window.current_row
        if row is not None and self.add_rows([row]):
            self.window.statusBar().showMessage("Added to the hard set", 4000)

    def add_worst(self, n: int, per_category: bool = False) -> int:
        """Add the n images with the largest NE (n per category with `per_category`)."""
        doc = self.doc
        if doc is None or not np.isfinite(doc.ne).any():
            self.window.statusBar().showMessage("No NE yet: predict first", 6000)
            return 0
        worst = self.hard_set.worst(doc.ann.image_ids, doc.ne, n, doc.categories if per_category else None)
        added = self._saving(lambda: self.hard_set.add(worst, "worst-ne")) or 0
        self.window.statusBar().showMessage(f"Added {added} images to the hard set", 6000)
        return added

    def remove_selected(self) -> None:
        index = self.doc.ann.id_index() if self.doc is not None else {}
        ids = {self.table.item(i.row(), 0).data(Qt.UserRole) for i in self.table.selectionModel().selectedRows()}
        self.remove_rows([index[i] for i in ids if i in index])

    def hard_ne(self) -> float:
        """Mean NE over the scored points of the hard set's images (NaN without predictions)."""
        if self.doc is None:
            return float("nan")
        return self.hard_set.ne(self.doc.ann.id_index(), self.doc.errors)

    def _on_rows_changed(self, doc, rows) -> None:
        if doc is not self.doc:
            return
        # A correction of an annotation joins; the first points of a new image (placed or accepted
        # from the prediction) are annotating, not correcting.
        edited = [r for r in np.asarray(rows).tolist() if doc.edited[r] and doc.had_points[r]]
        if edited and not set(self._ids(edited)) <= set(self.hard_set.entries):
            self._saving(lambda: self.hard_set.corrected(self._ids(edited)))

    def _saving(self, change):
        """Run a change of the hard set (which saves it); a failed save is reported, the set kept."""
        result = None
        try:
            result = change()
        except OSError as e:
            self.window.statusBar().showMessage(f"Cannot save the hard set: {e}", 15000)
        self.refresh_table()
        self.hardSetChanged.emit()
        return result

    def refresh_table(self) -> None:
        doc = self.doc
        wanted = self.reason_box.currentData()
        shown = [(i, r) for i, r in sorted(self.hard_set.entries.items()) if r != REMOVED and (wanted is None or r == wanted)]
        index = doc.ann.id_index() if doc is not None else {}
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(shown))
        for n, (image_id, reason) in enumerate(shown):
            name = QTableWidgetItem(shorten(image_id.rsplit("/", 1)[-1]))
            name.setData(Qt.UserRole, image_id)
            name.setToolTip(shorten(image_id, 1000))
            ne_item = QTableWidgetItem()
            row = index.get(image_id)
            ne = doc.ne[row] if doc is not None and row is not None else np.nan
            ne_item.setData(Qt.DisplayRole, round(float(100 * ne), 2) if np.isfinite(ne) else None)
            self.table.setItem(n, 0, name)
            self.table.setItem(n, 1, QTableWidgetItem(REASON_LABELS[reason]))
            self.table.setItem(n, 2, ne_item)
        self.table.setSortingEnabled(True)
        self._update_summary()

    def _update_summary(self) -> None:
        n = len(self.members())
        ne = self.hard_ne()
        self.summary.setText(f"{n} images" + (f", NE {100 * ne:.2f} %" if np.isfinite(ne) else ""))
        self.dock.setWindowTitle(f"Hard set ({n})")

    def _go_to(self, table_row: int, _col: int) -> None:
        image_id = self.table.item(table_row, 0).data(Qt.UserRole)
        row = self.doc.ann.id_index().get(image_id) if self.doc is not None else None
        if row is not None:
            self.window.go_to_point(row, 0)

    # --- retrain ------------------------------------------------------------------------

    def open_retrain_dialog(self):
        from fkp_studio.retrain_dialog import RetrainDialog

        if self.doc is None:
            return None
        if self.dialog is None:
            self.dialog = RetrainDialog(self)
        self.dialog.reset()
        self.dialog.show()
        self.dialog.raise_()
        return self.dialog

    def training_ids(self, source: str = "hard") -> list[str]:
        """The images a retrain oversamples: the hard set's ("hard") or every reviewed one ("reviewed")."""
        if self.doc is None:
            return []
        if source == "reviewed":
            return self._ids(np.flatnonzero((self.doc.review == REVIEW_STATES.index(REVIEWED)) & ~self.doc.uncategorized))
        index = self.doc.ann.id_index()
        return [i for i in self.members() if i in index]

    def start_retrain(self, config: RetrainConfig, source: str = "hard") -> JobHandle | None:
        """Retrain the active version on the hard set (or the reviewed images) of a snapshot of
        the annotations."""
        doc, w = self.doc, self.window
        version = doc.workspace.active_model_version() if doc is not None else None
        if version is None:
            w.show_error("No model", "This data set has no model to retrain: predict with a model first.")
            return None
        hard = self.training_ids(source)
        if not hard:
            w.show_error("Nothing to train on", "Add images to the hard set first (H, or Add worst N by NE)."
                         if source == "hard" else "Review images first (Enter accepts and marks reviewed).")
            return None
        # Editing goes on meanwhile: a snapshot, of the images with at least one point (an image
        # of new annotations that nobody has touched yet teaches nothing).
        # Nor does an image without a category (its code is a placeholder).
        snapshot = doc.ann.subset(np.flatnonzero((doc.ann.visibility >= 0).any(axis=1) & ~doc.uncategorized))
        snapshot.add_keypoint_columns()
        index = snapshot.id_index()
        hard = [i for i in hard if i in index]
        job = retrain_job(doc.workspace, snapshot, hard, config, base_version=version)
        handle = w.model_thread.submit(f"retrain {version}", job, on_done=self.retrainFinished.emit,
                                       on_error=self.retrainFailed.emit, on_progress=self._retrain_progress)
        self._partial_sinks[handle.id] = self._retrain_partial
        self.retrain_handle = handle
        return handle

    def _retrain_progress(self, done: float, total: float, message: str) -> None:
        self.window.show_progress(done, total, message)
        if self.dialog is not None:
            self.dialog.on_progress(done, total, message)

    def _retrain_partial(self, payload: dict) -> None:
        if self.dialog is not None:
            self.dialog.on_loss(payload["loss"])

    def accept_version(self, version: str) -> None:
        """The retrained version becomes active; its predictions replace the old ones."""
        self.doc.workspace.set_active_model(version)
        self.window.statusBar().showMessage(f"Model {version} is active; predicting again", 8000)
        self.predict_all()

    def discard_version(self, version: str) -> None:
        try:
            self.doc.workspace.remove_model_version(version)
        except (OSError, ValueError) as e:
            self.window.show_error("Cannot discard the model", str(e))

    def evaluate(self) -> JobHandle | None:
        """Score the active version's saved predictions (overall, per category, hard set) in the
        background; the figures go to the status bar."""
        doc, w = self.doc, self.window
        version = doc.workspace.active_model_version() if doc is not None else None
        if version is None:
            return None
        snapshot = doc.ann.subset(np.arange(len(doc)))

        def done(r: dict) -> None:
            cats = ", ".join(f"{c} {100 * v:.2f} %" for c, v in r["per_category"].items())
            hard = f"; hard set {100 * r['hard']:.2f} %" if np.isfinite(r["hard"]) else ""
            w.statusBar().showMessage(f"{version}: NE {100 * r['ne']:.2f} % on {r['images']} images ({cats}){hard}",
                                      20000)

        return w.model_thread.submit(f"evaluate {version}",
                                     evaluate_job(doc.workspace, version, doc.csv_path, snapshot, self.members()),
                                     on_done=done, on_error=lambda msg: w.show_error("Evaluation failed", msg))
