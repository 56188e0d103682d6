"""The main window: image list, canvas, keypoint table, data-set charts, problems; menus,
shortcuts, saving, restoring unsaved edits, settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QByteArray, QSettings, QStandardPaths, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QImage, QKeySequence, QPixmap, QUndoStack
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDockWidget, QFileDialog, QHBoxLayout, QHeaderView,
                               QLabel, QLineEdit, QMainWindow, QMessageBox, QProgressBar, QPushButton, QTableView,
                               QVBoxLayout, QWidget)

from engine.io.scores import load_scores, scores_path
from engine.io.annotations import Annotations, load_annotations
from engine.schema import CATEGORIES
from engine.io.workspace import Workspace, dataset_root_of
from fkp_studio import commands
from fkp_studio.actions import TOOLBAR, make_actions
from fkp_studio.canvas import KeypointCanvas
from fkp_studio.charts import DatasetCharts, ErrorTypeChart
from fkp_studio.editing import EditingController
from fkp_studio.document import AnnotationDocument, Predictions, align_to_annotations, compute_errors
from fkp_studio.engine_thread import EngineThread
from fkp_studio.hard_loop import HardLoop
from fkp_studio.image_list import COL_NE, ImageListModel, ListFilter
from fkp_studio.image_loader import ImageLoader
from fkp_studio.keypoint_table import KeypointTable
from fkp_studio.error_index import ERROR_FILTERS
from fkp_studio.panels import CheckAnnotationPanel, ProblemsPanel

APP_TITLE = "FKP Studio"


@dataclass
class LoadedData:
    """What the loading job hands the main thread (built off it)."""

    csv_path: Path
    annotations: Annotations


def load_data(csv_path: Path) -> LoadedData:
    """Read the annotation file — runs on a worker thread."""
    return LoadedData(csv_path, load_annotations(csv_path))


def state_dir_for(root: Path) -> Path | None:
    """Where the workspace state goes: `<root>/.fkp`, or a per-user folder if the root is read-only."""
    if Workspace(root).is_writable():
        return None
    import hashlib
    base = Path(QStandardPaths.writableLocation(QStandardPaths.AppDataLocation)) / "workspaces"
    return base / hashlib.sha1(str(root).encode()).hexdigest()[:12]


class MainWindow(QMainWindow):
    """The studio window. Open a data set with `open_dataset`; everything else is interactive."""

    datasetOpened = Signal()
    imageShown = Signal(int)  # data row, once its image (or placeholder) is on the canvas
    predictionsReady = Signal()

    def __init__(self):
        super().__init__()
        self.doc: AnnotationDocument | None = None
        self.list_model: ImageListModel | None = None
        self.current_row: int | None = None
        self.editing = EditingController(self)
        # How to answer the "restore unsaved edits?" question: "ask", "restore" or "discard".
        self.restore_policy = "ask"
        self._journal_warned = False
        self._pending_open: dict[str, Any] | None = None
        self.undo_stack = QUndoStack(self)
        self.undo_stack.cleanChanged.connect(self._on_clean_changed)
        self.io_thread = EngineThread("io", self)
        self.model_thread = EngineThread("model", self)
        self.loader = ImageLoader(parent=self)
        self.loader.loaded.connect(self._on_image_loaded)
        self.loader.failed.connect(self._on_image_failed)

        self.canvas = KeypointCanvas(self)
        self.setCentralWidget(self.canvas)
        self._build_list_dock()
        self.keypoint_table = KeypointTable(self)
        self.keypoint_table.keypointClicked.connect(self.editing.select_keypoint)
        self.keypoint_dock = self._dock("Keypoints", self.keypoint_table, Qt.RightDockWidgetArea)
        self.charts = DatasetCharts(self)
        self.charts.neRangeClicked.connect(lambda lo, hi: self._filter_with(ne_range=(lo, hi), keypoint=None))
        self.charts.keypointClicked.connect(self._filter_keypoint)
        self.charts.categoryClicked.connect(self._filter_category)
        self.error_chart = ErrorTypeChart(self.charts)
        self.error_chart.segmentClicked.connect(self._filter_error_on_keypoint)
        self.charts.layout().addWidget(self.error_chart, 4)
        self.charts_dock = self._dock("Data set", self.charts, Qt.BottomDockWidgetArea)
        self.problems = ProblemsPanel(self)
        self.problems_dock = self._dock("Problems", self.problems, Qt.BottomDockWidgetArea)
        self.tabifyDockWidget(self.charts_dock, self.problems_dock)
        self.check_panel = CheckAnnotationPanel(self)
        self.check_panel.suspectClicked.connect(self.go_to_point)
        self.check_dock = self._dock("Check annotation", self.check_panel, Qt.BottomDockWidgetArea)
        self.tabifyDockWidget(self.charts_dock, self.check_dock)
        self.charts_dock.raise_()
        self._build_status_bar()
        self._build_actions()
        self.canvas.pointDragged.connect(self.editing.move)
        self.canvas.pointClicked.connect(self.editing.select_keypoint)
        self.canvas.placeRequested.connect(self.editing.place)
        self.canvas.hovered.connect(lambda name: self.hover_label.setText(name))
        self.io_thread.busyChanged.connect(self._update_busy)
        self.model_thread.busyChanged.connect(self._update_busy)
        self._update_title()
        self.charts.refresh()
        # The hard-example loop: Model menu, Hard set dock, device label (fkp_studio/hard_loop.py).
        self.hard_loop = HardLoop(self)
        self._restore_settings()

    # --- layout -------------------------------------------------------------------------

    def _dock(self, title: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title.replace(" ", "_").lower() + "_dock")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_list_dock(self) -> None:
        panel = QWidget(self)
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(4, 4, 4, 4)
        row = QHBoxLayout()
        self.category_box = QComboBox(panel)
        self.category_box.addItem("All categories", None)
        for c, name in enumerate(CATEGORIES):
            self.category_box.addItem(name, c)
        self.category_box.currentIndexChanged.connect(lambda _i: self._filter_with(category=self.category_box.currentData()))
        self.search = QLineEdit(panel)
        self.search.setPlaceholderText("Search image id…")
        self.search.setClearButtonEnabled(True)
        self._search_timer = QTimer(self, singleShot=True, interval=200)
        self._search_timer.timeout.connect(lambda: self._filter_with(text=self.search.text().strip()))
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        self.error_box = QComboBox(panel)
        for label, kind in ERROR_FILTERS:
            self.error_box.addItem(label, kind)
        self.error_box.setToolTip("Show only images with this error type (against the predictions), "
                                  "or the suspected annotation mistakes")
        self.error_box.currentIndexChanged.connect(
            lambda _i: self._filter_with(error_type=self.error_box.currentData()))
        row.addWidget(self.category_box)
        row.addWidget(self.error_box)
        row.addWidget(self.search, 1)
        layout.addLayout(row)
        row2 = QHBoxLayout()
        self.worst_button = QPushButton("Worst NE first", panel)
        self.worst_button.setToolTip("Sort the list by per-image normalized error, largest first (W)")
        self.worst_button.clicked.connect(self.worst_first)
        self.filter_label = QLabel("", panel)
        self.filter_label.setStyleSheet("color: #f0b040;")
        self.clear_filter_button = QPushButton("Clear filter", panel)
        self.clear_filter_button.clicked.connect(self.clear_filter)
        self.clear_filter_button.setVisible(False)
        self.edited_box = QCheckBox("Edited only", panel)
        self.edited_box.setToolTip("List only the images changed in this session")
        self.edited_box.toggled.connect(lambda on: self._filter_with(edited_only=on))
        row2.addWidget(self.worst_button)
        row2.addWidget(self.edited_box)
        row2.addWidget(self.filter_label, 1)
        row2.addWidget(self.clear_filter_button)
        layout.addLayout(row2)
        self.list_view = QTableView(panel)
        self.list_view.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.list_view.setSelectionMode(QAbstractItemView.SingleSelection)
        self.list_view.setSortingEnabled(True)
        self.list_view.setWordWrap(False)
        self.list_view.setAlternatingRowColors(True)
        self.list_view.verticalHeader().setVisible(False)
        self.list_view.verticalHeader().setDefaultSectionSize(22)
        self.list_view.verticalHeader().setSectionResizeMode(QHeaderView.Fixed)
        self.list_view.horizontalHeader().setHighlightSections(False)
        self.list_view.horizontalHeader().setStretchLastSection(True)
        layout.addWidget(self.list_view, 1)
        self.count_label = QLabel("", panel)
        layout.addWidget(self.count_label)
        self.list_dock = self._dock("Images", panel, Qt.LeftDockWidgetArea)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.hover_label = QLabel("", self)
        self.busy_bar = QProgressBar(self)
        self.busy_bar.setMaximumWidth(220)
        self.busy_bar.setVisible(False)
        self.busy_bar.setTextVisible(True)
        bar.addPermanentWidget(self.hover_label)
        bar.addPermanentWidget(self.busy_bar)

    def _build_actions(self) -> None:
        bar = self.menuBar()
        menus = {key: bar.addMenu(title) for key, title in
                 (("file", "&File"), ("edit", "&Edit"), ("view", "&View"), ("go", "&Go"))}
        undo = self.undo_stack.createUndoAction(self, "&Undo")
        undo.setShortcuts([QKeySequence("Ctrl+Z")])
        redo = self.undo_stack.createRedoAction(self, "&Redo")
        redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        for a in (undo, redo):
            self.addAction(a)
            menus["edit"].addAction(a)
        menus["edit"].addSeparator()
        canvas = self.canvas
        slots = {
            "file.open_annotations": self._choose_annotations, "file.open_predictions": self._choose_predictions,
            "file.predict_with_model": self._choose_model, "file.save": self.save, "file.quit": self.close,
            "edit.next_keypoint": self.editing.next_keypoint, "edit.cycle_visibility": self.editing.cycle_visibility,
            "edit.remove_point": self.editing.remove_point, "edit.swap_left_right": self.editing.swap_left_right,
            "edit.swap_twin": self.editing.swap_twin, "edit.cancel": self.editing.cancel_mode,
            "view.fit": canvas.zoom_fit, "view.actual_size": canvas.zoom_actual,
            "view.zoom_in": lambda: canvas.zoom_by(1.25), "view.zoom_out": lambda: canvas.zoom_by(0.8),
            "view.show_predictions": canvas.set_show_predictions, "view.worst_first": self.worst_first,
            "view.clear_filter": self.clear_filter,
            "go.next_image": lambda: self.step_image(1), "go.previous_image": lambda: self.step_image(-1),
        }
        for key, dx, dy in (("left", -1, 0), ("right", 1, 0), ("up", 0, -1), ("down", 0, 1)):
            slots[f"edit.nudge_{key}"] = lambda _=False, dx=dx, dy=dy: self.editing.nudge(dx, dy)
            slots[f"edit.nudge_{key}_10"] = lambda _=False, dx=dx, dy=dy: self.editing.nudge(10 * dx, 10 * dy)
        self.action_by_id = {**make_actions(self, slots, menus, canvas=canvas), "edit.undo": undo, "edit.redo": redo}
        self.action_by_id["view.show_predictions"].setChecked(True)
        self.save_action, self.show_pred_action = self.action_by_id["file.save"], self.action_by_id["view.show_predictions"]
        self.undo_action, self.redo_action = undo, redo
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

    # --- opening ------------------------------------------------------------------------

    def open_dataset(self, annotations: str | Path, predictions: str | Path | None = None,
                     model: str | Path | None = None) -> bool:
        """Load an annotation file (off the main thread); False if the user cancelled."""
        if not self.maybe_save():
            return False
        csv_path = Path(annotations).resolve()
        pred_path = Path(predictions).resolve() if predictions else None
        self.statusBar().showMessage(f"Loading {csv_path.name}…")
        # The list shows as soon as the annotations are read; predictions follow in a second job.
        self._pending_open = {"model": model, "predictions": pred_path}
        self.io_thread.submit(
            f"load {csv_path.name}", lambda ctx: load_data(csv_path),
            on_done=self._install, on_error=lambda msg: self._error("Cannot open the annotation file", msg))
        return True

    def _install(self, data: LoadedData) -> None:
        model = (self._pending_open or {}).get("model")
        pred_path = (self._pending_open or {}).get("predictions")
        self._pending_open = None
        if self.doc is not None:
            self.doc.close()
        root = dataset_root_of(data.csv_path)
        workspace = Workspace(root, state_dir_for(root))
        doc = AnnotationDocument(data.annotations, data.csv_path, workspace)
        doc.rowsChanged.connect(self._on_rows_changed)
        doc.predictionsChanged.connect(self._on_predictions_changed)
        doc.journalFailed.connect(self._on_journal_failed)
        self.undo_stack.clear()
        self.doc = doc
        self.current_row = None
        self.editing.selected_k = None
        self.canvas.set_place_mode(None)
        self.list_model = ImageListModel(doc)
        self.list_model.viewChanged.connect(self._after_view_changed)
        self.list_view.setModel(self.list_model)
        self.list_view.selectionModel().currentRowChanged.connect(self._on_list_current)
        header = self.list_view.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.Interactive)
        for col, width in enumerate((150, 70, 56, 50, 64)):
            self.list_view.setColumnWidth(col, width)
        self.list_view.horizontalHeader().setSortIndicatorShown(False)
        self._reset_filter_widgets()  # a new model starts unfiltered
        self.problems.show_problems(data.annotations.problems)
        self.problems_dock.setWindowTitle(f"Problems ({len(data.annotations.problems)})")
        if data.annotations.problems:
            self.problems_dock.raise_()
        self.charts.set_document(doc)
        self.error_box.blockSignals(True)
        self.error_box.setCurrentIndex(0)
        self.error_box.blockSignals(False)
        self.error_chart.set_index(doc.error_index)
        self.check_panel.set_index(doc.error_index)
        doc.error_index.changed.connect(self._update_check_title)
        doc.error_index.rowsUpdated.connect(self._update_check_title)
        self._update_check_title()
        self._remember_dataset(data.csv_path, str(pred_path) if pred_path else None)
        self._update_title()
        self._after_view_changed()
        n = len(doc)
        msg = f"Opened {data.csv_path.name}: {n} images"
        if data.annotations.problems:
            msg += f", {len(data.annotations.problems)} rows with problems (see the Problems panel)"
        self.statusBar().showMessage(msg, 8000)
        self._offer_restore()
        self.datasetOpened.emit()
        if pred_path is not None:
            self.load_predictions(pred_path)
        if model:
            self.predict_with_model(model)

    def _offer_restore(self) -> None:
        doc = self.doc
        pending = doc.pending_edits()
        if pending is None:
            return
        rows, coords, vis, unknown = doc.replayed_rows(pending)
        if np.array_equal(coords, doc.ann.coords[rows]) and np.array_equal(vis, doc.ann.visibility[rows]):
            # Edits that were all undone again: nothing to restore, nothing to ask.
            doc.discard_pending()
            return
        answer = self.restore_policy
        if answer == "ask":
            text = (f"{doc.csv_path.name} has unsaved edits from an earlier session "
                    f"({len(pending.edits)} edits on {len(rows)} images). Restore them?")
            if doc.base_changed(pending):
                text += "\n\nThe file has changed on disk since; the edits would be applied to the new version."
            if unknown:
                text += f"\n\n{len(set(unknown))} edited images are no longer in the file and will be skipped."
            box = QMessageBox(QMessageBox.Question, "Restore unsaved edits", text,
                              QMessageBox.Yes | QMessageBox.No, self)
            box.button(QMessageBox.Yes).setText("Restore")
            box.button(QMessageBox.No).setText("Discard")
            box.setDefaultButton(QMessageBox.Yes)
            answer = "restore" if box.exec() == QMessageBox.Yes else "discard"
        if answer == "restore":
            self.undo_stack.push(commands.restore_command(doc, rows, coords, vis))
            self.statusBar().showMessage(f"Restored {len(pending.edits)} unsaved edits on {len(rows)} images", 8000)
        else:
            kept = doc.discard_pending()
            self.statusBar().showMessage(f"Unsaved edits set aside in {kept}", 8000)

    def predict_with_model(self, model_path: str | Path) -> None:
        """Make a model package the data set's active model version and show its predictions: the
        saved ones when this version predicted before, else a fresh run that fills the list in."""
        doc = self.doc
        if doc is None:
            return
        if not doc.ann.has_keypoints:
            self._error("Cannot compare predictions", f"{doc.csv_path} has no keypoint columns.")
            return
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

    def load_predictions(self, path: str | Path) -> None:
        """Read and score a predictions CSV off the main thread; `predictionsReady` when shown."""
        doc = self.doc
        if doc is None:
            return
        path = Path(path).resolve()
        snapshot = doc.ann.subset(np.arange(len(doc)))  # the user may edit while it loads

        def job(ctx) -> tuple[Predictions, tuple[np.ndarray, np.ndarray]]:
            if not snapshot.has_keypoints:
                raise ValueError(f"{doc.csv_path} has no keypoint columns, predictions cannot be compared with it")
            aligned = align_to_annotations(snapshot, load_annotations(path), str(path), _scores_beside(path))
            return aligned, compute_errors(snapshot, aligned)

        def done(result) -> None:
            if self.doc is not doc:
                return
            aligned, (ne, errors) = result
            # Rows edited meanwhile were scored against old values: re-score just those.
            changed = np.flatnonzero((snapshot.coords != doc.ann.coords).any(axis=(1, 2))
                                     | (snapshot.visibility != doc.ann.visibility).any(axis=1))
            if len(changed):
                ne[changed], errors[changed] = compute_errors(doc.ann, aligned, changed)
            doc.set_predictions(aligned, (ne, errors))
            self._remember_dataset(doc.csv_path, aligned.source)
            self.statusBar().showMessage(f"Predictions: {path.name}", 6000)
            self.predictionsReady.emit()

        self.io_thread.submit(f"load {path.name}", job, on_done=done,
                              on_error=lambda msg: self._error("Cannot use the predictions", f"{path}: {msg}"))

    def _choose_model(self) -> None:
        if self.doc is None:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Predict with model", "", "FKP model (*.fkpmodel);;All files (*)")
        if path:
            self.predict_with_model(path)

    # --- list ---------------------------------------------------------------------------

    def _filter_with(self, **changes) -> None:
        if self.list_model is None:
            return
        flt = ListFilter(**{**self.list_model.filter.__dict__, **changes})
        self.list_model.set_filter(flt)

    def _filter_keypoint(self, k: int) -> None:
        self._filter_with(keypoint=k, ne_range=None)
        self.worst_first()

    def _filter_category(self, c: int) -> None:
        self.category_box.setCurrentIndex(c + 1)  # triggers the filter

    def filter_error_type(self, kind: str | None) -> None:
        """Show only images with this error type ("inversion", ..., "check_annotation"; None: all)."""
        self.error_box.setCurrentIndex(self.error_box.findData(kind))  # triggers the filter

    def _filter_error_on_keypoint(self, kind: str, k: int) -> None:
        self.error_box.blockSignals(True)
        self.error_box.setCurrentIndex(max(self.error_box.findData(kind), 0))
        self.error_box.blockSignals(False)
        self._filter_with(error_type=kind, keypoint=k, ne_range=None)
        self.worst_first()

    def go_to_point(self, row: int, k: int) -> None:
        """Show image `row` (clearing the filter if it hides it) with keypoint k selected."""
        if self.list_model is None:
            return
        if self.list_model.view_row(row) < 0:
            self.clear_filter()
        self.list_view.selectRow(self.list_model.view_row(row))
        self.list_view.scrollTo(self.list_model.index(self.list_model.view_row(row), 0))
        if self.current_row == row:
            self.editing.select_keypoint(k)

    def _update_check_title(self, _rows=None) -> None:
        n = self.doc.error_index.suspect_count() if self.doc is not None else 0
        self.check_dock.setWindowTitle(f"Check annotation ({n})" if n else "Check annotation")

    def clear_filter(self) -> None:
        self._reset_filter_widgets()
        if self.list_model is not None:
            self.list_model.set_filter(ListFilter())

    def _reset_filter_widgets(self) -> None:
        """Show "no filter" in every filter widget, without firing their change handlers."""
        for widget, reset in ((self.category_box, lambda: self.category_box.setCurrentIndex(0)),
                              (self.error_box, lambda: self.error_box.setCurrentIndex(0)),
                              (self.search, self.search.clear),
                              (self.edited_box, lambda: self.edited_box.setChecked(False))):
            widget.blockSignals(True)
            reset()
            widget.blockSignals(False)

    def worst_first(self) -> None:
        if self.list_model is None:
            return
        self.list_model.worst_first()
        self.list_view.horizontalHeader().setSortIndicator(COL_NE, Qt.DescendingOrder)
        self.list_view.horizontalHeader().setSortIndicatorShown(True)
        self.list_view.selectRow(0)
        self.list_view.scrollToTop()

    def _after_view_changed(self) -> None:
        model = self.list_model
        flt = model.filter
        extra = ListFilter(ne_range=flt.ne_range, keypoint=flt.keypoint).describe()
        self.filter_label.setText(f"Filter: {extra}" if extra else "")
        any_filter = bool(flt.describe())
        self.clear_filter_button.setVisible(any_filter)
        self.count_label.setText(f"{model.rowCount()} of {len(model.doc)} images")
        row = model.view_row(self.current_row) if self.current_row is not None else -1
        if row < 0 and model.rowCount():
            row = 0
        if row >= 0:
            self.list_view.selectRow(row)
            self.list_view.scrollTo(model.index(row, 0))
        elif not model.rowCount():
            self.list_view.clearSelection()

    def _on_list_current(self, current, _previous) -> None:
        if current.isValid() and self.list_model is not None:
            row = self.list_model.data_row(current.row())
            if row != self.current_row:  # a re-sort moves the current image, it does not change it
                self.show_row(row)

    def step_image(self, delta: int) -> None:
        if self.list_model is None or not self.list_model.rowCount():
            return
        row = self.list_view.currentIndex().row()
        row = min(max(row + delta, 0), self.list_model.rowCount() - 1)
        self.list_view.selectRow(row)
        self.list_view.scrollTo(self.list_model.index(row, 0))

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
        self._prefetch()
        self._update_title()

    def _prefetch(self) -> None:
        model = self.list_model
        view_row = self.list_view.currentIndex().row()
        for d in (1, 2, -1):
            r = view_row + d
            if 0 <= r < model.rowCount():
                self.loader.request(str(self.doc.image_path(model.data_row(r))))

    def _on_image_loaded(self, path: str, image: QImage) -> None:
        if self.doc is not None and self.current_row is not None and path == str(self.doc.image_path(self.current_row)):
            self.canvas.set_image(QPixmap.fromImage(image))
            self.imageShown.emit(self.current_row)

    def _on_image_failed(self, path: str, reason: str) -> None:
        if self.doc is not None and self.current_row is not None and path == str(self.doc.image_path(self.current_row)):
            self.canvas.set_image(None, _unavailable(reason))
            self.imageShown.emit(self.current_row)

    def refresh_points(self) -> None:
        doc, row = self.doc, self.current_row
        p = doc.predictions
        has_pred = p is not None and p.present[row]
        self.canvas.set_points(doc.categories[row], doc.ann.coords[row], doc.ann.visibility[row],
                               p.coords[row] if has_pred else None, p.visibility[row] if has_pred else None)
        self.canvas.set_selected(self.editing.selected_k)
        self.keypoint_table.show_row(doc, row, self.editing.selected_k)

    def _on_rows_changed(self, rows: np.ndarray) -> None:
        if self.current_row is not None and self.current_row in set(np.asarray(rows).tolist()):
            self.refresh_points()

    def _on_predictions_changed(self) -> None:
        if self.current_row is not None:
            self.refresh_points()
        self.worst_first()

    # --- editing ------------------------------------------------------------------------

    def _on_journal_failed(self, message: str) -> None:
        self.statusBar().showMessage(message, 15000)
        if not self._journal_warned:
            self._journal_warned = True
            self._error("Edits are not being journaled", message)

    # --- saving -------------------------------------------------------------------------

    def save(self) -> bool:
        """Save the annotation file; on failure say why and keep every edit."""
        if self.doc is None:
            return True
        try:
            self.doc.save()
        except (OSError, ValueError) as e:
            reason = f"{e.strerror}: {e.filename}" if isinstance(e, OSError) and e.strerror else str(e)
            self._error("Could not save", f"{self.doc.csv_path} was not saved ({reason}).\n\n"
                        "Your edits are kept, in memory and in the edit journal.")
            return False
        self.undo_stack.setClean()
        self.setWindowModified(False)
        self.statusBar().showMessage(f"Saved {self.doc.csv_path}", 6000)
        return True

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
            self.doc.discard_pending()  # renamed aside, so nothing is offered for restore
            self.undo_stack.clear()
            return True
        return False

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.maybe_save():
            event.ignore()
            return
        self._save_settings()
        self.model_thread.shutdown(timeout=2)
        self.io_thread.shutdown(timeout=2)
        self.loader.wait(2000)
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
            image = f" — {str(self.doc.ann.image_ids[self.current_row]).rsplit('/', 1)[-1]}"
        self.setWindowTitle(f"{self.doc.csv_path.name}[*]{image} — {APP_TITLE}")

    def _update_busy(self, _busy: bool = False) -> None:
        busy = self.io_thread.busy or self.model_thread.busy
        self.busy_bar.setVisible(busy)
        if busy:
            self.busy_bar.setRange(0, 0)
            self.busy_bar.setFormat("working…")

    def _on_progress(self, done: float, total: float, message: str) -> None:
        self.busy_bar.setVisible(True)
        if total:
            self.busy_bar.setRange(0, int(total))
            self.busy_bar.setValue(int(done))
            self.busy_bar.setFormat(f"{message} %v/%m")

    def _error(self, title: str, message: str) -> None:
        self.statusBar().showMessage(message.splitlines()[0], 15000)
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

    def _remember_dataset(self, csv_path: Path, predictions: str | None) -> None:
        s = QSettings()
        s.setValue("last/annotations", str(csv_path))
        s.setValue("last/predictions", predictions if predictions and Path(predictions).is_file() else "")


def _unavailable(reason: str) -> str:
    return f"Image not available — the points are still shown and editable.\n{reason}"


def last_dataset() -> tuple[str | None, str | None]:
    """The annotation and predictions files open when the studio last closed."""
    s = QSettings()
    ann = s.value("last/annotations") or None
    pred = s.value("last/predictions") or None
    return (ann if ann and Path(ann).is_file() else None), (pred if pred and Path(pred).is_file() else None)


def _scores_beside(predictions_csv: Path) -> tuple[list[str], np.ndarray] | None:
    """The confidences saved beside a predictions CSV; None when there are none or they cannot
    be read (that only costs "Check annotation" its confidence criterion)."""
    path = scores_path(predictions_csv)
    try:
        return load_scores(path) if path.is_file() else None
    except ValueError:
        return None
