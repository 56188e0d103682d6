"""The image list: a table model straight over the document's arrays.

No per-row Python objects: the model holds one int64 array, `order`, of the data rows on
show (filtered, then sorted); `data()` reads the document's arrays at `order[row]`.
Sorting is a numpy argsort of the filtered rows (a QSortFilterProxyModel calls back into
Python per comparison and is far too slow at 100,000 rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QColor

from engine.io.messages import shorten
from engine.io.review import REVIEW_STATES
from engine.schema import CATEGORIES, KEYPOINTS
from fkp_studio.models.corrections import correction_px, made_from_predictions
from fkp_studio.models.document import AnnotationDocument

COL_ID, COL_CATEGORY, COL_NE, COL_VISIBLE, COL_EDITED, COL_REVIEW = range(6)
HEADERS = ("Image", "Category", "NE %", "Visible", "Edited", "Review")
REVIEW_TEXT = ("", "✓ reviewed", "skipped")


@dataclass
class ListFilter:
    """What the list shows: all conditions must hold."""

    category: int | None = None  # category code
    text: str = ""  # case-insensitive substring of the image id
    ne_range: tuple[float, float] | None = None  # per-image NE in [lo, hi) (fractions, not %)
    keypoint: int | None = None  # the image has an error for this keypoint
    edited_only: bool = False
    # An error type ("inversion", "miss", "jitter", "good") or "check_annotation": images with
    # one (on `keypoint` when that is set too).
    error_type: str | None = None
    review: str | None = None  # "unreviewed", "reviewed" or "skipped"

    def describe(self) -> str:
        parts = []
        if self.category is not None:
            parts.append(CATEGORIES[self.category])
        if self.ne_range is not None:
            lo, hi = self.ne_range
            parts.append(f"NE ≥ {lo * 100:.1f} %" if np.isinf(hi) else f"NE {lo * 100:.1f}–{hi * 100:.1f} %")
        if self.keypoint is not None:
            parts.append(f"has {KEYPOINTS[self.keypoint]} error")
        if self.text:
            parts.append(f"“{self.text}”")
        if self.edited_only:
            parts.append("edited")
        if self.error_type is not None:
            parts.append("check annotation" if self.error_type == "check_annotation" else f"with {self.error_type}")
        if self.review is not None:
            parts.append(self.review)
        return ", ".join(parts)


class ImageListModel(QAbstractTableModel):
    """Rows: the filtered, sorted images of a document."""

    viewChanged = Signal()  # the set or order of rows on show changed

    def __init__(self, doc: AnnotationDocument):
        super().__init__()
        self.doc = doc
        self.filter = ListFilter()
        self.sort_column = -1
        self.sort_order = Qt.AscendingOrder
        self.order = np.arange(len(doc), dtype=np.int64)
        self._ids_lower: np.ndarray | None = None  # built on the first text search
        self._id_rank: np.ndarray | None = None  # built on the first sort by id
        self._names: list[str] | None = None
        doc.rowsChanged.connect(self.refresh_rows)
        doc.predictionsChanged.connect(self._on_predictions_changed)

    # --- Qt model interface ---------------------------------------------------------------

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.order)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(HEADERS)

    def headerData(self, section, orientation, role=Qt.DisplayRole):
        if orientation == Qt.Horizontal and role == Qt.DisplayRole:
            return HEADERS[section]
        if orientation == Qt.Horizontal and role == Qt.ToolTipRole:
            return ("Image id (file name)", "Garment category", "Per-image normalized error, percent",
                    "Visible annotated keypoints", "Changed in this session",
                    "Reviewed or skipped (Enter accepts and marks reviewed, K skips)")[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        r = int(self.order[index.row()])
        col = index.column()
        doc = self.doc
        if role == Qt.DisplayRole:
            if col == COL_ID:
                return self._name(r)
            if col == COL_CATEGORY:
                return "—" if doc.uncategorized[r] else CATEGORIES[doc.categories[r]]
            if col == COL_NE:
                if made_from_predictions(doc, [r])[0]:
                    # No NE against the predictions it was made from: how far the review moved them.
                    moved = correction_px(doc, [r])[0]
                    return "Δ —" if np.isnan(moved) else f"Δ {moved:.1f} px"
                ne = doc.ne[r]
                return "—" if np.isnan(ne) else f"{ne * 100:.2f}"
            if col == COL_VISIBLE:
                return str(int(doc.visible_count[r]))
            if col == COL_EDITED:
                # A category the detector gave (Predict all on new photos) is an edit, not the hand's.
                return "" if not doc.edited[r] else "✎ edited" if doc.points_edited[r] else "category set"
            if col == COL_REVIEW:
                return REVIEW_TEXT[int(doc.review[r])]
        elif role == Qt.ToolTipRole and col == COL_ID:
            return shorten(str(doc.ann.image_ids[r]), 1000)
        elif role == Qt.TextAlignmentRole and col in (COL_NE, COL_VISIBLE):
            return int(Qt.AlignRight | Qt.AlignVCenter)
        elif role == Qt.ToolTipRole and col == COL_NE and made_from_predictions(doc, [r])[0]:
            return ("Annotated from this model's predictions (accepted or corrected in review): the mean "
                    "distance the corrections moved the predicted points, not NE")
        elif role == Qt.ForegroundRole and col == COL_NE:
            ne = doc.ne[r]
            if not np.isnan(ne) and ne > 0.10 and not made_from_predictions(doc, [r])[0]:
                return QColor(220, 70, 60)
        elif role == Qt.ForegroundRole and col == COL_EDITED:
            return QColor(240, 170, 40)
        return None

    def _name(self, r: int) -> str:
        # The file name is what tells images apart; the folder repeats the category.
        if self._names is None:
            self._names = [None] * len(self.doc)  # type: ignore[list-item]
        name = self._names[r]
        if name is None:
            name = shorten(str(self.doc.ann.image_ids[r]).rsplit("/", 1)[-1])
            self._names[r] = name
        return name

    def sort(self, column: int, order=Qt.AscendingOrder) -> None:
        self.sort_column, self.sort_order = column, order
        self._rebuild()

    # --- filtering and sorting ----------------------------------------------------------

    def set_filter(self, flt: ListFilter) -> None:
        self.filter = flt
        self._rebuild()

    def worst_first(self) -> None:
        """Sort by per-image NE, largest first (images without NE last)."""
        self.sort(COL_NE, Qt.DescendingOrder)

    def _rebuild(self) -> None:
        rows = np.flatnonzero(self._mask())
        if self.sort_column >= 0:
            rows = rows[self._argsort(rows)]
        self.beginResetModel()
        self.order = rows
        self.endResetModel()
        self.viewChanged.emit()

    def _mask(self) -> np.ndarray:
        doc, f = self.doc, self.filter
        mask = np.ones(len(doc), bool)
        if f.category is not None:
            mask &= (doc.categories == f.category) & ~doc.uncategorized
        if f.ne_range is not None:
            lo, hi = f.ne_range
            with np.errstate(invalid="ignore"):
                mask &= (doc.ne >= lo) & (doc.ne < hi)
        if f.keypoint is not None:
            mask &= ~np.isnan(doc.errors[:, f.keypoint])
        if f.edited_only:
            mask &= doc.edited
        if f.review is not None:
            mask &= doc.review == REVIEW_STATES.index(f.review)
        if f.error_type is not None:
            mask &= doc.error_index.rows_with(f.error_type, f.keypoint)
        if f.text:
            if self._ids_lower is None:
                self._ids_lower = np.char.lower(doc.ann.image_ids.astype(str))
            mask &= np.char.find(self._ids_lower, f.text.lower()) >= 0
        return mask

    def _argsort(self, rows: np.ndarray) -> np.ndarray:
        """Stable order of `rows` by the sort column; missing NE always last."""
        doc, col = self.doc, self.sort_column
        descending = self.sort_order == Qt.DescendingOrder
        if col == COL_ID:
            if self._id_rank is None:
                rank = np.empty(len(doc), np.int64)
                # By file name, as shown (the folder only repeats the category).
                names = np.char.rpartition(doc.ann.image_ids.astype(str), "/")[:, 2]
                rank[np.argsort(names, kind="stable")] = np.arange(len(doc))
                self._id_rank = rank
            key = self._id_rank[rows].astype(np.float64)
        elif col == COL_CATEGORY:
            key = np.where(doc.uncategorized[rows], np.nan, doc.categories[rows])  # without one: last
        elif col == COL_NE:
            key = doc.ne[rows].copy()
            if self.filter.keypoint is not None:
                key = doc.errors[rows, self.filter.keypoint].copy()
            key[made_from_predictions(doc, rows)] = np.nan  # no NE: after the images that have one
        elif col == COL_VISIBLE:
            key = doc.visible_count[rows].astype(np.float64)
        elif col == COL_EDITED:
            key = doc.edited[rows].astype(np.float64)
        else:
            key = doc.review[rows].astype(np.float64)
        if descending:
            key = -key
        key[np.isnan(key)] = np.inf
        return np.argsort(key, kind="stable")

    # --- lookups ------------------------------------------------------------------------

    def data_row(self, view_row: int) -> int:
        return int(self.order[view_row])

    def view_row(self, data_row: int) -> int:
        """Row on show of a data row, -1 if filtered out."""
        hits = np.flatnonzero(self.order == data_row)
        return int(hits[0]) if len(hits) else -1

    # --- document changes ---------------------------------------------------------------

    def refresh_rows(self, rows: np.ndarray) -> None:
        """Repaint the cells of these data rows. Values change in place; the order stays put so
        the row under the user's cursor does not jump away mid-edit."""
        for r in np.asarray(rows).tolist():
            v = self.view_row(r)
            if v >= 0:
                self.dataChanged.emit(self.index(v, 0), self.index(v, len(HEADERS) - 1))

    def _on_predictions_changed(self) -> None:
        self._rebuild()
