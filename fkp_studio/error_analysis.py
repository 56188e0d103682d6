"""Error types in the studio: each point's type (good, jitter, inversion, miss), the images
to check for annotation mistakes, the chart of error types per keypoint and the
"Check annotation" panel.

`ErrorTypeIndex` keeps the types of a document's points (`engine.analysis.ne.classify_errors`
against the document's predictions) and its suspected label errors
(`engine.analysis.label_errors.suspected_label_errors`) up to date as the annotations are edited; it
is created with the document, before any view connects to it, so views always read fresh
values.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QColor, QUndoCommand
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

from engine.analysis.label_errors import Suspect, align_scores, suspected_label_errors
from engine.analysis.error_types import DEFAULT_T_GOOD, DEFAULT_T_MISS, ERROR_TYPES, UNTYPED, classify_errors
from engine.schema import FLIP_PERMUTATION, KEYPOINTS, NUM_KEYPOINTS

CHECK_ANNOTATION = "check_annotation"
# What the image list's error filter offers: (label, kind).
ERROR_FILTERS: tuple[tuple[str, str | None], ...] = (
    ("All error types", None),
    ("Images with an inversion", "inversion"),
    ("Images with a miss", "miss"),
    ("Images with jitter", "jitter"),
    ("Check annotation", CHECK_ANNOTATION),
)
TYPE_COLOURS: dict[str, QColor] = {
    "good": QColor(90, 180, 90), "jitter": QColor(230, 190, 60),
    "inversion": QColor(200, 90, 220), "miss": QColor(225, 70, 60),
}


def type_name(code: int) -> str:
    """`ERROR_TYPES` name of a type code; "" for UNTYPED."""
    return ERROR_TYPES[code] if 0 <= code < len(ERROR_TYPES) else ""


def _scores_for(doc) -> np.ndarray | None:
    """Confidences of the document's predictions, when a scores file lies beside their CSV."""
    p = doc.predictions
    source = Path(p.source) if p is not None and p.source else None
    if source is None or source.suffix.lower() != ".csv":
        return None
    path = source.with_name(source.stem + ".scores.csv")
    if not path.is_file():
        return None
    from engine.model.pipeline import load_scores  # imports torch: only when there are scores

    try:
        ids, values = load_scores(path)
        return align_scores(doc.ann, ids, values)
    except ValueError:
        return None  # an unreadable scores file only costs the confidence criterion


