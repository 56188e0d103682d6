"""Suspected annotation errors: images whose ground truth, not the model, is probably wrong.

At FashionAI scale many of the worst-NE images are labelling mistakes. Two signs, each
reported per point with a reason, so the studio can list them as "check annotation":

- **wrong side**: the `_left` point of a pair that never crosses on a real garment
  (neckline, shoulder, armpit, waistline, top hem, waistband, hemline) lies to the right of
  its `_right` twin by more than `margin` normalizer lengths, on an upright garment. In
  `tests/data/fashionai/val.csv` these pairs are ordered in 19,631 of 19,632 annotations;
  the one exception is an armpit on the image border, a labelling slip. Cuffs and bottoms
  are not checked: crossed sleeves and legs make them cross legitimately (about 0.5 % of
  the `_out` pairs, 11 % of `bottom_*_in`).
- **confident and far**: the model put the point beyond t_miss of the annotation (an error
  of type miss) while confident of it: its score is at least `min_score` when a scores
  file is available; without scores, every other scored point of the image is good (at
  least `min_good` of them), i.e. the model clearly found the garment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.io.annotations import Annotations
from engine.io.predictions import known_scores
from engine.analysis.error_types import GOOD, MISS, ErrorTypes
from engine.analysis.ne import normalizers
from engine.schema import FLIP_PAIRS, KEYPOINT_INDEX, KEYPOINTS, NUM_KEYPOINTS

DEFAULT_MARGIN = 0.1
DEFAULT_MIN_SCORE = 0.5
DEFAULT_MIN_GOOD = 4

# Pairs whose left point is left of the right one on every upright garment.
RIGID_PAIRS: tuple[tuple[int, int], ...] = tuple(
    (l, r) for l, r in FLIP_PAIRS if not KEYPOINTS[l].startswith(("cuff_", "bottom_"))
)
# Points near the top and near the bottom of a garment: their mean positions give its up axis.
_TOP = [KEYPOINT_INDEX[k] for k in ("neckline_left", "neckline_right", "center_front",
                                    "shoulder_left", "shoulder_right", "waistband_left", "waistband_right")]
_BOTTOM = [KEYPOINT_INDEX[k] for k in ("top_hem_left", "top_hem_right", "hemline_left", "hemline_right",
                                       "bottom_left_in", "bottom_left_out", "bottom_right_in", "bottom_right_out")]


@dataclass(frozen=True)
class Suspect:
    """One point whose annotation should be checked."""

    row: int            # ground-truth row
    image_id: str
    keypoint: str
    kind: str           # "wrong_side" or "confident_far"
    reason: str

    def to_json(self) -> dict[str, str | int]:
        return {"image_id": self.image_id, "keypoint": self.keypoint, "kind": self.kind, "reason": self.reason}


def upright(coords: np.ndarray, visibility: np.ndarray) -> np.ndarray:
    """(N,) bool: the garment's top points are above its bottom points, within 45 degrees of
    vertical; True when either group is absent (FashionAI photos are nearly all upright)."""
    present = visibility != -1

    def mean(idx: list[int]) -> tuple[np.ndarray, np.ndarray]:
        w = present[:, idx]
        n = w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (coords[:, idx] * w[:, :, None]).sum(axis=1) / n[:, None], n > 0

    top, has_top = mean(_TOP)
    bottom, has_bottom = mean(_BOTTOM)
    down = bottom - top
    known = has_top & has_bottom
    return ~known | (down[:, 1] > np.abs(down[:, 0]))


def wrong_side(coords: np.ndarray, visibility: np.ndarray, categories: np.ndarray,
               margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """(N, len(RIGID_PAIRS)) bool: the pair's left point is right of its right point by more
    than `margin` x the image's scale (the normalizer, or the annotation's width without one)."""
    if margin < 0:
        raise ValueError(f"margin must be >= 0 (got {margin})")
    coords = np.asarray(coords)
    vis = np.asarray(visibility)
    left = np.array([l for l, _ in RIGID_PAIRS])
    right = np.array([r for _, r in RIGID_PAIRS])
    dx = coords[:, left, 0].astype(np.float64) - coords[:, right, 0]
    crossed = (dx > 0) & (vis[:, left] != -1) & (vis[:, right] != -1)
    out = np.zeros_like(crossed)
    # Crossed pairs are rare: the scale and the orientation are needed for those images only.
    rows = np.flatnonzero(crossed.any(axis=1))
    if len(rows):
        c = coords[rows].astype(np.float64)
        v = vis[rows]
        scale = normalizers(c, v, np.asarray(categories)[rows])
        xs = np.where(v != -1, c[:, :, 0], np.nan)
        with np.errstate(invalid="ignore"):
            width = np.nanmax(xs, axis=1) - np.nanmin(xs, axis=1)
            scale = np.where(scale > 0, scale, width)
            out[rows] = crossed[rows] & (dx[rows] > margin * scale[:, None]) & upright(c, v)[:, None]
    return out


def align_scores(gt: Annotations, image_ids: Sequence[str], scores: np.ndarray) -> np.ndarray:
    """(N_gt, 24) confidences aligned to `gt` rows by image id; NaN where unknown or missing."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(image_ids), NUM_KEYPOINTS):
        raise ValueError(f"scores have shape {scores.shape}, expected ({len(image_ids)}, {NUM_KEYPOINTS})")
    where = {str(i): r for r, i in enumerate(image_ids)}
    rows = np.array([where.get(str(i), -1) for i in gt.image_ids.tolist()], dtype=np.int64)
    out = np.full((len(gt), NUM_KEYPOINTS), np.nan)
    found = rows >= 0
    out[found] = known_scores(scores[rows[found]])
    return out


