"""Undoable point edits (`QUndoCommand`s) and the edits the studio offers.

Every command sets some keypoints of one image to new values and remembers the old ones;
redo and undo both go through `AnnotationDocument.apply`, so both are journaled and a
replay of the journal reproduces exactly what the user sees.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QUndoCommand

from engine.io.predictions import Predictions
from engine.schema import CATEGORIES, CATEGORY_MASK, FLIP_PERMUTATION, category_keypoints
from fkp_studio.models.document import AnnotationDocument
from fkp_studio.models.keypoint_names import keypoint_label

# Consecutive nudges of the same point merge into one undo step.
_NUDGE_ID = 1001


class SetKeypointsCommand(QUndoCommand):
    """Keypoints `keypoints` of image `row` become `coords`/`visibility`."""

    def __init__(self, doc: AnnotationDocument, row: int, keypoints, coords, visibility, text: str,
                 merge_key: tuple | None = None, category: int | None = None, refines: bool = False):
        super().__init__(text)
        self.doc, self.row = doc, row
        self.before = doc.current(row, keypoints, with_category=category is not None)
        self.after = doc.edit_of(row, keypoints, coords, visibility, category)
        self.merge_key = merge_key
        # A correction by hand: the image's untouched points may be predicted again from it
        # (`controllers/refine.py`); the refinement then belongs to this undo step.
        self.refines = refines
        self.refine_asked = False  # a refinement was asked (once: a redo or a dropped one never asks again)
        self.refinement: tuple[Predictions, Predictions] | None = None  # (before, after) of the row

    def attach_refinement(self, refined: Predictions) -> None:
        """The image's prediction refined after this correction: shown now, undone and redone with it."""
        self.refinement = (self.doc.predictions.take([self.row]), refined)
        self.doc.fill_predictions(refined)

    def redo(self) -> None:
        self.doc.apply(self.after)
        if self.refinement is not None:
            self.doc.fill_predictions(self.refinement[1])

    def undo(self) -> None:
        if self.refinement is not None:
            self.doc.fill_predictions(self.refinement[0])
        self.doc.apply(self.before)

    def id(self) -> int:
        return _NUDGE_ID if self.merge_key is not None else -1

    def mergeWith(self, other: QUndoCommand) -> bool:
        if not isinstance(other, SetKeypointsCommand) or other.merge_key != self.merge_key:
            return False
        self.after = other.after
        return True


class ReviewCommand(QUndoCommand):
    """Image `row`'s review state becomes `state` (undo brings the one before back)."""

    def __init__(self, doc: AnnotationDocument, row: int, state: str):
        super().__init__(f"Mark {state}")
        self.doc, self.row, self.state, self.before = doc, row, state, doc.review_state(row)

    def redo(self) -> None:
        self.doc.set_review([self.row], self.state)

    def undo(self) -> None:
        self.doc.set_review([self.row], self.before)


def _pixel(x: float, y: float) -> tuple[float, float]:
    # FashionAI stores integer pixels >= 0; (-1, -1) would read back as "absent".
    return float(max(0, round(x))), float(max(0, round(y)))


def move_point(doc: AnnotationDocument, row: int, k: int, x: float, y: float) -> SetKeypointsCommand:
    """Move keypoint k to (x, y), keeping its visibility (an absent point becomes visible)."""
    v = int(doc.ann.visibility[row, k])
    return SetKeypointsCommand(doc, row, [k], [_pixel(x, y)], [v if v >= 0 else 1], f"Move {keypoint_label(k)}",
                               refines=True)


def nudge_point(doc: AnnotationDocument, row: int, k: int, dx: float, dy: float) -> SetKeypointsCommand | None:
    """Shift an annotated keypoint by (dx, dy) pixels; None if it is absent."""
    v = int(doc.ann.visibility[row, k])
    if v < 0:
        return None
    x, y = doc.ann.coords[row, k]
    return SetKeypointsCommand(doc, row, [k], [_pixel(x + dx, y + dy)], [v], f"Nudge {keypoint_label(k)}",
                               merge_key=(row, k))


def place_point(doc: AnnotationDocument, row: int, k: int, x: float, y: float) -> SetKeypointsCommand:
    """Place an absent keypoint at (x, y) as visible."""
    return SetKeypointsCommand(doc, row, [k], [_pixel(x, y)], [1], f"Place {keypoint_label(k)}", refines=True)


def cycle_visibility(doc: AnnotationDocument, row: int, k: int) -> SetKeypointsCommand | None:
    """Visible -> occluded -> visible; None for an absent point (it must be placed first)."""
    v = int(doc.ann.visibility[row, k])
    if v < 0:
        return None
    coords = doc.ann.coords[row, k].copy()
    return SetKeypointsCommand(doc, row, [k], [coords], [0 if v == 1 else 1],
                               f"{'Occlude' if v == 1 else 'Unocclude'} {keypoint_label(k)}")


def remove_point(doc: AnnotationDocument, row: int, k: int) -> SetKeypointsCommand | None:
    """Mark a keypoint absent (coordinates -1); None if it already is."""
    if int(doc.ann.visibility[row, k]) < 0:
        return None
    return SetKeypointsCommand(doc, row, [k], [(-1.0, -1.0)], [-1], f"Remove {keypoint_label(k)}")