class ErrorTypeIndex(QObject):
    """Error types (N, 24) and suspected label errors of a document, kept current."""

    changed = Signal()  # everything was recomputed (new predictions or thresholds)
    rowsUpdated = Signal(object)  # these data rows were recomputed after an edit

    def __init__(self, doc, t_good: float = DEFAULT_T_GOOD, t_miss: float = DEFAULT_T_MISS):
        super().__init__(doc)
        self.doc = doc
        self.t_good, self.t_miss = float(t_good), float(t_miss)
        self.types = np.full((len(doc), NUM_KEYPOINTS), UNTYPED, np.int8)
        self.suspects: dict[int, list[Suspect]] = {}
        self._scores: np.ndarray | None = None
        doc.rowsChanged.connect(self._on_rows_changed)
        doc.predictionsChanged.connect(self.recompute)
        self.recompute()

    def recompute(self) -> None:
        """Recompute every row (new predictions or thresholds)."""
        self._scores = _scores_for(self.doc)
        self._update(np.arange(len(self.doc)))
        self.changed.emit()

    def set_thresholds(self, t_good: float, t_miss: float) -> None:
        self.t_good, self.t_miss = float(t_good), float(t_miss)
        self.recompute()

    def _on_rows_changed(self, rows) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        self._update(rows)
        self.rowsUpdated.emit(rows)

    def _update(self, rows: np.ndarray) -> None:
        doc = self.doc
        a = doc.ann
        if not a.has_keypoints or len(rows) == 0:
            return
        p = doc.predictions
        types = None
        if p is not None:
            types = classify_errors(a.coords[rows], a.visibility[rows], doc.categories[rows], p.coords[rows],
                                    p.visibility[rows], self.t_good, self.t_miss)
            types.types[~p.present[rows]] = UNTYPED
            self.types[rows] = types.types
        else:
            self.types[rows] = UNTYPED
        scores = self._scores[rows] if self._scores is not None else None
        found = suspected_label_errors(a.subset(rows), types, scores)
        for r in rows.tolist():
            self.suspects.pop(r, None)
        for s in found:
            row = int(rows[s.row])
            self.suspects.setdefault(row, []).append(dataclasses.replace(s, row=row))

    def type_of(self, row: int, k: int) -> str:
        return type_name(int(self.types[row, k]))

    def rows_with(self, kind: str, keypoint: int | None = None) -> np.ndarray:
        """(N,) bool: images with a point of this type (or a suspect, for "check_annotation"),
        on `keypoint` when given."""
        if kind == CHECK_ANNOTATION:
            mask = np.zeros(len(self.doc), bool)
            name = KEYPOINTS[keypoint] if keypoint is not None else None
            rows = [r for r, items in self.suspects.items() if name is None or any(s.keypoint == name for s in items)]
            mask[rows] = True
            return mask
        code = ERROR_TYPES.index(kind)
        if keypoint is not None:
            return self.types[:, keypoint] == code
        return (self.types == code).any(axis=1)

    def all_suspects(self) -> list[Suspect]:
        return [s for r in sorted(self.suspects) for s in self.suspects[r]]

    def suspect_count(self) -> int:
        return sum(len(items) for items in self.suspects.values())


def _follow(view, index: ErrorTypeIndex | None) -> None:
    """Refresh `view` now on a full recompute, and at most every 400 ms while points are
    edited (a nudge per key press must not redraw a chart each time)."""
    if not hasattr(view, "_edit_timer"):
        view._edit_timer = QTimer(view, singleShot=True, interval=400)
        view._edit_timer.timeout.connect(view.refresh)
    if index is not None:
        index.changed.connect(view.refresh)
        index.rowsUpdated.connect(lambda _rows: view._edit_timer.start())


def swap_twin(doc, row: int, k: int) -> QUndoCommand | None:
    """Swap keypoint k of one image with its left/right twin (fixes one inverted pair in one
    step); None when k has no twin."""
    from fkp_studio.commands import SetKeypointsCommand
    from fkp_studio.palette import keypoint_label

    twin = int(FLIP_PERMUTATION[k])
    if twin == k:
        return None
    ks = np.array([k, twin])
    return SetKeypointsCommand(doc, row, ks, doc.ann.coords[row, ks[::-1]].copy(),
                               doc.ann.visibility[row, ks[::-1]].copy(),
                               f"Swap {keypoint_label(k)} with {keypoint_label(twin)}")


# --- widgets ------------------------------------------------------------------------------

_BG = "#2b2d31"
_FG = "#d8d8d8"


