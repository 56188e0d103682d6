"""Predictions: the one type keypoint predictions travel in (`Predictions`, from the model's
batches to the studio's canvas), the one rounding rule as saved (whole pixels, 3-decimal
confidences) and the one mark of a missing confidence (-1), applied wherever a prediction leaves
the model: `fkp predict`'s files, the predict job's partial results and the workspace's saved
predictions, so a fresh run and a reopened one hold the same numbers. Torch-free: the studio
reads them too."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from engine.io.annotations import Annotations
from engine.schema import NUM_KEYPOINTS

# A confidence that does not exist (the category lacks the keypoint, the image was unreadable):
# the files' mark and the engine's. Readers that average or compare use `known_scores` (NaN).
MISSING_SCORE = -1.0


def saved_coords(coords: np.ndarray, visibility: np.ndarray) -> np.ndarray:
    """(N, 24, 2) float32 whole pixels, -1 where the keypoint is absent (visibility -1)."""
    present = np.asarray(visibility)[..., None] >= 0
    return np.where(present, np.rint(coords), -1).astype(np.float32)


def saved_scores(scores: np.ndarray) -> np.ndarray:
    """(N, 24) float32 confidences to 3 decimals; `MISSING_SCORE` stays as it is."""
    return np.round(np.asarray(scores, np.float64), 3).astype(np.float32)


def as_saved(coords: np.ndarray, visibility: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coordinates, confidences) exactly as the predictions files will hold them."""
    return saved_coords(coords, visibility), saved_scores(scores)


def known_scores(scores: np.ndarray) -> np.ndarray:
    """(N, 24) float64 confidences with NaN where missing (the mark, or already NaN)."""
    out = np.asarray(scores, np.float64).copy()
    out[out < 0] = np.nan
    return out


@dataclass
class Predictions:
    """Keypoint predictions of some images: the one prediction type, from the model's batches
    (`Pipeline.iter_predict`) through the predict job's partial results to the studio's document.

    `rows` (n,) say where the images sit in what was predicted: positions in a `predict` call's
    image ids, or annotation rows (a document's predictions have `rows == arange(N)`). Arrays
    follow the saved files' conventions: coordinates and visibility -1 where a keypoint is absent,
    `MISSING_SCORE` where a confidence does not exist. `present` is False for an image not
    predicted (not yet, or unreadable: then `errors` has its id and why).
    """

    rows: np.ndarray         # (n,) int64
    image_ids: list[str]
    categories: np.ndarray   # (n,) int64: the category predicted with (the detector's where it chose)
    coords: np.ndarray       # (n, 24, 2) float32 image pixels
    visibility: np.ndarray   # (n, 24) int8
    scores: np.ndarray       # (n, 24) float32 in [0, 1]
    present: np.ndarray      # (n,) bool
    boxes: np.ndarray        # (n, 4) float32 garment boxes (zeros where none)
    errors: dict[str, str] = field(default_factory=dict)
    source: str = ""         # what made them: "model v002", or the predictions file read

    def __len__(self) -> int:
        return len(self.image_ids)

    @classmethod
    def unpredicted(cls, image_ids: Sequence[str], categories: Sequence[int] | np.ndarray,
                    rows: np.ndarray | None = None, errors: dict[str, str] | None = None,
                    source: str = "") -> Predictions:
        """These images with nothing predicted yet (every keypoint -1)."""
        n = len(image_ids)
        return cls(rows=np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, np.int64),
                   image_ids=[str(i) for i in image_ids], categories=np.array(categories, np.int64).reshape(n),
                   coords=np.full((n, NUM_KEYPOINTS, 2), -1.0, np.float32),
                   visibility=np.full((n, NUM_KEYPOINTS), -1, np.int8),
                   scores=np.full((n, NUM_KEYPOINTS), MISSING_SCORE, np.float32),
                   present=np.zeros(n, bool), boxes=np.zeros((n, 4), np.float32),
                   errors=dict(errors or {}), source=source)

    @classmethod
    def from_annotations(cls, pred: Annotations, scores: np.ndarray | None = None, source: str = "") -> Predictions:
        """Predictions read from a file (a predictions CSV and its scores, if any): every row present."""
        n = len(pred)
        return cls(rows=np.arange(n, dtype=np.int64), image_ids=[str(i) for i in pred.image_ids],
                   categories=np.asarray(pred.categories, np.int64),
                   coords=np.where(np.isfinite(pred.coords), pred.coords, -1).astype(np.float32),
                   visibility=np.asarray(pred.visibility, np.int8),
                   scores=(np.full((n, NUM_KEYPOINTS), MISSING_SCORE, np.float32) if scores is None
                           else np.where(np.isfinite(scores), scores, MISSING_SCORE).astype(np.float32)),
                   present=np.ones(n, bool), boxes=np.zeros((n, 4), np.float32), source=source)

    @classmethod
    def concat(cls, parts: Sequence[Predictions]) -> Predictions:
        """The images of `parts`, in order (rows as they are)."""
        if not parts:
            return cls.unpredicted([], np.zeros(0, np.int64))
        return cls(rows=np.concatenate([p.rows for p in parts]), image_ids=[i for p in parts for i in p.image_ids],
                   categories=np.concatenate([p.categories for p in parts]),
                   coords=np.concatenate([p.coords for p in parts]),
                   visibility=np.concatenate([p.visibility for p in parts]),
                   scores=np.concatenate([p.scores for p in parts]),
                   present=np.concatenate([p.present for p in parts]),
                   boxes=np.concatenate([p.boxes for p in parts]),
                   errors={k: v for p in parts for k, v in p.errors.items()}, source=parts[0].source)

    def take(self, index: np.ndarray | Sequence[int]) -> Predictions:
        """The images at these positions (not rows) of this set, with their errors."""
        index = np.asarray(index, np.int64)
        ids = [self.image_ids[i] for i in index.tolist()]
        return Predictions(self.rows[index], ids, self.categories[index], self.coords[index],
                           self.visibility[index], self.scores[index], self.present[index], self.boxes[index],
                           {i: self.errors[i] for i in ids if i in self.errors}, self.source)

    def as_saved(self) -> Predictions:
        """These predictions exactly as the predictions files will hold them (`as_saved`)."""
        coords, scores = as_saved(self.coords, self.visibility, self.scores)
        return replace(self, coords=coords, scores=scores)

    def put(self, part: Predictions) -> None:
        """Write `part` into this set at `part.rows` (this set's rows are `arange(len(self))`)."""
        r = part.rows
        self.categories[r], self.coords[r], self.visibility[r] = part.categories, part.coords, part.visibility
        self.scores[r], self.present[r], self.boxes[r] = part.scores, part.present, part.boxes

    def clear(self, rows: np.ndarray) -> None:
        """Rows `rows` (of a set whose rows are `arange(len(self))`) have no prediction any more."""
        self.coords[rows], self.visibility[rows], self.scores[rows] = -1, -1, MISSING_SCORE
        self.present[rows] = False

    def to_annotations(self) -> tuple[Annotations, np.ndarray]:
        """(the predictions as file content, their (n, 24) scores): what `fkp predict` writes."""
        return Annotations.from_arrays(self.image_ids, self.categories, self.coords, self.visibility), self.scores
