"""The per-image keypoint table: annotation, prediction and its confidence, error and visibility
of each point."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

from engine.analysis.error_types import ERROR_TYPES
from engine.schema import NUM_KEYPOINTS, category_keypoints
from fkp_studio.models.document import AnnotationDocument
from fkp_studio.views.palette import KEYPOINT_COLOURS, LOW_CONFIDENCE, LOW_CONFIDENCE_RING, TYPE_COLOURS
from fkp_studio.models.keypoint_names import keypoint_label
from fkp_studio.views.column_widths import column_widths, table_width

_VIS = {1: "visible", 0: "occluded", -1: "absent"}
HEADERS = ("Keypoint", "Annotation", "Prediction", "Conf.", "NE %", "Visibility", "Error type")
COL_PREDICTION, COL_CONFIDENCE, COL_NE, COL_VISIBILITY, COL_TYPE = 2, 3, 4, 5, 6
# The widest text each column shows; the keypoint's colour swatch sits before its name.
_SWATCH = "MM"
COLUMN_SAMPLES = ([_SWATCH + keypoint_label(k) for k in range(NUM_KEYPOINTS)], ("1024, 1024",), ("1024, 1024",),
                  ("0.99",), ("100.0",), tuple(_VIS.values()), ERROR_TYPES)


def _swatch(colour: QColor) -> QIcon:
    pix = QPixmap(12, 12)
    pix.fill(colour)
    return QIcon(pix)


class KeypointTable(QTableWidget):
    """One row per keypoint of the image's category; clicking a row selects that point."""

    keypointClicked = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(0, len(HEADERS), parent)
        self.setHorizontalHeaderLabels(HEADERS)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(22)
        # Widths measured once: ResizeToContents re-measures every cell on every change (slow).
        self.horizontalHeader().setSectionResizeMode(QHeaderView.Interactive)
        self.horizontalHeader().setStretchLastSection(True)
        self.column_widths = column_widths(self, HEADERS, COLUMN_SAMPLES)
        for col, width in enumerate(self.column_widths):
            self.setColumnWidth(col, width)
        self.setFocusPolicy(Qt.NoFocus)  # keys belong to the canvas and the list
        self.keypoints: list[int] = []
        self.cellClicked.connect(lambda row, _col: self.keypointClicked.emit(self.keypoints[row]))

    def needed_width(self) -> int:
        """The width that shows every column whole (the main window's default dock width)."""
        return table_width(self, self.column_widths)

    def show_row(self, doc: AnnotationDocument, row: int, selected: int | None) -> None:
        self.keypoints = list(category_keypoints(int(doc.categories[row])))
        self.setUpdatesEnabled(False)
        self.setRowCount(len(self.keypoints))
        a = doc.ann
        p = doc.predictions
        for i, k in enumerate(self.keypoints):
            v = int(a.visibility[row, k])
            ann = "—" if v < 0 else "%d, %d" % tuple(a.coords[row, k])
            score, pred_occluded = np.nan, False
            if p is not None and p.present[row] and p.visibility[row, k] >= 0:
                pred = "%d, %d" % tuple(p.coords[row, k])
                score, pred_occluded = p.scores[row, k], p.visibility[row, k] == 0
            else:
                pred = "—"
            err = doc.errors[row, k]
            kind = doc.error_index.type_of(row, k)
            cells = (keypoint_label(k), ann, pred, f"{score:.2f}" if score >= 0 else "—",
                     "—" if np.isnan(err) else f"{err * 100:.1f}", _VIS[v], kind)
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 0:
                    item.setIcon(_swatch(KEYPOINT_COLOURS[k]))
                if col == COL_PREDICTION and pred_occluded:
                    font = item.font()
                    font.setItalic(True)
                    item.setFont(font)
                    item.setToolTip("predicted occluded (accepted as occluded)")
                if col == COL_CONFIDENCE:
                    item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                    if score < LOW_CONFIDENCE:
                        item.setForeground(LOW_CONFIDENCE_RING)
                if col == COL_NE:
                    item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                    if not np.isnan(err) and err > 0.10:
                        item.setForeground(QColor(220, 70, 60))
                if col == COL_VISIBILITY and v < 0:
                    item.setForeground(QColor(140, 140, 140))
                if col == COL_TYPE and kind:
                    item.setForeground(TYPE_COLOURS[kind])
                self.setItem(i, col, item)
        self.setUpdatesEnabled(True)
        self.select_keypoint(selected)

    def select_keypoint(self, k: int | None) -> None:
        self.blockSignals(True)
        if k in self.keypoints:
            self.selectRow(self.keypoints.index(k))
        else:
            self.clearSelection()
        self.blockSignals(False)
