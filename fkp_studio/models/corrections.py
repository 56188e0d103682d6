"""How far a reviewer's corrections moved this model's predictions (issue 29, item 11).

An annotation made from the predictions on show (the image was accepted or corrected in review,
or had no point when the file was read) is no ground truth for them: its NE says how little the
reviewer moved, and a point placed where the model predicted nothing is no miss. For those
images the studio shows the mean distance, in pixels, between the annotated and the predicted
points instead, and leaves them out of NE.
"""

from __future__ import annotations

import numpy as np

from engine.io.review import REVIEW_STATES, REVIEWED
from fkp_studio.models.document import AnnotationDocument


def made_from_predictions(doc: AnnotationDocument, rows: np.ndarray | None = None) -> np.ndarray:
    """Per row: its annotation was made from the predictions on show (reviewed, or had no point
    when read and has some now), and it has a prediction."""
    rows = np.arange(len(doc)) if rows is None else np.asarray(rows, np.int64)
    p = doc.predictions
    if p is None:
        return np.zeros(len(rows), bool)
    annotated_here = ~doc.had_points[rows] & (doc.ann.visibility[rows] >= 0).any(axis=1)
    reviewed = doc.review[rows] == REVIEW_STATES.index(REVIEWED)
    return p.present[rows] & (reviewed | annotated_here)


def correction_px(doc: AnnotationDocument, rows: np.ndarray) -> np.ndarray:
    """Per row: the mean distance (px) from each predicted point to its annotation, over the points
    both have (NaN when none)."""
    rows = np.asarray(rows, np.int64)
    p = doc.predictions
    if p is None:
        return np.full(len(rows), np.nan)
    both = (doc.ann.visibility[rows] >= 0) & (p.visibility[rows] >= 0)
    dist = np.hypot(*(doc.ann.coords[rows] - p.coords[rows]).transpose(2, 0, 1))
    with np.errstate(invalid="ignore"):
        return np.where(both, dist, 0).sum(axis=1) / np.where(both.any(axis=1), both.sum(axis=1), np.nan)
