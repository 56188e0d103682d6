"""The one state the whole studio shares, as napari's `ViewerModel` is shared by its viewer.

`StudioState` holds the data-set session (and through it the open document), the image shown,
the selected keypoint, the undo stack, the two job threads and the hard set. Every change is a
Qt signal; controllers change the state, views draw what it (and the document) emit, and the
window only wires the two. `message` and `error` carry what the user should read: a controller
never reaches for a status bar or a message box.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from engine.io.review import REVIEW_STATES, REVIEWED
from engine.training.hard_set import HardSet
from fkp_studio.models.document import AnnotationDocument
from fkp_studio.models.engine_thread import EngineThread
from fkp_studio.models.image_list import ImageListModel
from fkp_studio.models.session import DatasetSession

# Where a retrain's oversampled images come from (the retrain dialog's "Train on").
TRAINING_SOURCES = ("hard", "reviewed")


class StudioState(QObject):
    """The session, the open document and its list model, the current image and keypoint, undo,
    jobs, hard set."""

    documentChanged = Signal(object)     # the AnnotationDocument just opened (views point at it)
    datasetOpened = Signal()             # after the opening flow (restore question included)
    currentRowChanged = Signal(object)   # the data row shown, or None
    selectionChanged = Signal(object)    # the selected keypoint of the current image, or None
    rowRequested = Signal(int)           # a flow asks the image list to go to this data row
    redraw = Signal()                    # draw the current image's points again (a refused drag)
    hardSetChanged = Signal()
    predictionsShown = Signal()          # a predictions file or a finished run is on show
    message = Signal(str, int)           # status text, milliseconds
    error = Signal(str, str)             # title, message (a message box)
    progress = Signal(float, float, str)  # done, total, what
    refinementSettled = Signal(bool)      # the refinement after a correction ended (True) or was dropped

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.undo_stack = QUndoStack(self)
        self.io_thread = EngineThread("io", self)
        self.model_thread = EngineThread("model", self)
        self.session = DatasetSession(self.io_thread, self)
        self.list_model: ImageListModel | None = None  # the open document's rows, filtered and sorted
        self.current_row: int | None = None
        self.selected_k: int | None = None
        self.hard_set = HardSet()
        self.predicting_rows: set[int] = set()  # images being predicted again after a category change
        self.refining_row: int | None = None    # the image whose refinement after a correction runs

    @property
    def doc(self) -> AnnotationDocument | None:
        return self.session.doc

    # --- the document -------------------------------------------------------------------

    def set_document(self, doc: AnnotationDocument) -> None:
        """A document was opened: a new list model, nothing shown or selected, no undo history;
        `documentChanged`."""
        self.list_model = ImageListModel(doc)
        self.undo_stack.clear()
        self.current_row = None
        self.selected_k = None
        self.documentChanged.emit(doc)

    def editable(self) -> bool:
        """Whether an image is shown and its file may be edited."""
        return self.doc is not None and self.current_row is not None and not self.doc.read_only

    def has_unsaved_edits(self) -> bool:
        return self.doc is not None and not self.undo_stack.isClean()

    # --- the current image and keypoint -------------------------------------------------

    def set_current_row(self, row: int) -> None:
        """Show image `row`: a new image has no keypoint selected."""
        if row != self.current_row:
            self.current_row = row
            self.selected_k = None
        self.currentRowChanged.emit(row)

    def select(self, k: int | None) -> None:
        """Select keypoint k of the current image (None: none)."""
        self.selected_k = None if k is None else int(k)
        self.selectionChanged.emit(self.selected_k)

    def waits_for_prediction(self) -> bool:
        """Whether the image on show is being predicted again with its new category (its old
        category's crosses are gone; accepting now would accept nothing): says so when it is."""
        if self.current_row is None or self.current_row not in self.predicting_rows:
            return False
        self.show_message("Predicting this image with its new category… Enter accepts once its crosses appear")
        return True

    def refining(self) -> bool:
        """Whether the image on show is being refined after a correction (Enter waits for it)."""
        return self.current_row is not None and self.current_row == self.refining_row

    def go_to(self, row: int) -> None:
        """Ask the image list to show data row `row` (it clears a filter that hides it)."""
        self.rowRequested.emit(int(row))

    # --- what the user reads ------------------------------------------------------------

    def show_message(self, text: str, ms: int = 6000) -> None:
        self.message.emit(text, ms)

    def show_error(self, title: str, text: str) -> None:
        self.error.emit(title, text)

    def show_progress(self, done: float, total: float, what: str) -> None:
        self.progress.emit(done, total, what)

    # --- the hard set and what a retrain trains on --------------------------------------

    def set_hard_set(self, hard_set: HardSet) -> None:
        self.hard_set = hard_set
        self.hardSetChanged.emit()

    def hard_members(self) -> list[str]:
        """The hard set's image ids (removed ones excluded)."""
        return self.hard_set.members()

    def hard_rows(self) -> np.ndarray:
        """The data rows of the hard set's images in the open document."""
        if self.doc is None:
            return np.zeros(0, np.int64)
        return self.hard_set.member_rows(self.doc.ann.id_index())

    def hard_ne(self) -> float:
        """Mean NE over the scored points of the hard set's images (NaN without predictions)."""
        if self.doc is None:
            return float("nan")
        return self.hard_set.ne(self.doc.ann.id_index(), self.doc.errors)

    def training_ids(self, source: str = "hard") -> list[str]:
        """The images a retrain oversamples: the hard set's ("hard") or every reviewed one ("reviewed")."""
        doc = self.doc
        if doc is None:
            return []
        if source == "reviewed":
            return doc.ids(reviewed_rows(doc))
        index = doc.ann.id_index()
        return [i for i in self.hard_members() if i in index]

    def trainable_rows(self) -> np.ndarray:
        """The rows a retrain can learn from: at least one annotated point (an image of new
        annotations nobody has touched teaches nothing) and a category (an uncategorized image's
        code is a placeholder)."""
        doc = self.doc
        if doc is None:
            return np.zeros(0, np.int64)
        return np.flatnonzero((doc.ann.visibility >= 0).any(axis=1) & ~doc.uncategorized)

    def split_trainable(self, source: str = "hard") -> tuple[list[str], list[str]]:
        """`training_ids(source)` split into (those a retrain learns from, those it leaves out)."""
        ids = self.training_ids(source)
        if not ids:
            return [], []
        usable = set(self.doc.ids(self.trainable_rows()))
        return [i for i in ids if i in usable], [i for i in ids if i not in usable]


def reviewed_rows(doc: AnnotationDocument) -> np.ndarray:
    """The rows marked reviewed that have a category (an image without one has no FashionAI row)."""
    return np.flatnonzero((doc.review == REVIEW_STATES.index(REVIEWED)) & ~doc.uncategorized)