def accept_prediction(doc: AnnotationDocument, row: int, keypoints=None) -> SetKeypointsCommand | None:
    """The prediction becomes the annotation (whole pixels, the predicted visibility): of `keypoints`, or of every
    point of the garment not annotated yet (a point placed by hand is kept). None: nothing to accept."""
    p = doc.predictions
    if p is None or not p.present[row]:
        return None
    if keypoints is None:
        ks = np.array(category_keypoints(int(doc.categories[row])), dtype=np.int64)
        ks = ks[doc.ann.visibility[row, ks] < 0]
    else:
        ks = np.asarray(keypoints, dtype=np.int64)
    ks = ks[p.visibility[row, ks] >= 0]
    if not len(ks):
        return None
    # A point already annotated keeps its visibility; a new one takes the predicted one (occluded
    # where the model's visibility stage says so, else visible).
    vis = np.where(doc.ann.visibility[row, ks] >= 0, doc.ann.visibility[row, ks], p.visibility[row, ks])
    what = keypoint_label(int(ks[0])) if len(ks) == 1 else f"{len(ks)} points"
    # Accepting one point is a correction (it says that point is right); accepting the rest is not.
    return SetKeypointsCommand(doc, row, ks, np.rint(p.coords[row, ks]), vis, f"Accept prediction: {what}",
                               refines=keypoints is not None)


def accept_prediction_at(doc: AnnotationDocument, row: int, k: int, x: float, y: float) -> SetKeypointsCommand | None:
    """Keypoint k's prediction accepted where the user dropped it: (x, y), with the predicted
    visibility (one undo step for the whole gesture). None without a prediction of k."""
    p = doc.predictions
    if p is None or not p.present[row] or p.visibility[row, k] < 0:
        return None
    return SetKeypointsCommand(doc, row, [k], [_pixel(x, y)], [int(p.visibility[row, k])],
                               f"Accept and move {keypoint_label(k)}", refines=True)


def swap_left_right(doc: AnnotationDocument, row: int) -> SetKeypointsCommand:
    """Swap every left keypoint of the garment with its right twin (a mirrored labelling)."""
    ks = np.array(category_keypoints(int(doc.categories[row])), dtype=np.int64)
    src = FLIP_PERMUTATION[ks]
    return SetKeypointsCommand(doc, row, ks, doc.ann.coords[row, src].copy(), doc.ann.visibility[row, src].copy(),
                               "Swap left and right", refines=True)


def swap_twin(doc: AnnotationDocument, row: int, k: int) -> SetKeypointsCommand | None:
    """Swap keypoint k of one image with its left/right twin (fixes one inverted pair in one
    step); None when k has no twin."""
    twin = int(FLIP_PERMUTATION[k])
    if twin == k:
        return None
    ks = np.array([k, twin])
    return SetKeypointsCommand(doc, row, ks, doc.ann.coords[row, ks[::-1]].copy(),
                               doc.ann.visibility[row, ks[::-1]].copy(),
                               f"Swap {keypoint_label(k)} with {keypoint_label(twin)}", refines=True)


class CompoundCommand(QUndoCommand):
    """Several commands as one undo step (undone in reverse order)."""

    def __init__(self, text: str, parts: list[QUndoCommand]):
        super().__init__(text)
        # Plain Python list, not Qt children: the Python objects must outlive the C++ ones.
        self.parts = parts

    def redo(self) -> None:
        for part in self.parts:
            part.redo()

    def undo(self) -> None:
        for part in reversed(self.parts):
            part.undo()


def restore_command(doc: AnnotationDocument, rows: np.ndarray, coords: np.ndarray, visibility: np.ndarray,
                    categories: list[int | None] | None = None) -> CompoundCommand:
    """One undo step that brings back the journal's unsaved edits (whole rows; `categories`: per
    row the category to give it, None where it stays)."""
    all_k = np.arange(coords.shape[1])
    return CompoundCommand(f"Restore unsaved edits ({len(rows)} images)", [
        SetKeypointsCommand(doc, int(row), all_k, coords[i], visibility[i], "Restore",
                            category=None if categories is None else categories[i])
        for i, row in enumerate(rows)])


def change_category(doc: AnnotationDocument, row: int, category: int) -> SetKeypointsCommand | None:
    """Image `row` becomes a `category` garment: the points that category has no place for are
    cleared (undo brings them and the category back). None when it is that category already."""
    if int(doc.categories[row]) == category and not doc.uncategorized[row]:
        return None
    lost = np.flatnonzero(~CATEGORY_MASK[category] & (doc.ann.visibility[row] >= 0))
    return SetKeypointsCommand(doc, row, lost, np.full((len(lost), 2), -1.0), np.full(len(lost), -1),
                               f"Category: {CATEGORIES[category]}", category=category)


def categories_from_model(doc: AnnotationDocument, rows: np.ndarray, categories: np.ndarray) -> CompoundCommand | None:
    """Images without a category take the ones the model's detector chose (one undo step). None:
    no such image."""
    parts = [change_category(doc, row, category)
             for row, category in zip(np.asarray(rows, np.int64).tolist(), np.asarray(categories, np.int64).tolist())
             if doc.uncategorized[row]]
    if not parts:
        return None
    return CompoundCommand(f"Category from the model ({len(parts)} image{'s' if len(parts) != 1 else ''})", parts)
