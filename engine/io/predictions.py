"""Predictions as saved: the one rounding rule (whole pixels, 3-decimal confidences) and the one
mark of a missing confidence (-1), applied wherever a prediction leaves the model: `fkp
predict`'s files, the predict job's partial results and the workspace's saved predictions, so a
fresh run and a reopened one hold the same numbers. Torch-free: the studio reads them too."""

from __future__ import annotations

import numpy as np

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
