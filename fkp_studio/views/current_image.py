"""The image on show: its picture on the canvas (decoded off the main thread by the image
loader, neighbours prefetched), its points and predictions, the keypoint table, the category
box and the selected keypoint. It draws what the state and the document emit; it changes nothing."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QComboBox

from engine.io.messages import shorten
from fkp_studio.models.document import AnnotationDocument
from fkp_studio.models.image_loader import ImageLoader
from fkp_studio.models.state import StudioState
from fkp_studio.views.canvas import KeypointCanvas
from fkp_studio.views.keypoint_table import KeypointTable


class CurrentImageView(QObject):
    """Draws the state's current image on the canvas, the keypoint table and the category box."""

    imageShown = Signal(int)  # data row, once its image (or placeholder) is on the canvas

    def __init__(self, state: StudioState, canvas: KeypointCanvas, table: KeypointTable, category_box: QComboBox,
                 loader: ImageLoader, neighbours: Callable[[], list[int]]):
        super().__init__(canvas)
        self.state, self.canvas, self.table, self.category_box = state, canvas, table, category_box
        self.loader, self.neighbours = loader, neighbours
        self._shown: int | None = None
        loader.loaded.connect(self._loaded)
        loader.failed.connect(lambda path, reason: self._loaded(path, None, reason))
        state.documentChanged.connect(self._follow)
        state.currentRowChanged.connect(self.show)
        state.selectionChanged.connect(self._selection_changed)
        state.redraw.connect(self.draw_points)

    def _follow(self, doc: AnnotationDocument) -> None:
        self._shown = None
        self.loader.root = doc.workspace.root
        self.canvas.set_place_mode(None)
        doc.rowsChanged.connect(self._rows_changed)
        doc.predictionsFilled.connect(self._rows_changed)
        doc.predictionsChanged.connect(lambda: self.draw_points() if self.state.current_row is not None else None)

    def show(self, row: int) -> None:
        """Show one image (data row) with its points; its picture when decoded."""
        doc = self.state.doc
        if doc is None:
            return
        if row != self._shown:
            self._shown = row
            self.canvas.request_fit()
            self.canvas.set_place_mode(None)
        self.draw_points()
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
        for r in self.neighbours():
            self.loader.request(str(doc.image_path(r)))

    def _loaded(self, path: str, image: QImage | None, reason: str = "") -> None:
        doc, row = self.state.doc, self.state.current_row
        if doc is None or row is None or path != str(doc.image_path(row)):
            return  # a prefetched neighbour, or an image the user has left
        self.canvas.set_image(QPixmap.fromImage(image) if image is not None else None,
                              None if image is not None else _unavailable(reason))
        self.imageShown.emit(row)

    def draw_points(self) -> None:
        """The current image's annotation and prediction on the canvas, in the table and the box."""
        s = self.state
        doc, row = s.doc, s.current_row
        if doc is None or row is None:
            return
        # An image without a category shows an empty box ("no category") until one is chosen.
        self.category_box.setCurrentIndex(-1 if doc.uncategorized[row] else int(doc.categories[row]))
        p = doc.predictions
        has_pred = p is not None and p.present[row]
        self.canvas.set_points(doc.categories[row], doc.ann.coords[row], doc.ann.visibility[row],
                               p.coords[row] if has_pred else None, p.visibility[row] if has_pred else None,
                               p.scores[row] if has_pred else None)
        self.canvas.set_selected(s.selected_k)
        self.table.show_row(doc, row, s.selected_k)

    def _rows_changed(self, rows: np.ndarray) -> None:
        row = self.state.current_row
        if row is not None and row in set(np.asarray(rows).tolist()):
            self.draw_points()

    def _selection_changed(self, k: int | None) -> None:
        """A selected keypoint that is absent waits for a click to place it."""
        s = self.state
        if k is None:
            self.canvas.set_place_mode(None)
            self.draw_points()
            return
        absent = s.doc.ann.visibility[s.current_row, k] < 0
        self.canvas.set_place_mode(k if absent else None)
        self.canvas.set_selected(k)
        self.table.select_keypoint(k)
        # The arrow keys now nudge this point (they belong to the focused canvas, not the list).
        self.canvas.setFocus()


def _unavailable(reason: str) -> str:
    return f"Image not available — the points are still shown and editable.\n{shorten(reason, 300)}"
