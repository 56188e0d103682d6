"""The error types of a document's points and its suspected label errors, kept current (no widgets).

`ErrorTypeIndex` keeps the type of every point (`engine.analysis.error_types.classify_errors`
against the document's predictions) and the suspected label errors
(`engine.analysis.label_errors.suspected_label_errors`). The document owns it and updates it
before it tells anyone else that rows or predictions changed, so every view reads fresh values
whatever order its signals were connected in.
"""

from __future__ import annotations

import dataclasses
import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from engine.io.predictions import known_scores
from engine.analysis.error_types import DEFAULT_T_GOOD, DEFAULT_T_MISS, ERROR_TYPES, UNTYPED, classify_errors
from engine.analysis.label_errors import Suspect, suspected_label_errors
from engine.schema import KEYPOINTS, NUM_KEYPOINTS

CHECK_ANNOTATION = "check_annotation"
# What the image list's error filter offers: (label, kind).
ERROR_FILTERS: tuple[tuple[str, str | None], ...] = (
    ("All error types", None),
    ("Images with an inversion", "inversion"),
    ("Images with a miss", "miss"),
    ("Images with jitter", "jitter"),
    ("Check annotation", CHECK_ANNOTATION),
)


def type_name(code: int) -> str:
    """`ERROR_TYPES` name of a type code; "" for UNTYPED."""
    return ERROR_TYPES[code] if 0 <= code < len(ERROR_TYPES) else ""


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
        self.recompute()

    def recompute(self) -> None:
        """Recompute every row (new predictions or thresholds)."""
        p = self.doc.predictions
        self._scores = p.scores if p is not None else None
        self._update(np.arange(len(self.doc)))
        self.changed.emit()

    def update_rows(self, rows: np.ndarray) -> None:
        """Recompute these rows after an edit (the document calls this before `rowsChanged`)."""
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
        scores = known_scores(self._scores[rows]) if self._scores is not None else None
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


def follow(view, index: ErrorTypeIndex | None) -> None:
    """Refresh `view` now on a full recompute, and at most every 400 ms while points are
    edited (a nudge per key press must not redraw a chart each time)."""
    if not hasattr(view, "_edit_timer"):
        view._edit_timer = QTimer(view, singleShot=True, interval=400)
        view._edit_timer.timeout.connect(view.refresh)
    if index is not None:
        index.changed.connect(view.refresh)
        index.rowsUpdated.connect(lambda _rows: view._edit_timer.start())
