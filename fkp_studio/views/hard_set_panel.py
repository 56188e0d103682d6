"""The "Hard set" dock: the hard set's images (filterable by reason) with their NE, the set's
size and NE, and the buttons that ask for changes (add the current image, add the worst N by NE,
remove the selected ones, retrain). It draws the state's hard set and emits the user's intents;
the hard-set controller makes the changes."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QHBoxLayout, QLabel, QPushButton, QSpinBox,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from engine.io.messages import shorten
from engine.io.workspace import HARD_REASONS, REMOVED
from fkp_studio.models.document import AnnotationDocument
from fkp_studio.models.state import StudioState

REASON_LABELS = {"worst-ne": "worst NE", "corrected": "corrected", "manual": "added"}


class HardSetPanel(QWidget):
    """The hard set's table and buttons."""

    addCurrentRequested = Signal()
    addWorstRequested = Signal(int, bool)   # n, per category
    removeRequested = Signal(list)          # image ids
    retrainRequested = Signal()
    imageActivated = Signal(int)            # data row double-clicked
    titleChanged = Signal(str)              # "Hard set (n)", for the dock

    def __init__(self, state: StudioState, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(self._build_buttons())
        layout.addLayout(self._build_worst_row())
        self.table = self._build_table()
        layout.addWidget(self.table, 1)
        self.summary = QLabel("", self)
        layout.addWidget(self.summary)
        self.retrain_button = QPushButton("Retrain on hard samples…", self)
        self.retrain_button.clicked.connect(self.retrainRequested)
        layout.addWidget(self.retrain_button)
        state.hardSetChanged.connect(self.refresh)
        state.documentChanged.connect(self._follow)

    def _build_buttons(self) -> QHBoxLayout:
        self.reason_box = QComboBox(self)
        self.reason_box.addItem("All reasons", None)
        for reason in HARD_REASONS:
            self.reason_box.addItem(REASON_LABELS[reason], reason)
        self.reason_box.currentIndexChanged.connect(lambda _i: self.refresh())
        self.add_button = QPushButton("Add current (H)", self)
        self.add_button.clicked.connect(self.addCurrentRequested)
        self.remove_button = QPushButton("Remove", self)
        self.remove_button.clicked.connect(lambda: self.removeRequested.emit(self.selected_ids()))
        row = QHBoxLayout()
        row.addWidget(self.reason_box, 1)
        row.addWidget(self.add_button)
        row.addWidget(self.remove_button)
        return row

    def _build_worst_row(self) -> QHBoxLayout:
        self.worst_n = QSpinBox(self)
        self.worst_n.setRange(1, 100000)
        self.worst_n.setValue(20)
        self.per_category = QCheckBox("per category", self)
        self.worst_button = QPushButton("Add worst N by NE", self)
        self.worst_button.clicked.connect(self.request_add_worst)
        row = QHBoxLayout()
        row.addWidget(QLabel("N", self))
        row.addWidget(self.worst_n)
        row.addWidget(self.per_category)
        row.addWidget(self.worst_button, 1)
        return row

    def _build_table(self) -> QTableWidget:
        table = QTableWidget(0, 3, self)
        table.setHorizontalHeaderLabels(["Image", "Reason", "NE %"])
        table.setSelectionBehavior(QAbstractItemView.SelectRows)
        table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        table.verticalHeader().setVisible(False)
        table.horizontalHeader().setStretchLastSection(True)
        table.setSortingEnabled(True)
        table.cellDoubleClicked.connect(self._activated)
        return table

    def request_add_worst(self) -> None:
        """Ask for the worst N by NE, with the N and "per category" shown."""
        self.addWorstRequested.emit(self.worst_n.value(), self.per_category.isChecked())

    def selected_ids(self) -> list[str]:
        return sorted({self.table.item(i.row(), 0).data(Qt.UserRole) for i in self.table.selectionModel().selectedRows()})

    def _follow(self, doc: AnnotationDocument) -> None:
        """Draw again when the document's NE changes: a finished run, each batch, each edit."""
        doc.predictionsChanged.connect(self.refresh)
        doc.predictionsFilled.connect(lambda _rows: self._update_summary())
        self.refresh()

    def refresh(self) -> None:
        doc = self.state.doc
        wanted = self.reason_box.currentData()
        shown = [(i, r) for i, r in sorted(self.state.hard_set.entries.items())
                 if r != REMOVED and (wanted is None or r == wanted)]
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
        n = len(self.state.hard_members())
        ne = self.state.hard_ne()
        self.summary.setText(f"{n} images" + (f", NE {100 * ne:.2f} %" if np.isfinite(ne) else ""))
        self.titleChanged.emit(f"Hard set ({n})")

    def _activated(self, table_row: int, _col: int) -> None:
        image_id = self.table.item(table_row, 0).data(Qt.UserRole)
        doc = self.state.doc
        row = doc.ann.id_index().get(image_id) if doc is not None else None
        if row is not None:
            self.imageActivated.emit(row)
