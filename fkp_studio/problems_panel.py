"""The problems panel: rows of the annotation file the loader could not parse."""

from __future__ import annotations

from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

from engine.io.annotations import RowProblem

HEADERS = ("Line", "Image", "Column", "Problem", "Row as read")


class ProblemsPanel(QTableWidget):
    """Lists each `RowProblem` with its line number; those rows are kept verbatim on save."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(0, len(HEADERS), parent)
        self.setHorizontalHeaderLabels(HEADERS)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setWordWrap(False)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(22)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.Interactive)
        header.setStretchLastSection(True)

    def show_problems(self, problems: list[RowProblem]) -> None:
        problems = sorted(problems, key=lambda p: p.line)  # file order
        self.setRowCount(len(problems))
        for i, p in enumerate(problems):
            cells = (QTableWidgetItem(str(p.line)), QTableWidgetItem(p.image_id or ""), QTableWidgetItem(p.column or ""),
                     QTableWidgetItem(p.reason), QTableWidgetItem(p.raw[:500]))
            for col, item in enumerate(cells):
                item.setToolTip(p.raw[:2000] if col == 4 else item.text())
                self.setItem(i, col, item)
        self.resizeColumnsToContents()
        for col in (1, 3):
            self.setColumnWidth(col, min(self.columnWidth(col), 320))
