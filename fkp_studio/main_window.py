"""The main window composes the studio: the image list panel, canvas, keypoint table, data-set
charts, problems and check-annotation panels, the hard-example loop; menus from the action
table, saving, the restore question, settings. Opening and predictions are the data-set
session's (`session.py`), editing the editing controller's (`editing.py`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QByteArray, QSettings, Qt, Signal
from PySide6.QtGui import QCloseEvent, QImage, QKeySequence, QPixmap, QUndoStack
from PySide6.QtWidgets import (QComboBox, QDockWidget, QFileDialog, QLabel, QMainWindow, QMessageBox, QProgressBar,
                               QWidget)

from engine.io.annotations import append_annotations
from engine.io.messages import describe_error, shorten
from engine.io.review import REVIEW_STATES, REVIEWED
from engine.schema import CATEGORIES
from fkp_studio import commands
from fkp_studio.actions import TOOLBAR, make_actions
from fkp_studio.canvas import KeypointCanvas
from fkp_studio.charts import DatasetCharts, ErrorTypeChart
from fkp_studio.document import AnnotationDocument
from fkp_studio.editing import EditingController
from fkp_studio.engine_thread import EngineThread
from fkp_studio.hard_loop import HardLoop
from fkp_studio.image_loader import ImageLoader
from fkp_studio.keypoint_table import KeypointTable
from fkp_studio.list_panel import ImageListPanel
from fkp_studio.panels import CheckAnnotationPanel, ProblemsPanel
from fkp_studio.session import DatasetSession

APP_TITLE = "FKP Studio"


class MainWindow(QMainWindow):
    """The studio window. Open a data set with `open_dataset`; everything else is interactive."""

    datasetOpened = Signal()
    imageShown = Signal(int)  # data row, once its image (or placeholder) is on the canvas
    predictionsReady = Signal()

    def __init__(self):
        super().__init__()
        self.current_row: int | None = None
        self.editing = EditingController(self)
        # How to answer the "restore unsaved edits?" question: "ask", "restore" or "discard".
        self.restore_policy = "ask"
        self._journal_warned = False
        self.undo_stack = QUndoStack(self)
        self.undo_stack.cleanChanged.connect(self._on_clean_changed)
        self.io_thread = EngineThread("io", self)
        self.model_thread = EngineThread("model", self)
        self.session = DatasetSession(self.io_thread, self)
        self.session.opened.connect(self._install)
        self.session.predictionsLoaded.connect(self._on_predictions_loaded)
        self.session.modelRequested.connect(self.predict_with_model)
        self.session.failed.connect(self.show_error)
        self.loader = ImageLoader(parent=self)
        self.loader.loaded.connect(self._on_image_loaded)
        self.loader.failed.connect(self._on_image_failed)

        self.canvas = KeypointCanvas(self)
        self.setCentralWidget(self.canvas)
        self.list_panel = ImageListPanel(self)
        self.list_panel.rowActivated.connect(self.show_row)
        self.list_dock = self.add_dock("Images", self.list_panel, Qt.LeftDockWidgetArea)
        self.keypoint_table = KeypointTable(self)
        self.keypoint_table.keypointClicked.connect(self.editing.select_keypoint)
        self.keypoint_dock = self.add_dock("Keypoints", self.keypoint_table, Qt.RightDockWidgetArea)
        self._build_chart_docks()
        self._build_status_bar()
        self._build_actions()
        self.canvas.pointDragged.connect(self.editing.move)
        self.canvas.pointClicked.connect(self.editing.select_keypoint)
        self.canvas.placeRequested.connect(self.editing.place)
        self.canvas.predictionAccepted.connect(self.editing.accept_point)
        self.canvas.hovered.connect(lambda name: self.hover_label.setText(name))
        self.io_thread.busyChanged.connect(self._update_busy)
        self.model_thread.busyChanged.connect(self._update_busy)
        self._update_title()
        self.charts.refresh()
        # The hard-example loop: Model menu, Hard set dock, device label (fkp_studio/hard_loop.py).
        self.hard_loop = HardLoop(self)
        self._restore_settings()

    @property
    def doc(self) -> AnnotationDocument | None:
        return self.session.doc

    @property
    def list_model(self):
        return self.list_panel.model

    # --- layout -------------------------------------------------------------------------

    def add_dock(self, title: str, widget: QWidget, area) -> QDockWidget:
        """A dock named `title` holding `widget` (its object name keeps its place across runs)."""
        dock = QDockWidget(title, self)
        dock.setObjectName(title.replace(" ", "_").lower() + "_dock")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_chart_docks(self) -> None:
        panel = self.list_panel
        self.charts = DatasetCharts(self)
        self.charts.neRangeClicked.connect(lambda lo, hi: panel.filter_with(ne_range=(lo, hi), keypoint=None))
        self.charts.keypointClicked.connect(panel.filter_keypoint)
        self.charts.categoryClicked.connect(panel.filter_category)
        self.error_chart = ErrorTypeChart(self.charts)
        self.error_chart.segmentClicked.connect(panel.filter_error_on_keypoint)
        self.charts.layout().addWidget(self.error_chart, 4)
        self.charts_dock = self.add_dock("Data set", self.charts, Qt.BottomDockWidgetArea)
        self.problems = ProblemsPanel(self)
        self.problems_dock = self.add_dock("Problems", self.problems, Qt.BottomDockWidgetArea)
        self.tabifyDockWidget(self.charts_dock, self.problems_dock)
        self.check_panel = CheckAnnotationPanel(self)
        self.check_panel.suspectClicked.connect(self.go_to_point)
        self.check_dock = self.add_dock("Check annotation", self.check_panel, Qt.BottomDockWidgetArea)
        self.tabifyDockWidget(self.charts_dock, self.check_dock)
        self.charts_dock.raise_()

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.hover_label = QLabel("", self)
        self.review_label = QLabel("", self)
        self.review_label.setToolTip("Images reviewed (Enter accepts the prediction, Space goes to the next unreviewed)")
        self.busy_bar = QProgressBar(self)
        self.busy_bar.setMaximumWidth(220)
        self.busy_bar.setVisible(False)
        self.busy_bar.setTextVisible(True)
        bar.addPermanentWidget(self.hover_label)
        bar.addPermanentWidget(self.review_label)
        bar.addPermanentWidget(self.busy_bar)

    def _build_actions(self) -> None:
        bar = self.menuBar()
        menus = {key: bar.addMenu(title) for key, title in
                 (("file", "&File"), ("edit", "&Edit"), ("review", "&Review"), ("view", "&View"), ("go", "&Go"))}
        undo = self.undo_stack.createUndoAction(self, "&Undo")
        undo.setShortcuts([QKeySequence("Ctrl+Z")])
        redo = self.undo_stack.createRedoAction(self, "&Redo")
        redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        for a in (undo, redo):
            self.addAction(a)
            menus["edit"].addAction(a)
        menus["edit"].addSeparator()
        canvas, panel = self.canvas, self.list_panel
        slots = {
            "file.open_annotations": self._choose_annotations, "file.open_predictions": self._choose_predictions,
            "file.new_from_images": self._choose_images,
            "file.predict_with_model": self._choose_model, "file.save": self.save, "file.quit": self.close,
            "edit.next_keypoint": self.editing.next_keypoint, "edit.cycle_visibility": self.editing.cycle_visibility,
            "edit.remove_point": self.editing.remove_point, "edit.swap_left_right": self.editing.swap_left_right,
            "edit.swap_twin": self.editing.swap_twin, "edit.cancel": self.editing.cancel_mode,
            "edit.cycle_category": self.editing.cycle_category,
            "review.accept": self.editing.accept_image, "review.skip": self.editing.skip_image,
            "review.next_unreviewed": self.editing.next_unreviewed,
            "review.add_to_training_file": self.add_reviewed_to_training_file,
            "view.fit": canvas.zoom_fit, "view.actual_size": canvas.zoom_actual,
            "view.zoom_in": lambda: canvas.zoom_by(1.25), "view.zoom_out": lambda: canvas.zoom_by(0.8),
            "view.show_predictions": canvas.set_show_predictions, "view.worst_first": panel.worst_first,
            "view.clear_filter": panel.clear_filter,
            "go.next_image": lambda: panel.step(1), "go.previous_image": lambda: panel.step(-1),
        }
        for key, dx, dy in (("left", -1, 0), ("right", 1, 0), ("up", 0, -1), ("down", 0, 1)):
            slots[f"edit.nudge_{key}"] = lambda _=False, dx=dx, dy=dy: self.editing.nudge(dx, dy)
            slots[f"edit.nudge_{key}_10"] = lambda _=False, dx=dx, dy=dy: self.editing.nudge(10 * dx, 10 * dy)
        self.action_by_id = {**make_actions(self, slots, menus, canvas=canvas), "edit.undo": undo, "edit.redo": redo}
        self.action_by_id["view.show_predictions"].setChecked(True)
        menus["view"].addSeparator()
        for dock in (self.list_dock, self.keypoint_dock, self.charts_dock, self.problems_dock, self.check_dock):
            menus["view"].addAction(dock.toggleViewAction())

        tools = self.addToolBar("Main")
        tools.setObjectName("main_toolbar")
        tools.setMovable(False)
        for action_id in TOOLBAR:
            if action_id is None:
                tools.addSeparator()
            else:
                tools.addAction(self.action_by_id[action_id])
        tools.addSeparator()
        self.category_combo = QComboBox(self)
        self.category_combo.addItems(list(CATEGORIES))
        self.category_combo.setToolTip("The current image's garment category (C: the next one)")
        self.category_combo.setPlaceholderText("no category")
        self.category_combo.setFocusPolicy(Qt.NoFocus)  # keys stay with the canvas and the list
        self.category_combo.activated.connect(self.editing.set_category)
        tools.addWidget(self.category_combo)

    # --- opening ------------------------------------------------------------------------

    def open_dataset(self, annotations: str | Path, predictions: str | Path | None = None,
                     model: str | Path | None = None) -> bool:
        """Load an annotation file (off the main thread); False if the user cancelled."""
        if not self.maybe_save():
            return False
        csv_path = self.session.open(annotations, predictions, model)
        self.statusBar().showMessage(f"Loading {csv_path.name}…")
        return True

    def open_images(self, images_dir: str | Path, model: str | Path | None = None,
                    predictions: str | Path | None = None) -> bool:
        """New annotations for a folder of images (listed off the main thread), with the
        categories and predictions of `predictions` where given; False if cancelled."""
        if not self.maybe_save():
            return False
        csv_path = self.session.open_images(images_dir, model, predictions)
        self.statusBar().showMessage(f"Listing the images of {Path(images_dir).name} for {csv_path.name}…")
        return True

    def _choose_images(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "New annotations from images (a folder, e.g. ROOT/Images)")
        if folder:
            self.open_images(folder)

    def _install(self, doc: AnnotationDocument) -> None:
        """The session opened a document: point every panel at it."""
        doc.rowsChanged.connect(self._on_rows_changed)
        doc.predictionsChanged.connect(self._on_predictions_changed)
        doc.journalFailed.connect(self._on_journal_failed)
        self.undo_stack.clear()
        self.loader.root = doc.workspace.root
        self.current_row = None
        self.editing.selected_k = None
        self.canvas.set_place_mode(None)
        self.list_panel.set_document(doc)
        problems = doc.ann.problems
        self.problems.show_problems(problems)
        self.problems_dock.setWindowTitle(f"Problems ({len(problems)})")
        if problems:
            self.problems_dock.raise_()
        self.charts.set_document(doc)
        self.error_chart.set_index(doc.error_index)
        self.check_panel.set_index(doc.error_index)
        doc.error_index.changed.connect(self._update_check_title)
        doc.error_index.rowsUpdated.connect(self._update_check_title)
        self._update_check_title()
        self._update_review_label()
        self._update_title()
        msg = f"Opened {doc.csv_path.name}: {len(doc)} images"
        if problems:
            msg += f", {len(problems)} rows with problems (see the Problems panel)"
        if doc.uncategorized.any():
            msg += f", {int(doc.uncategorized.sum()):,} without a category (C or the category box sets it)"
        if doc.review_problems:
            msg += f"; review states: {len(doc.review_problems)} damaged lines skipped ({doc.review_problems[0]})"
        if doc.read_only:
            msg = f"{msg}; {doc.read_only}"
        elif doc.lock is not None and doc.lock.took_over is not None:
            msg += f"; took over the editing lock of {doc.lock.took_over.describe()}, which is gone"
        self.statusBar().showMessage(msg, 15000)
        self._offer_restore()
        self.datasetOpened.emit()

    def _offer_restore(self) -> None:
        offer = self.session.restore_offer()
        if offer is None:
            return
        doc = self.doc
        answer = self.restore_policy
        if answer == "ask":
            box = QMessageBox(QMessageBox.Question, "Restore unsaved edits", offer.question(doc.csv_path.name),
                              QMessageBox.Yes | QMessageBox.No, self)
            box.button(QMessageBox.Yes).setText("Restore")
            box.button(QMessageBox.No).setText("Discard")
            box.setDefaultButton(QMessageBox.Yes)
            answer = "restore" if box.exec() == QMessageBox.Yes else "discard"
        if answer == "restore" and len(offer.rows):  # (none: every edit was cleared; set aside below)
            self.undo_stack.push(commands.restore_command(doc, offer.rows, offer.coords, offer.visibility,
                                                          offer.categories))
            self.statusBar().showMessage(
                f"Restored {offer.merge.applied} unsaved edited points on {len(offer.rows)} images", 8000)
        else:
            kept = doc.discard_pending()
            self.statusBar().showMessage(f"Unsaved edits set aside in {kept}", 8000)

    def load_predictions(self, path: str | Path) -> None:
        """Read and score a predictions CSV off the main thread; `predictionsReady` when shown."""
        self.session.load_predictions(path)

    def _on_predictions_loaded(self, path: str) -> None:
        self.statusBar().showMessage(f"Predictions: {Path(path).name}", 6000)
        self.predictionsReady.emit()

    def predict_with_model(self, model_path: str | Path) -> None:
        """Make a model package the data set's active model version and show its predictions: the
        saved ones when this version predicted before, else a fresh run that fills the list in."""
        if self.doc is not None:
            self.hard_loop.use_model_package(model_path)

    def _choose_annotations(self) -> None:
        start = str(self.doc.csv_path.parent) if self.doc else ""
        path, _ = QFileDialog.getOpenFileName(self, "Open annotations", start, "FashionAI CSV (*.csv);;All files (*)")
        if path:
            self.open_dataset(path)

    def _choose_predictions(self) -> None:
        if self.doc is None:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open predictions", str(self.doc.csv_path.parent),
                                              "FashionAI CSV (*.csv);;All files (*)")
        if path:
            self.load_predictions(path)

    def _choose_model(self) -> None:
        if self.doc is None:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Predict with model", "", "FKP model (*.fkpmodel);;All files (*)")
        if path:
            self.predict_with_model(path)

    def ask_training_file(self) -> str:
        """The FashionAI CSV to append reviewed images to ("" when cancelled; tests answer it)."""
        path, _ = QFileDialog.getSaveFileName(self, "Add reviewed images to", str(self.doc.csv_path.parent),
                                              "FashionAI CSV (*.csv)", options=QFileDialog.DontConfirmOverwrite)
        return path

    def add_reviewed_to_training_file(self) -> None:
        """Append the reviewed images (their annotations as they are now) to a training CSV, off
        the main thread; its existing bytes stay as they are, ids already there are refused."""
        doc = self.doc
        if doc is None:
            return
        rows = np.flatnonzero((doc.review == REVIEW_STATES.index(REVIEWED)) & ~doc.uncategorized)
        if not len(rows):
            self.statusBar().showMessage("No image is reviewed yet (Enter accepts and marks reviewed)", 6000)
            return
        target = self.ask_training_file()
        if not target:
            return
        if Path(target).resolve() == doc.csv_path:
            self.show_error("Cannot add", "The reviewed images are in this file already: choose another one.")
            return
        snapshot = doc.ann.subset(rows)
        snapshot.add_keypoint_columns()
        self.io_thread.submit(
            f"append to {Path(target).name}", lambda ctx: append_annotations(target, snapshot),
            on_done=lambda n: self.statusBar().showMessage(f"Added {n} reviewed images to {target}", 8000),
            on_error=lambda msg: self.show_error("Cannot add the reviewed images", msg))

    # --- going to an image --------------------------------------------------------------

    def go_to_point(self, row: int, k: int) -> None:
        """Show image `row` (clearing the filter if it hides it) with keypoint k selected."""
        self.list_panel.go_to(row)
        if self.current_row == row:
            self.editing.select_keypoint(k)

    def _update_check_title(self, _rows=None) -> None:
        n = self.doc.error_index.suspect_count() if self.doc is not None else 0
        self.check_dock.setWindowTitle(f"Check annotation ({n})" if n else "Check annotation")

    # --- canvas -------------------------------------------------------------------------

    def show_row(self, row: int) -> None:
        """Show one image (data row) with its points."""
        doc = self.doc
        if doc is None:
            return
        if row != self.current_row:
            self.current_row = row
            self.canvas.request_fit()
            self.editing.selected_k = None
            self.canvas.set_place_mode(None)
        self.refresh_points()
        path = str(doc.image_path(row))
        image = self.loader.request(path)
        if image is not None:
            self.canvas.set_image(QPixmap.fromImage(image))
            self.imageShown.emit(row)
        else:
            error = self.loader.error(path)
            self.canvas.set_image(None, _unavailable(error) if error else "loading…")
            if error:
                self.imageShown.emit(row)
        for r in self.list_panel.neighbour_rows():
            self.loader.request(str(doc.image_path(r)))
        self._update_title()

    def _on_image_loaded(self, path: str, image: QImage) -> None:
        if self._is_current_image(path):
            self.canvas.set_image(QPixmap.fromImage(image))
            self.imageShown.emit(self.current_row)

    def _on_image_failed(self, path: str, reason: str) -> None:
        if self._is_current_image(path):
            self.canvas.set_image(None, _unavailable(reason))
            self.imageShown.emit(self.current_row)

    def _is_current_image(self, path: str) -> bool:
        return self.doc is not None and self.current_row is not None and path == str(self.doc.image_path(self.current_row))

    def refresh_points(self) -> None:
        doc, row = self.doc, self.current_row
        # An image without a category shows an empty box ("no category") until one is chosen.
        self.category_combo.setCurrentIndex(-1 if doc.uncategorized[row] else int(doc.categories[row]))
        p = doc.predictions
        has_pred = p is not None and p.present[row]
        self.canvas.set_points(doc.categories[row], doc.ann.coords[row], doc.ann.visibility[row],
                               p.coords[row] if has_pred else None, p.visibility[row] if has_pred else None,
                               p.scores[row] if has_pred else None)
        self.canvas.set_selected(self.editing.selected_k)
        self.keypoint_table.show_row(doc, row, self.editing.selected_k)

    def _update_review_label(self) -> None:
        doc = self.doc
        done = int(np.count_nonzero(doc.review == 1)) if doc is not None else 0
        self.review_label.setText(f"{done:,} / {len(doc):,} reviewed" if doc is not None else "")

    def _on_rows_changed(self, rows: np.ndarray) -> None:
        self._update_review_label()
        if self.current_row is not None and self.current_row in set(np.asarray(rows).tolist()):
            self.refresh_points()

    def _on_predictions_changed(self) -> None:
        if self.current_row is not None:
            self.refresh_points()
        self.list_panel.worst_first()

    def _on_journal_failed(self, message: str) -> None:
        self.statusBar().showMessage(message, 15000)
        if not self._journal_warned:
            self._journal_warned = True
            self.show_error("Edits are not being journaled", message)

    # --- saving -------------------------------------------------------------------------

    def save(self) -> bool:
        """Save the annotation file; on failure say why and keep every edit. A file another
        program changed since it was read is never overwritten silently: merge, save as, or cancel."""
        doc = self.doc
        if doc is None:
            return True
        if doc.read_only:
            self.show_error("Cannot save", doc.read_only)
            return False
        try:
            if doc.changed_on_disk():
                return self._save_changed_file()
            doc.save()
        except (OSError, ValueError) as e:
            self._save_failed(e)
            return False
        self._saved(f"Saved {doc.csv_path}{doc.left_out_note()}")
        return True

    def _save_failed(self, error: BaseException) -> None:
        self.show_error("Could not save", f"{self.doc.csv_path} was not saved ({describe_error(error)}).\n\n"
                        "Your edits are kept, in memory and in the edit journal.")

    def _saved(self, message: str) -> None:
        self.undo_stack.setClean()
        self.setWindowModified(False)
        self.statusBar().showMessage(message, 8000)

    def ask_changed_on_disk(self) -> str:
        """"merge", "save_as" or "cancel" for a file changed on disk (a method so tests can answer)."""
        box = QMessageBox(QMessageBox.Warning, "File changed on disk",
                          f"{self.doc.csv_path.name} was changed by another program since it was opened.\n\n"
                          "Merge: read it again and apply this session's edits on top (points changed on both "
                          "sides are listed, and the other version is kept beside the file).", parent=self)
        merge = box.addButton("Merge", QMessageBox.AcceptRole)
        save_as = box.addButton("Save as…", QMessageBox.ActionRole)
        box.addButton(QMessageBox.Cancel)
        box.setDefaultButton(merge)
        box.exec()
        return {merge: "merge", save_as: "save_as"}.get(box.clickedButton(), "cancel")

    def ask_save_path(self) -> str:
        """A file name to save a copy to ("" when cancelled; a method so tests can answer)."""
        path, _ = QFileDialog.getSaveFileName(self, "Save annotations as", str(self.doc.csv_path.parent),
                                              "FashionAI CSV (*.csv)")
        return path

    def _save_changed_file(self) -> bool:
        doc = self.doc
        answer = self.ask_changed_on_disk()
        if answer == "merge":
            result, kept = doc.merge_and_save()
            text = result.describe() + "."
            if result.conflicts:
                text += "\n\n" + "\n".join(c.describe() for c in result.conflicts[:20])
            if kept:
                text += "\n\nKept beside the file: " + ", ".join(p.name for p in kept)
            QMessageBox.information(self, "Merged", f"Saved {doc.csv_path.name}: {text}")
            self._saved(f"Merged and saved {doc.csv_path}")
            self._reopen(doc.csv_path)
            return True
        if answer == "save_as":
            path = self.ask_save_path()
            if not path:
                return False
            doc.save_copy(path)
            doc.discard_pending()  # the edits live in the copy now; the journal is set aside, not lost
            self._saved(f"Saved a copy as {path}")
            self._reopen(Path(path))
            return True
        return False

    def _reopen(self, csv_path: Path) -> None:
        """Open a file again (after a merge or save-as) with the predictions it was shown with."""
        p = self.doc.predictions
        source = p.source if p is not None and Path(p.source).is_file() else None
        self.session.open(csv_path, source)

    def has_unsaved_edits(self) -> bool:
        return self.doc is not None and not self.undo_stack.isClean()

    def ask_unsaved(self) -> QMessageBox.StandardButton:
        """Save / Discard / Cancel for unsaved edits (a method so tests can answer it)."""
        return QMessageBox.question(
            self, "Unsaved edits", f"Save the edits to {self.doc.csv_path.name} before closing?",
            QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel, QMessageBox.Save)

    def maybe_save(self) -> bool:
        """True when it is fine to close the current data set."""
        if not self.has_unsaved_edits():
            return True
        answer = self.ask_unsaved()
        if answer == QMessageBox.Save:
            return self.save()
        if answer == QMessageBox.Discard:
            try:
                self.doc.discard_pending()  # renamed aside, so nothing is offered for restore
            except OSError as e:  # the file became a folder, a full disk: the journal stays as it is
                self.show_error("Could not set the edits aside",
                                f"{describe_error(e)}; the unsaved edits stay in the edit journal "
                                f"{self.doc.journal.path} and are offered when {self.doc.csv_path.name} "
                                "is opened again")
            self.undo_stack.clear()
            return True
        return False

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.maybe_save():
            event.ignore()
            return
        try:
            self._save_settings()
            self.model_thread.shutdown(timeout=2)
            self.io_thread.shutdown(timeout=2)
            self.loader.wait(2000)
        finally:  # the lock is released in this process, whatever went wrong above
            if self.doc is not None:
                self.doc.close()
        event.accept()

    # --- status, title, errors ----------------------------------------------------------

    def _on_clean_changed(self, clean: bool) -> None:
        self.setWindowModified(not clean)

    def _update_title(self) -> None:
        if self.doc is None:
            self.setWindowTitle(f"{APP_TITLE}[*]")
            return
        image = ""
        if self.current_row is not None:
            image = f" — {shorten(str(self.doc.ann.image_ids[self.current_row]).rsplit('/', 1)[-1], 80)}"
        read_only = " (read-only)" if self.doc.read_only else ""
        self.setWindowTitle(f"{self.doc.csv_path.name}[*]{read_only}{image} — {APP_TITLE}")

    def _update_busy(self, _busy: bool = False) -> None:
        busy = self.io_thread.busy or self.model_thread.busy
        self.busy_bar.setVisible(busy)
        if busy:
            self.busy_bar.setRange(0, 0)
            self.busy_bar.setFormat("working…")

    def show_progress(self, done: float, total: float, message: str) -> None:
        self.busy_bar.setVisible(True)
        if total:
            self.busy_bar.setRange(0, int(total))
            self.busy_bar.setValue(int(done))
            self.busy_bar.setFormat(f"{message} %v/%m")

    def show_error(self, title: str, message: str) -> None:
        self.statusBar().showMessage(shorten(message.splitlines()[0] if message else title, 300), 15000)
        QMessageBox.critical(self, title, message)

    # --- settings -----------------------------------------------------------------------

    def _restore_settings(self) -> None:
        s = QSettings()
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1400, 880)
        state = s.value("window/state")
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state)
        else:
            self.resizeDocks([self.list_dock, self.keypoint_dock], [400, 470], Qt.Horizontal)
            self.resizeDocks([self.charts_dock], [230], Qt.Vertical)

    def _save_settings(self) -> None:
        s = QSettings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.sync()


def _unavailable(reason: str) -> str:
    return f"Image not available — the points are still shown and editable.\n{shorten(reason, 300)}"
