"""The main window composes the studio and wires it; it runs no flow of its own.

One `StudioState` (models/state.py) is shared by everything. The controllers (controllers/) own
the flows and are given the state (and, to ask the user something, `views.questions.Questions`);
the views (views/) draw what the state and the document emit and emit the user's intents. This
window builds both, connects intents to controllers and state signals to views, and keeps only
what a window is: docks, menus from the action table, the toolbar, its title and settings.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QKeySequence
from PySide6.QtWidgets import QComboBox, QDockWidget, QMainWindow, QMessageBox, QWidget

from engine.io.messages import shorten
from engine.schema import CATEGORIES
from fkp_studio.controllers.editing import EditingController
from fkp_studio.controllers.hard_set import HardSetController
from fkp_studio.controllers.opening import OpeningController
from fkp_studio.controllers.predict import PredictController
from fkp_studio.controllers.refine import RefineController
from fkp_studio.controllers.retrain import RetrainController
from fkp_studio.controllers.review import ReviewController
from fkp_studio.controllers.saving import SavingController
from fkp_studio.models.document import AnnotationDocument
from fkp_studio.models.image_loader import ImageLoader
from fkp_studio.models.state import StudioState
from fkp_studio.views.actions import TOOLBAR, make_actions
from fkp_studio.views.canvas import KeypointCanvas
from fkp_studio.views.charts import DatasetCharts, ErrorTypeChart
from fkp_studio.views.current_image import CurrentImageView
from fkp_studio.views.hard_set_panel import HardSetPanel
from fkp_studio.views.keypoint_table import KeypointTable
from fkp_studio.views.list_panel import ImageListPanel
from fkp_studio.views.panels import CheckAnnotationPanel, ProblemsPanel
from fkp_studio.views.questions import Questions
from fkp_studio.views.status_bar import StudioStatusBar
from fkp_studio.views.text_fields import keep_keys_in_text_fields

APP_TITLE = "FKP Studio"


class MainWindow(QMainWindow):
    """The studio window. Open a data set with `open_dataset`; everything else is interactive."""

    datasetOpened = Signal()
    imageShown = Signal(int)  # data row, once its image (or placeholder) is on the canvas
    predictionsReady = Signal()
    firstFrameShown = Signal()  # the window has painted once: slow starts may begin

    def __init__(self):
        super().__init__()
        self.state = state = StudioState(self)
        self.undo_stack, self.io_thread, self.model_thread = state.undo_stack, state.io_thread, state.model_thread
        self.questions = Questions(self)
        self.saving = SavingController(state, self.questions)
        self.opening = OpeningController(state, self.questions, self.saving)
        self.editing = EditingController(state)
        self.review = ReviewController(state, self.questions)
        self.predict = PredictController(state, self.questions)
        self.hard_set = HardSetController(state)
        self.retrain = RetrainController(state, self.predict)
        self.refine = RefineController(state)
        self.retrain_dialog = None

        self.status_bar = StudioStatusBar(self)
        self.setStatusBar(self.status_bar)
        self.canvas = KeypointCanvas(self)
        self.setCentralWidget(self.canvas)
        self.list_panel = ImageListPanel(self)
        self.keypoint_table = KeypointTable(self)
        self._build_docks()
        self._build_actions()
        self._build_toolbar()
        self.loader = ImageLoader(parent=self)
        self.current_image = CurrentImageView(state, self.canvas, self.keypoint_table, self.category_combo,
                                              self.loader, self.list_panel.neighbour_rows)
        self._wire()
        keep_keys_in_text_fields(self)  # review keys act on the canvas and the list, never from a text field
        self._update_title()
        self.charts.refresh()
        # Importing torch holds the GIL for seconds: begun before the first paint, the window
        # stayed black that long.
        self._first_frame = False
        self.firstFrameShown.connect(self.predict.find_device)
        self._restore_settings()

    def paintEvent(self, event) -> None:
        super().paintEvent(event)
        if not self._first_frame:
            self._first_frame = True
            QTimer.singleShot(0, self.firstFrameShown.emit)  # once this frame is on the screen

    @property
    def doc(self) -> AnnotationDocument | None:
        return self.state.doc

    @property
    def current_row(self) -> int | None:
        return self.state.current_row

    @property
    def list_model(self):
        return self.state.list_model

    # --- layout -------------------------------------------------------------------------

    def add_dock(self, title: str, widget: QWidget, area) -> QDockWidget:
        """A dock named `title` holding `widget` (its object name keeps its place across runs)."""
        dock = QDockWidget(title, self)
        dock.setObjectName(title.replace(" ", "_").lower() + "_dock")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_docks(self) -> None:
        panel = self.list_panel
        self.list_dock = self.add_dock("Images", panel, Qt.LeftDockWidgetArea)
        self.keypoint_dock = self.add_dock("Keypoints", self.keypoint_table, Qt.RightDockWidgetArea)
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
        self.check_dock = self.add_dock("Check annotation", self.check_panel, Qt.BottomDockWidgetArea)
        self.tabifyDockWidget(self.charts_dock, self.check_dock)
        self.charts_dock.raise_()
        self.hard_set_panel = HardSetPanel(self.state, self)
        self.hard_set_dock = self.add_dock("Hard set", self.hard_set_panel, Qt.RightDockWidgetArea)

    def _build_actions(self) -> None:
        """Menus and shortcuts from the action table (`views/actions.py`), each to its controller."""
        bar = self.menuBar()
        menus = {key: bar.addMenu(title) for key, title in
                 (("file", "&File"), ("edit", "&Edit"), ("review", "&Review"), ("view", "&View"), ("go", "&Go"),
                  ("model", "&Model"), ("help", "&Help"))}
        undo = self.undo_stack.createUndoAction(self, "&Undo")
        undo.setShortcuts([QKeySequence("Ctrl+Z")])
        redo = self.undo_stack.createRedoAction(self, "&Redo")
        redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        # The toolbar buttons keep their words (and their places); what they undo is the tip,
        # which follows the action's text ("Undo Move …").
        undo.setIconText("Undo")
        redo.setIconText("Redo")
        for a in (undo, redo):
            self.addAction(a)
            menus["edit"].addAction(a)
        menus["edit"].addSeparator()
        canvas, panel, editing, review, opening = self.canvas, self.list_panel, self.editing, self.review, self.opening
        predict, hard = self.predict, self.hard_set
        slots = {
            "file.open_annotations": opening.choose_annotations, "file.open_predictions": opening.choose_predictions,
            "file.new_from_images": opening.choose_images,
            "file.predict_with_model": lambda: predict.choose_model(self.questions.model_file()) if self.doc else None,
            "file.save": self.saving.save, "file.quit": self.close,
            "edit.next_keypoint": editing.next_keypoint, "edit.cycle_visibility": editing.cycle_visibility,
            "edit.remove_point": editing.remove_point, "edit.swap_left_right": editing.swap_left_right,
            "edit.swap_twin": editing.swap_twin, "edit.cancel": editing.cancel_mode,
            "edit.cycle_category": editing.cycle_category,
            # Enter waits while the image is predicted again with a new category (never the old crosses).
            "review.accept": lambda: None if self.state.waits_for_prediction() else review.accept_image(), "review.skip": review.skip_image,
            "review.next_unreviewed": review.next_unreviewed,
            "review.add_to_training_file": review.add_reviewed_to_training_file,
            "view.fit": canvas.zoom_fit, "view.actual_size": canvas.zoom_actual,
            "view.zoom_in": lambda: canvas.zoom_by(1.25), "view.zoom_out": lambda: canvas.zoom_by(0.8),
            "view.show_predictions": canvas.set_show_predictions, "view.worst_first": panel.worst_first,
            "view.refine": self.refine.set_enabled,
            "view.clear_filter": panel.clear_filter,
            "go.next_image": lambda: panel.step(1), "go.previous_image": lambda: panel.step(-1),
            "model.predict_all": predict.predict_all, "model.predict_selection": predict.predict_selection,
            "model.cancel_prediction": predict.cancel, "model.evaluate": predict.evaluate,
            "model.add_to_hard_set": hard.add_current, "model.add_worst": self.hard_set_panel.request_add_worst,
            "model.retrain": self.open_retrain_dialog,
            "help.shortcuts": self.show_shortcuts,
        }
        for c in range(len(CATEGORIES)):
            slots[f"edit.category_{c}"] = lambda _=False, c=c: editing.set_category(c)
        for key, dx, dy in (("left", -1, 0), ("right", 1, 0), ("up", 0, -1), ("down", 0, 1)):
            slots[f"edit.nudge_{key}"] = lambda _=False, dx=dx, dy=dy: editing.nudge(dx, dy)
            slots[f"edit.nudge_{key}_10"] = lambda _=False, dx=dx, dy=dy: editing.nudge(10 * dx, 10 * dy)
        self.action_by_id = {**make_actions(self, slots, menus, canvas=canvas), "edit.undo": undo, "edit.redo": redo}
        self.action_by_id["view.show_predictions"].setChecked(True)
        self.action_by_id["view.refine"].setChecked(self.refine.enabled)
        menus["view"].addSeparator()
        for dock in (self.list_dock, self.keypoint_dock, self.charts_dock, self.problems_dock, self.check_dock):
            menus["view"].addAction(dock.toggleViewAction())
        menus["model"].addAction(self.hard_set_dock.toggleViewAction())

    def _build_toolbar(self) -> None:
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

    def _wire(self) -> None:
        """Views' intents to controllers and the state; the state's signals to views."""
        state, status, editing = self.state, self.status_bar, self.editing
        # Through the attribute, so a test or a script can answer errors itself.
        state.error.connect(lambda title, text: self.show_error(title, text))
        state.message.connect(status.showMessage)
        state.progress.connect(status.show_progress)
        for thread in (state.io_thread, state.model_thread):
            thread.busyChanged.connect(lambda _b: status.set_busy(state.io_thread.busy or state.model_thread.busy))
        state.documentChanged.connect(self._install)
        state.datasetOpened.connect(self.datasetOpened)
        state.predictionsShown.connect(self.predictionsReady)
        state.currentRowChanged.connect(lambda _row: self._update_title())
        state.rowRequested.connect(self.list_panel.go_to)
        state.undo_stack.cleanChanged.connect(lambda clean: self.setWindowModified(not clean))
        self.list_panel.rowActivated.connect(state.set_current_row)
        self.current_image.imageShown.connect(self.imageShown)
        self.keypoint_table.keypointClicked.connect(editing.select_keypoint)
        self.canvas.pointDragged.connect(editing.move)
        self.canvas.pointClicked.connect(editing.select_keypoint)
        self.canvas.placeRequested.connect(editing.place)
        self.canvas.predictionAccepted.connect(editing.accept_point)
        self.canvas.predictionDragged.connect(editing.accept_point_at)
        self.refine.refined.connect(lambda _row, before: self.canvas.show_refinement(before))
        state.currentRowChanged.connect(lambda _row: self.canvas.show_refinement(None))
        self.canvas.hovered.connect(status.hover_label.setText)
        self.check_panel.suspectClicked.connect(editing.go_to_point)
        panel = self.hard_set_panel
        panel.addCurrentRequested.connect(self.hard_set.add_current)
        panel.addWorstRequested.connect(self.hard_set.add_worst)
        panel.removeRequested.connect(self.hard_set.remove_ids)
        panel.retrainRequested.connect(self.open_retrain_dialog)
        panel.imageActivated.connect(lambda row: editing.go_to_point(row, 0))
        panel.titleChanged.connect(self.hard_set_dock.setWindowTitle)
        status.cancel_button.clicked.connect(self.predict.cancel)
        self.predict.runningChanged.connect(status.cancel_button.setVisible)
        self.predict.deviceFound.connect(status.set_device)

    def _install(self, doc: AnnotationDocument) -> None:
        """A document was opened: point the list, the panels and the charts at it."""
        self.list_panel.set_model(self.state.list_model)
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
        doc.rowsChanged.connect(lambda _rows: self.status_bar.show_review_count(self.doc))
        self._update_check_title()
        self.status_bar.show_review_count(doc)
        self._update_title()

    # --- what scripts and tests call ----------------------------------------------------

    def open_dataset(self, annotations: str | Path, predictions: str | Path | None = None,
                     model: str | Path | None = None) -> bool:
        """Load an annotation file (off the main thread); False if the user cancelled."""
        return self.opening.open_dataset(annotations, predictions, model)

    def open_images(self, images_dir: str | Path, model: str | Path | None = None,
                    predictions: str | Path | None = None) -> bool:
        """New annotations for a folder of images; False if the user cancelled."""
        return self.opening.open_images(images_dir, model, predictions)

    def save(self) -> bool:
        return self.saving.save()

    def has_unsaved_edits(self) -> bool:
        return self.state.has_unsaved_edits()

    def open_retrain_dialog(self):
        """The retrain dialog (made once), wired to the retrain controller, back at its settings."""
        if self.doc is None:
            return None
        if self.retrain_dialog is None:
            # matplotlib's Agg canvas loads with the first dialog, not at start.
            from fkp_studio.views.retrain_dialog import RetrainDialog

            dialog = self.retrain_dialog = RetrainDialog(self.state, self)
            retrain = self.retrain
            dialog.startRequested.connect(retrain.start)
            dialog.cancelRequested.connect(retrain.cancel)
            dialog.acceptRequested.connect(retrain.accept_version)
            dialog.discardRequested.connect(retrain.discard_version)
            retrain.started.connect(dialog.on_started)
            retrain.lossReported.connect(dialog.on_loss)
            retrain.progressed.connect(dialog.on_progress)
            retrain.retrainFinished.connect(dialog.on_finished)
            retrain.retrainFailed.connect(dialog.on_failed)
        self.retrain_dialog.reset()
        self.retrain_dialog.show()
        self.retrain_dialog.raise_()
        return self.retrain_dialog

    def show_shortcuts(self) -> None:
        """The shortcut sheet, built from the actions bound now."""
        from fkp_studio.views.shortcut_sheet import ShortcutSheet

        self.shortcut_sheet = ShortcutSheet(self.action_by_id.values(), self)
        self.shortcut_sheet.show()

    # --- title, errors, closing ---------------------------------------------------------

    def _update_check_title(self, _rows=None) -> None:
        n = self.doc.error_index.suspect_count() if self.doc is not None else 0
        self.check_dock.setWindowTitle(f"Check annotation ({n})" if n else "Check annotation")

    def _update_title(self) -> None:
        doc, row = self.doc, self.current_row
        if doc is None:
            self.setWindowTitle(f"{APP_TITLE}[*]")
            return
        image = f" — {shorten(str(doc.ann.image_ids[row]).rsplit('/', 1)[-1], 80)}" if row is not None else ""
        read_only = " (read-only)" if doc.read_only else ""
        self.setWindowTitle(f"{doc.csv_path.name}[*]{read_only}{image} — {APP_TITLE}")

    def show_error(self, title: str, message: str) -> None:
        self.status_bar.show_text(message or title, 15000)
        QMessageBox.critical(self, title, message)

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.saving.maybe_save():
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

    def _restore_settings(self) -> None:
        s = QSettings()
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(self._default_size())
        refine = s.value("view/refine", True, type=bool)
        self.refine.set_enabled(refine)
        self.action_by_id["view.refine"].setChecked(refine)
        state = s.value("window/state")
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state)
        else:
            # Wide enough for every column (measured in the font), the rest for the image.
            self.resizeDocks([self.list_dock, self.keypoint_dock],
                             [self.list_panel.needed_width(), self.keypoint_table.needed_width()], Qt.Horizontal)
            self.resizeDocks([self.charts_dock], [230], Qt.Vertical)

    def _default_size(self) -> QSize:
        """Both docks' columns whole and an image of at least 560 px beside them, within the screen."""
        wanted = QSize(self.list_panel.needed_width() + self.keypoint_table.needed_width() + 560, 900)
        screen = self.screen().availableGeometry().size() if self.screen() is not None else wanted
        return wanted.boundedTo(screen * 0.95).expandedTo(QSize(1200, 800).boundedTo(screen))

    def _save_settings(self) -> None:
        s = QSettings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("view/refine", self.refine.enabled)
        s.sync()