def suspected_label_errors(
    gt: Annotations,
    types: ErrorTypes | None = None,
    scores: np.ndarray | None = None,
    margin: float = DEFAULT_MARGIN,
    min_score: float = DEFAULT_MIN_SCORE,
    min_good: int = DEFAULT_MIN_GOOD,
) -> list[Suspect]:
    """Points to list as "check annotation", in row order (see the module docstring).

    `types` are the error types of a prediction against `gt` (rows aligned with `gt`);
    `scores` (N_gt, 24) the prediction's confidences aligned with `gt` (`align_scores`),
    NaN where unknown (such points are judged by the image's other points, as without scores).
    Without `types` only the annotation's own geometry is checked.
    """
    found: list[Suspect] = []
    ids = gt.image_ids
    crossed = wrong_side(gt.coords, gt.visibility, gt.categories, margin)
    for r, p in zip(*np.nonzero(crossed)):
        l, rt = RIGID_PAIRS[p]
        found.append(Suspect(int(r), str(ids[r]), KEYPOINTS[l], "wrong_side",
                             f"{KEYPOINTS[l]} (x {gt.coords[r, l, 0]:g}) is right of {KEYPOINTS[rt]} "
                             f"(x {gt.coords[r, rt, 0]:g}) on an upright garment"))
    if types is not None:
        found.extend(_confident_far(gt, types, scores, min_score, min_good))
    found.sort(key=lambda s: (s.row, KEYPOINT_INDEX[s.keypoint]))
    return found


def _confident_far(gt: Annotations, types: ErrorTypes, scores: np.ndarray | None,
                   min_score: float, min_good: int) -> list[Suspect]:
    t = types.types
    if t.shape != gt.visibility.shape:
        raise ValueError(f"error types cover {t.shape[0]} rows, the ground truth has {len(gt)}")
    miss = t == MISS
    known = np.zeros(t.shape, bool)
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != t.shape:
            raise ValueError(f"scores have shape {scores.shape}, expected {t.shape}")
        known = np.isfinite(scores)
    with np.errstate(invalid="ignore"):
        by_score = miss & known & (scores >= min_score) if scores is not None else np.zeros(t.shape, bool)
    good = np.count_nonzero(t == GOOD, axis=1)
    typed = np.count_nonzero(t >= 0, axis=1)
    # Without a score: the image's only non-good point is this miss, and the model got the rest right.
    by_rest = miss & ~known & ((typed - good) == 1)[:, None] & (good >= min_good)[:, None]
    out = []
    for r, k in zip(*np.nonzero(by_score | by_rest)):
        why = (f"model confident (score {scores[r, k]:.2f})" if known[r, k]
               else f"model's other {int(good[r])} points are good")
        out.append(Suspect(int(r), str(gt.image_ids[r]), KEYPOINTS[k], "confident_far",
                           f"{why} but {types.errors[r, k]:.2f} normalizer lengths from the annotation"))
    return out
