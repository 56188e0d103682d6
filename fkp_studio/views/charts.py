"""The data-set panel: NE histogram, NE per keypoint, NE per category (matplotlib).

Clicking a bar filters the image list: a histogram bar to that NE range, a keypoint bar to
images with an error on that keypoint (sorted by it), a category bar to that category.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QHBoxLayout, QWidget

from engine.analysis.error_types import ERROR_TYPES
from engine.analysis.ne import grouped_ne, pooled_ne
from engine.schema import CATEGORIES, KEYPOINTS, NUM_KEYPOINTS
from fkp_studio.models.corrections import made_from_predictions
from fkp_studio.models.document import AnnotationDocument
from fkp_studio.models.error_index import ErrorTypeIndex, follow
from fkp_studio.views.palette import KEYPOINT_COLOURS, TYPE_COLOURS

_BG = "#2b2d31"
_FG = "#d8d8d8"
_BAR = "#5fa8e8"


def short_keypoint_name(k: int) -> str:
    """Compact axis label: `cuff_left_in` -> `cuff L in`."""
    name = KEYPOINTS[k]
    for long, short in (("neckline", "neck"), ("shoulder", "shldr"), ("waistline", "waist"),
                        ("waistband", "wband"), ("hemline", "hem"), ("top_hem", "top hem"),
                        ("center_front", "ctr front"), ("bottom", "btm"), ("_left", " L"), ("_right", " R")):
        name = name.replace(long, short)
    return name.replace("_", " ")


class _NeView:
    """A document's NE figures without the images annotated from its predictions (they have none)."""

    def __init__(self, doc: AnnotationDocument, drop: np.ndarray):
        self._doc = doc
        self.ne = np.where(drop, np.nan, doc.ne)
        self.errors = np.where(drop[:, None], np.nan, doc.errors)

    def __getattr__(self, name: str):
        return getattr(self._doc, name)


_MADE_FROM_PREDICTIONS = "no NE: annotated from\nthese predictions (the list\nshows how far review\nmoved them)"


def _without_own_annotations(doc: AnnotationDocument) -> AnnotationDocument | _NeView:
    """`doc` as the charts read it: NE only for annotations not made from these predictions."""
    drop = made_from_predictions(doc)
    return _NeView(doc, drop) if drop.any() else doc


class _FigureCanvas(FigureCanvasQTAgg):
    """A matplotlib canvas whose first paint is its background only, the figure drawn just after:
    matplotlib's first draw loads its fonts (0.3-0.6 s), which kept the window's first frame black."""

    FIRST_DRAW_DELAY_MS = 50
    _painted = False

    def paintEvent(self, event) -> None:
        if self._painted:
            super().paintEvent(event)
            return
        self._painted = True
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(_BG))
        painter.end()
        QTimer.singleShot(self.FIRST_DRAW_DELAY_MS, self.update)


class _Chart(_FigureCanvas):
    def __init__(self, bottom_left: tuple[float, float] = (0.14, 0.22)):
        # Fixed margins: constrained layout costs ~0.2 s per redraw, far too slow while editing.
        fig = Figure(figsize=(4, 2.4), dpi=100, facecolor=_BG)
        super().__init__(fig)
        self.ax = fig.add_subplot()
        fig.subplots_adjust(left=bottom_left[0], bottom=bottom_left[1], right=0.98, top=0.88)
        self.setMinimumSize(240, 180)

    def clear(self, title: str) -> None:
        ax = self.ax
        ax.clear()
        ax.set_facecolor(_BG)
        ax.set_title(title, color=_FG, fontsize=9, loc="left")
        ax.tick_params(colors=_FG, labelsize=7)
        for side, spine in ax.spines.items():
            spine.set_color("#666" if side in ("left", "bottom") else _BG)

    def message(self, title: str, text: str) -> None:
        self.clear(title)
        self.ax.set_xticks([])
        self.ax.set_yticks([])
        self.ax.text(0.5, 0.5, text, ha="center", va="center", color="#999", fontsize=9, transform=self.ax.transAxes)
        self.draw_idle()