class ErrorTypeChart(FigureCanvasQTAgg):
    """Stacked bars of jitter, inversions and misses per keypoint; a click on a segment asks
    for the images with that error type on that keypoint."""

    segmentClicked = Signal(str, int)  # error type, keypoint

    def __init__(self, parent: QWidget | None = None):
        fig = Figure(figsize=(4, 2.4), dpi=100, facecolor=_BG, layout="constrained")
        super().__init__(fig)
        self.setParent(parent)
        self.ax = fig.add_subplot()
        self.setMinimumSize(200, 180)
        self.index: ErrorTypeIndex | None = None
        self.mpl_connect("pick_event", self._on_pick)

    def set_index(self, index: ErrorTypeIndex | None) -> None:
        self.index = index
        _follow(self, index)
        self.refresh()

    def counts(self) -> np.ndarray:
        """(24, 4) points of each type per keypoint."""
        t = self.index.types
        return np.count_nonzero(t[:, :, None] == np.arange(len(ERROR_TYPES)), axis=0)

    def refresh(self) -> None:
        from fkp_studio.charts import short_keypoint_name

        ax = self.ax
        ax.clear()
        ax.set_facecolor(_BG)
        ax.tick_params(colors=_FG, labelsize=7)
        for side, spine in ax.spines.items():
            spine.set_color("#666" if side in ("left", "bottom") else _BG)
        counts = self.counts() if self.index is not None else np.zeros((NUM_KEYPOINTS, len(ERROR_TYPES)), int)
        ks = np.flatnonzero(counts.sum(axis=1))
        if not len(ks):
            ax.set_title("Error types per keypoint", color=_FG, fontsize=9, loc="left")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.text(0.5, 0.5, "no predictions yet", ha="center", va="center", color="#999", fontsize=9,
                    transform=ax.transAxes)
            self.draw_idle()
            return
        total = counts.sum()
        good = counts[:, 0].sum()
        ax.set_title(f"Error types per keypoint — {100 * good / total:.1f} % good "
                     f"(t_good {self.index.t_good:g}, t_miss {self.index.t_miss:g})", color=_FG, fontsize=9, loc="left")
        x = np.arange(len(ks))
        bottom = np.zeros(len(ks))
        for code, name in enumerate(ERROR_TYPES):
            if name == "good":
                continue  # good points dwarf the rest; the title gives their share
            bars = ax.bar(x, counts[ks, code], bottom=bottom, color=TYPE_COLOURS[name].name(), label=name,
                          edgecolor="#111", linewidth=0.3, picker=True)
            for k, bar in zip(ks, bars):
                bar.fkp_filter = (name, int(k))
            bottom += counts[ks, code]
        ax.set_xticks(x, [short_keypoint_name(int(k)) for k in ks], rotation=60, ha="right")
        ax.set_ylabel("points", color=_FG, fontsize=7)
        legend = ax.legend(fontsize=7, frameon=False, loc="upper right")
        for text in legend.get_texts():
            text.set_color(_FG)
        self.draw_idle()

    def _on_pick(self, event) -> None:
        what = getattr(event.artist, "fkp_filter", None)
        if what is not None:
            self.segmentClicked.emit(*what)


class CheckAnnotationPanel(QTableWidget):
    """The suspected label errors; clicking one asks to show that image and point."""

    suspectClicked = Signal(int, int)  # data row, keypoint
    HEADERS = ("Image", "Keypoint", "Why", "Reason")

    def __init__(self, parent: QWidget | None = None):
        super().__init__(0, len(self.HEADERS), parent)
        self.setHorizontalHeaderLabels(self.HEADERS)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setWordWrap(False)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(22)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.Interactive)
        self.horizontalHeader().setStretchLastSection(True)
        self.index: ErrorTypeIndex | None = None
        self.shown: list[Suspect] = []
        self.cellClicked.connect(self._on_click)

    def set_index(self, index: ErrorTypeIndex | None) -> None:
        self.index = index
        _follow(self, index)
        self.refresh()

    def refresh(self) -> None:
        self.shown = self.index.all_suspects() if self.index is not None else []
        self.setRowCount(len(self.shown))
        for i, s in enumerate(self.shown):
            why = "left/right on the wrong side" if s.kind == "wrong_side" else "confident model, far"
            cells = (s.image_id.rsplit("/", 1)[-1], s.keypoint, why, s.reason)
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(s.image_id if col == 0 else text)
                self.setItem(i, col, item)
        self.resizeColumnsToContents()
        self.setColumnWidth(0, min(self.columnWidth(0), 220))

    def _on_click(self, row: int, _col: int) -> None:
        s = self.shown[row]
        self.suspectClicked.emit(s.row, KEYPOINTS.index(s.keypoint))

