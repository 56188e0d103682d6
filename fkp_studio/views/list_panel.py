"""The image list panel: filters (category, error type, id search, edited only), "worst NE
first", the list itself and going to an image.

It views the state's `ImageListModel` of the open document and tells which image the user
picked (`rowActivated`, wired to `StudioState.set_current_row`); a flow that wants another image
asks the state (`rowRequested`), which this panel follows (`go_to`).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit,
                               QPushButton, QTableView, QVBoxLayout, QWidget)

from engine.io.review import REVIEW_STATES
from engine.schema import CATEGORIES
from fkp_studio.models.error_index import ERROR_FILTERS
from fkp_studio.models.image_list import COL_ID, HEADERS, REVIEW_TEXT, ImageListModel, ListFilter
from fkp_studio.views.column_widths import column_widths, table_width

# The widest text each column shows (the image column stretches over what the others leave).
COLUMN_SAMPLES = (("photo_000.jpg",), CATEGORIES + ("—",), ("100.00", "Δ 99.9 px"), ("24",), ("✎ edited", "category set"),
                  REVIEW_TEXT)


class ImageListPanel(QWidget):
    """Filter widgets above the image list; `set_model` gives it the new document's list model."""

    rowActivated = Signal(int)  # data row the user moved to

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.model: ImageListModel | None = None
        self.current_row: int | None = None  # data row last activated
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(self._build_filter_row())
        layout.addLayout(self._build_sort_row())
        self.list_view = self._build_view()
        self.column_widths = column_widths(self.list_view, HEADERS, COLUMN_SAMPLES)
        layout.addWidget(self.list_view, 1)
        self.count_label = QLabel("", self)
        layout.addWidget(self.count_label)

    def _build_filter_row(self) -> QHBoxLayout:
        self.category_box = QComboBox(self)
        self.category_box.addItem("All categories", None)
        for c, name in enumerate(CATEGORIES):
            self.category_box.addItem(name, c)
        self.category_box.currentIndexChanged.connect(lambda _i: self.filter_with(category=self.category_box.currentData()))
        self.error_box = QComboBox(self)
        for label, kind in ERROR_FILTERS:
            self.error_box.addItem(label, kind)
        self.error_box.setToolTip("Show only images with this error type (against the predictions), "
                                  "or the suspected annotation mistakes")
        self.error_box.currentIndexChanged.connect(lambda _i: self.filter_with(error_type=self.error_box.currentData()))
        self.search = QLineEdit(self)
        self.search.setPlaceholderText("Search image id…")
        self.search.setClearButtonEnabled(True)
        # Typing filters once the user pauses, not per key (a scan of 100k ids per key lags).
        self._search_timer = QTimer(self, singleShot=True, interval=200)
        self._search_timer.timeout.connect(lambda: self.filter_with(text=self.search.text().strip()))
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        row = QHBoxLayout()
        row.addWidget(self.category_box)
        row.addWidget(self.error_box)
        row.addWidget(self.search, 1)
        return row

    def _build_sort_row(self) -> QHBoxLayout:
        self.worst_button = QPushButton("Worst NE first", self)
        self.worst_button.setToolTip("Sort the list by per-image normalized error, largest first (W)")
        self.worst_button.clicked.connect(self.worst_first)
        self.edited_box = QCheckBox("Edited only", self)
        self.edited_box.setToolTip("List only the images changed in this session")
        self.edited_box.toggled.connect(lambda on: self.filter_with(edited_only=on))
        self.review_box = QComboBox(self)
        self.review_box.addItem("Any review state", None)
        for state in REVIEW_STATES:
            self.review_box.addItem(state.capitalize(), state)
        self.review_box.setToolTip("Show only unreviewed, reviewed or skipped images")
        self.review_box.currentIndexChanged.connect(lambda _i: self.filter_with(review=self.review_box.currentData()))
        self.filter_label = QLabel("", self)
        self.filter_label.setStyleSheet("color: #f0b040;")
        self.clear_filter_button = QPushButton("Clear filter", self)
        self.clear_filter_button.clicked.connect(self.clear_filter)
        self.clear_filter_button.setVisible(False)
        row = QHBoxLayout()
        row.addWidget(self.worst_button)
        row.addWidget(self.edited_box)
        row.addWidget(self.review_box)
        row.addWidget(self.filter_label, 1)
        row.addWidget(self.clear_filter_button)
        return row

    def _build_view(self) -> QTableView:
        view = QTableView(self)
        view.setSelectionBehavior(QAbstractItemView.SelectRows)
        view.setSelectionMode(QAbstractItemView.SingleSelection)
        view.setSortingEnabled(True)
        view.setWordWrap(False)
        view.setAlternatingRowColors(True)
        view.verticalHeader().setVisible(False)
        view.verticalHeader().setDefaultSectionSize(22)
        view.verticalHeader().setSectionResizeMode(QHeaderView.Fixed)
        view.horizontalHeader().setHighlightSections(False)
        view.setTextElideMode(Qt.ElideMiddle)  # a long image id keeps its start and its end
        return view

    def needed_width(self) -> int:
        """The panel's width that shows every column whole (the main window's default dock width)."""
        margins = self.layout().contentsMargins()
        return table_width(self.list_view, self.column_widths) + margins.left() + margins.right()

    # --- document -----------------------------------------------------------------------

    def set_model(self, model: ImageListModel) -> None:
        """The new document's list model, unfiltered, in file order; new predictions sort it worst first."""
        self.current_row = None
        self.model = model
        self._sorted_by_predictions = False
        self._user_moved = False  # the user went to an image (a key, a click, a flow's request)
        self._auto = False        # the panel itself is selecting a row
        model.doc.predictionsChanged.connect(self._predictions_changed)
        self.model.viewChanged.connect(self._after_view_changed)
        self.list_view.setModel(self.model)
        self.list_view.selectionModel().currentRowChanged.connect(self._on_current)
        header = self.list_view.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.Interactive)
        for col, width in enumerate(self.column_widths):
            self.list_view.setColumnWidth(col, width)
        header.setSectionResizeMode(COL_ID, QHeaderView.Stretch)
        self._reset_filter_widgets()
        self._after_view_changed()

    def shown_rows(self) -> np.ndarray:
        """The data rows the list shows, in its order."""
        return np.asarray(self.model.order) if self.model is not None else np.zeros(0, np.int64)

    def neighbour_rows(self, offsets: tuple[int, ...] = (1, 2, -1)) -> list[int]:
        """Data rows at these offsets from the current list position (for prefetching)."""
        model = self.model
        if model is None:
            return []
        here = self.list_view.currentIndex().row()
        return [model.data_row(here + d) for d in offsets if 0 <= here + d < model.rowCount()]

    # --- filters ------------------------------------------------------------------------

    def filter_with(self, **changes) -> None:
        """Change some fields of the list's filter (see `ListFilter`)."""
        if self.model is None:
            return
        self.model.set_filter(ListFilter(**{**self.model.filter.__dict__, **changes}))

    def filter_keypoint(self, k: int) -> None:
        """Images where keypoint k is scored, worst first."""
        self.filter_with(keypoint=k, ne_range=None)
        self.worst_first()

    def filter_category(self, c: int) -> None:
        self.category_box.setCurrentIndex(c + 1)  # triggers the filter

    def filter_error_type(self, kind: str | None) -> None:
        """Show only images with this error type ("inversion", ..., "check_annotation"; None: all)."""
        self.error_box.setCurrentIndex(self.error_box.findData(kind))  # triggers the filter

    def filter_error_on_keypoint(self, kind: str, k: int) -> None:
        """Images with this error type on keypoint k, worst first."""
        self.error_box.blockSignals(True)
        self.error_box.setCurrentIndex(max(self.error_box.findData(kind), 0))
        self.error_box.blockSignals(False)
        self.filter_with(error_type=kind, keypoint=k, ne_range=None)
        self.worst_first()

    def clear_filter(self) -> None:
        self._reset_filter_widgets()
        if self.model is not None:
            self.model.set_filter(ListFilter())

    def _reset_filter_widgets(self) -> None:
        """Show "no filter" in every filter widget, without firing their change handlers."""
        for widget, reset in ((self.category_box, lambda: self.category_box.setCurrentIndex(0)),
                              (self.error_box, lambda: self.error_box.setCurrentIndex(0)),
                              (self.search, self.search.clear),
                              (self.edited_box, lambda: self.edited_box.setChecked(False)),
                              (self.review_box, lambda: self.review_box.setCurrentIndex(0))):
            widget.blockSignals(True)
            reset()
            widget.blockSignals(False)

    def _predictions_changed(self) -> None:
        """The first predictions shown before the user went anywhere (a data set opened with them)
        sort the list worst first and show the worst image; any other (a run's end) sorts it too but
        keeps the image on show, so a key pressed then acts on the image the user sees."""
        p = self.model.doc.predictions
        if p is None or not p.present.any():
            return  # a run starting: nothing to sort by yet
        first, self._sorted_by_predictions = not self._sorted_by_predictions, True
        self.worst_first(keep_current=self._user_moved or not first)

    def worst_first(self, keep_current: bool = False) -> None:
        """Sort by per-image NE, largest first, and go to the top (with `keep_current`: stay on
        the image on show, wherever it now is)."""
        if self.model is None:
            return
        self.model.worst_first()  # the NE column's arrow follows (`_sync_sort_indicator`)
        here = self.model.view_row(self.current_row) if keep_current and self.current_row is not None else -1
        self._select_view_row(here if here >= 0 else 0, auto=not keep_current)

    # --- moving -------------------------------------------------------------------------

    def go_to(self, row: int) -> None:
        """Select image `row` (data row), clearing the filter if it hides it."""
        if self.model is None:
            return
        if self.model.view_row(row) < 0:
            self.clear_filter()
        self._select_view_row(self.model.view_row(row))

    def step(self, delta: int) -> None:
        """Move `delta` places down the list (up when negative), stopping at its ends."""
        if self.model is None or not self.model.rowCount():
            return
        row = self.list_view.currentIndex().row()
        self._select_view_row(min(max(row + delta, 0), self.model.rowCount() - 1))

    def _select_view_row(self, view_row: int, auto: bool = False) -> None:
        self._auto = auto
        try:
            self.list_view.selectRow(view_row)
        finally:
            self._auto = False
        self.list_view.scrollTo(self.model.index(view_row, 0))

    def _on_current(self, current, _previous) -> None:
        if current.isValid() and self.model is not None:
            row = self.model.data_row(current.row())
            if row != self.current_row:  # a re-sort moves the current image, it does not change it
                self._user_moved = self._user_moved or not self._auto
                self.current_row = row
                self.rowActivated.emit(row)

    def _sync_sort_indicator(self) -> None:
        """The header's arrow is the list's order: on the sorted column, none while in file order."""
        model, header = self.model, self.list_view.horizontalHeader()
        sorted_by = model.sort_column if model is not None else -1
        if sorted_by >= 0:
            header.blockSignals(True)  # the view would sort the model again
            header.setSortIndicator(sorted_by, model.sort_order)
            header.blockSignals(False)
        header.setSortIndicatorShown(sorted_by >= 0)

    def _after_view_changed(self) -> None:
        model = self.model
        self._sync_sort_indicator()
        flt = model.filter
        extra = ListFilter(ne_range=flt.ne_range, keypoint=flt.keypoint).describe()
        self.filter_label.setText(f"Filter: {extra}" if extra else "")
        self.clear_filter_button.setVisible(bool(flt.describe()))
        self.count_label.setText(f"{model.rowCount()} of {len(model.doc)} images")
        row = model.view_row(self.current_row) if self.current_row is not None else -1
        if row < 0 and model.rowCount():
            row = 0
        if row >= 0:
            self._select_view_row(row, auto=True)
        elif not model.rowCount():
            self.list_view.clearSelection()