class DatasetCharts(QWidget):
    """Three charts of the document's errors; bar clicks become filter requests."""

    neRangeClicked = Signal(float, float)  # [lo, hi) per-image NE, fractions
    keypointClicked = Signal(int)
    categoryClicked = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc: AnnotationDocument | None = None
        self.hist, self.per_kp, self.per_cat = _Chart((0.14, 0.2)), _Chart((0.08, 0.36)), _Chart((0.16, 0.3))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(4)
        layout.addWidget(self.hist, 3)
        layout.addWidget(self.per_kp, 4)
        layout.addWidget(self.per_cat, 2)
        for chart in (self.hist, self.per_kp, self.per_cat):
            chart.mpl_connect("pick_event", self._on_pick)
        self._timer = QTimer(self, singleShot=True, interval=400)
        self._timer.timeout.connect(self.refresh)
        self._throttle = QTimer(self, singleShot=True, interval=1000)
        self._throttle.timeout.connect(self.refresh)

    def set_document(self, doc: AnnotationDocument | None) -> None:
        self.doc = doc
        if doc is not None:
            doc.rowsChanged.connect(lambda _rows: self._timer.start())
            doc.predictionsChanged.connect(self._timer.start)
            doc.predictionsFilled.connect(lambda _rows: self.refresh_within_a_second())
        # Drawn just after the list shows: opening a data set never waits for the charts.
        QTimer.singleShot(0, self.refresh)

    def refresh_within_a_second(self) -> None:
        """Redraw within a second, once however often it is asked (predictions arriving batch by
        batch: a redraw per batch would stall the event loop)."""
        if not self._throttle.isActive():
            self._throttle.start()

    def refresh(self) -> None:
        doc = self.doc
        if doc is not None:
            doc = _without_own_annotations(doc)
        titles = ("Per-image NE", "NE per keypoint", "NE per category")
        if doc is None or doc.predictions is None or np.isnan(doc.errors).all():
            why = ("no data set" if doc is None else "no predictions yet" if doc.predictions is None
                   else _MADE_FROM_PREDICTIONS if isinstance(doc, _NeView) else "no annotated point\nto compare yet")
            hint = ("\n\nModel ▸ Predict all (Ctrl+R) or\nFile ▸ Open predictions…"
                    if doc is not None and doc.predictions is None else "")
            for chart, title in zip((self.hist, self.per_kp, self.per_cat), titles):
                chart.message(title, why + (hint if chart is self.hist else ""))
            return
        self._draw_histogram(doc)
        self._draw_per_keypoint(doc)
        self._draw_per_category(doc)

    def _draw_histogram(self, doc: AnnotationDocument) -> None:
        ne = doc.ne[~np.isnan(doc.ne)]
        overall = pooled_ne(doc.errors)
        chart = self.hist
        chart.clear(f"Per-image NE, overall {overall * 100:.2f} %")
        top = max(float(np.percentile(ne, 99)), 1e-3)
        edges = np.linspace(0.0, top, 25)
        counts, _ = np.histogram(np.clip(ne, 0, top), bins=edges)
        bars = chart.ax.bar(edges[:-1] * 100, counts, width=np.diff(edges) * 100, align="edge",
                            color=_BAR, edgecolor=_BG, linewidth=0.5, picker=True)
        for i, bar in enumerate(bars):
            hi = np.inf if i == len(bars) - 1 else edges[i + 1]  # the last bar holds the tail
            bar.fkp_filter = ("ne", float(edges[i]), float(hi))
        chart.ax.set_xlabel("NE % (click a bar to list those images)", color=_FG, fontsize=7)
        chart.ax.set_ylabel(f"images (of {len(ne)})", color=_FG, fontsize=7)
        chart.draw_idle()

    def _draw_per_keypoint(self, doc: AnnotationDocument) -> None:
        per_keypoint = pooled_ne(doc.errors, axis=0)
        ks = np.flatnonzero(np.isfinite(per_keypoint))
        means = per_keypoint[ks]
        chart = self.per_kp
        chart.clear("NE per keypoint, %")
        colours = [KEYPOINT_COLOURS[k].name() for k in ks]
        bars = chart.ax.bar(np.arange(len(ks)), means * 100, color=colours, edgecolor="#111", linewidth=0.4, picker=True)
        for k, bar in zip(ks, bars):
            bar.fkp_filter = ("keypoint", int(k))
        chart.ax.set_xticks(np.arange(len(ks)), [short_keypoint_name(int(k)) for k in ks], rotation=60, ha="right")
        chart.ax.set_xlim(-0.6, max(len(ks), NUM_KEYPOINTS // 3) - 0.4)
        chart.draw_idle()

    def _draw_per_category(self, doc: AnnotationDocument) -> None:
        means = grouped_ne(doc.errors, doc.categories, len(CATEGORIES))
        cs = np.flatnonzero(~np.isnan(means))
        chart = self.per_cat
        chart.clear("NE per category, %")
        bars = chart.ax.bar(np.arange(len(cs)), means[cs] * 100, color=_BAR, edgecolor=_BG, picker=True)
        for c, bar in zip(cs, bars):
            bar.fkp_filter = ("category", int(c))
        chart.ax.set_xticks(np.arange(len(cs)), [CATEGORIES[c] for c in cs], rotation=30, ha="right")
        chart.draw_idle()

    def _on_pick(self, event) -> None:
        what = getattr(event.artist, "fkp_filter", None)
        if what is None:
            return
        if what[0] == "ne":
            self.neRangeClicked.emit(what[1], what[2])
        elif what[0] == "keypoint":
            self.keypointClicked.emit(what[1])
        elif what[0] == "category":
            self.categoryClicked.emit(what[1])


class ErrorTypeChart(_FigureCanvas):
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
        self.refresh()  # the empty chart in the theme, not matplotlib's white default

    def set_index(self, index: ErrorTypeIndex | None) -> None:
        self.index = index
        follow(self, index)
        self.refresh()

    def _empty_reason(self) -> str:
        """Why there is no bar: no predictions, a run still going (types come at its end), or no
        annotated point to type."""
        doc = self.index.doc if self.index is not None else None
        p = doc.predictions if doc is not None else None
        if p is None or not p.present.any():
            return "no predictions yet"
        scored = np.isfinite(doc.errors).any(axis=1)
        if not scored.any():
            return "no annotated point\nto compare yet"
        if not (scored & ~made_from_predictions(doc)).any():
            return _MADE_FROM_PREDICTIONS.replace("no NE", "no error types")
        return "error types when the prediction run ends"

    def counts(self) -> np.ndarray:
        """(24, 4) points of each type per keypoint."""
        t = self.index.types
        # An annotation made from these predictions is no ground truth for them: its points would
        # all count as good (or a point placed where nothing was predicted as a miss).
        t = t[~made_from_predictions(self.index.doc)]
        return np.count_nonzero(t[:, :, None] == np.arange(len(ERROR_TYPES)), axis=0)

    def refresh(self) -> None:
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
            ax.text(0.5, 0.5, self._empty_reason(), ha="center", va="center", color="#999", fontsize=9,
                    transform=ax.transAxes)
            self.draw_idle()
            return
        total = counts.sum()
        good = counts[:, 0].sum()
        ax.set_title(f"Error types per keypoint — {100 * good / total:.1f} % good\n"
                     f"t_good {self.index.t_good:g}, t_miss {self.index.t_miss:g}", color=_FG, fontsize=9, loc="left")
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
