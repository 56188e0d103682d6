"""The side panels that list things to look at: rows of the annotation file that could not be
parsed, and the suspected label errors ("Check annotation")."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

from engine.analysis.label_errors import Suspect
from engine.io.annotations import RowProblem
from engine.io.messages import shorten
from engine.schema import KEYPOINTS
from fkp_studio.models.error_index import ErrorTypeIndex, follow


def _read_only_list(table: QTableWidget, headers: tuple[str, ...]) -> None:
    """A table of whole rows, read only, compact."""
    table.setHorizontalHeaderLabels(headers)
    table.setEditTriggers(QAbstractItemView.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectRows)
    table.setWordWrap(False)
    table.verticalHeader().setVisible(False)
    table.verticalHeader().setDefaultSectionSize(22)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.Interactive)
    table.horizontalHeader().setStretchLastSection(True)


class ProblemsPanel(QTableWidget):
    """Lists each `RowProblem` with its line number; those rows are kept verbatim on save."""

    HEADERS = ("Line", "Image", "Column", "Problem", "Row as read")

    def __init__(self, parent: QWidget | None = None):
        super().__init__(0, len(self.HEADERS), parent)
        _read_only_list(self, self.HEADERS)

    def show_problems(self, problems: list[RowProblem]) -> None:
        problems = sorted(problems, key=lambda p: p.line)  # file order
        self.setRowCount(len(problems))
        for i, p in enumerate(problems):
            cells = (QTableWidgetItem(str(p.line)), QTableWidgetItem(shorten(p.image_id or "")),
                     QTableWidgetItem(shorten(p.column or "")), QTableWidgetItem(shorten(p.reason, 300)),
                     QTableWidgetItem(shorten(p.raw, 500)))
            for col, item in enumerate(cells):
                item.setToolTip(p.raw[:2000] if col == 4 else item.text())
                self.setItem(i, col, item)
        self.resizeColumnsToContents()
        for col in (1, 3):
            self.setColumnWidth(col, min(self.columnWidth(col), 320))


class CheckAnnotationPanel(QTableWidget):
    """The suspected label errors; clicking one asks to show that image and point."""

    suspectClicked = Signal(int, int)  # data row, keypoint
    HEADERS = ("Image", "Keypoint", "Why", "Reason")

    def __init__(self, parent: QWidget | None = None):
        super().__init__(0, len(self.HEADERS), parent)
        _read_only_list(self, self.HEADERS)
        self.index: ErrorTypeIndex | None = None
        self.shown: list[Suspect] = []
        self.cellClicked.connect(self._on_click)

    def set_index(self, index: ErrorTypeIndex | None) -> None:
        self.index = index
        follow(self, index)
        self.refresh()

    def refresh(self) -> None:
        self.shown = self.index.all_suspects() if self.index is not None else []
        self.setRowCount(len(self.shown))
        for i, s in enumerate(self.shown):
            why = "left/right on the wrong side" if s.kind == "wrong_side" else "confident model, far"
            cells = (shorten(s.image_id.rsplit("/", 1)[-1]), s.keypoint, why, shorten(s.reason, 300))
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(shorten(s.image_id, 1000) if col == 0 else text)
                self.setItem(i, col, item)
        self.resizeColumnsToContents()
        self.setColumnWidth(0, min(self.columnWidth(0), 220))

    def _on_click(self, row: int, _col: int) -> None:
        s = self.shown[row]
        self.suspectClicked.emit(s.row, KEYPOINTS.index(s.keypoint))
