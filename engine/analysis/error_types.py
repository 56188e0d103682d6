"""Error types: every scored point typed good, jitter, inversion (left/right confusion) or miss,
on the normalized error (Ronchi & Perona's keypoint error taxonomy), and the fix-what-if table
that recomputes NE with each type corrected in turn; see docs/error_analysis.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from engine.analysis.ne import align_predictions, json_number, normalized_errors
from engine.io.annotations import Annotations
from engine.schema import CATEGORIES, FLIP_PERMUTATION, KEYPOINTS, NUM_KEYPOINTS


# Thresholds are in normalized-error units (see docs/error_analysis.md for how they were chosen).

ERROR_TYPES: tuple[str, ...] = ("good", "jitter", "inversion", "miss")
GOOD, JITTER, INVERSION, MISS = 0, 1, 2, 3
UNTYPED = -1  # not scored, or scored but with no prediction
DEFAULT_T_GOOD = 0.05
DEFAULT_T_MISS = 0.20
_HAS_TWIN = FLIP_PERMUTATION != np.arange(NUM_KEYPOINTS)
WHAT_IF_ORDER: tuple[str, ...] = ("miss", "inversion", "jitter", "good")


@dataclass
class ErrorTypes:
    """The error type of every scored point that has a prediction (see `classify_errors`)."""

    types: np.ndarray        # (N, 24) int8: GOOD, JITTER, INVERSION, MISS; UNTYPED elsewhere
    errors: np.ndarray       # (N, 24) float64 normalized errors as scored (NaN: not scored)
    twin_errors: np.ndarray  # (N, 24) float64 distance to the twin's ground truth / s (NaN: no twin)
    missing: np.ndarray      # (N, 24) bool: scored points with no prediction (scored the penalty)
    categories: np.ndarray   # (N,) category codes
    t_good: float
    t_miss: float

    def counts_per_image(self) -> np.ndarray:
        """(N, 4) number of points of each type (columns in `ERROR_TYPES` order) per image."""
        return _type_counts(self.types, axis=1)

    def counts_per_keypoint(self) -> np.ndarray:
        """(24, 4) number of points of each type per keypoint."""
        return _type_counts(self.types, axis=0)

    def counts_per_category(self) -> np.ndarray:
        """(5, 4) number of points of each type per category."""
        per_image = self.counts_per_image()
        cats = np.asarray(self.categories, dtype=np.int64)
        return np.stack([np.bincount(cats, weights=per_image[:, t], minlength=len(CATEGORIES))
                         for t in range(len(ERROR_TYPES))], axis=1).astype(np.int64)

    def images_with(self, kind: int | str) -> np.ndarray:
        """(N,) bool: images with at least one point of this type (`"inversion"` or `INVERSION`)."""
        code = ERROR_TYPES.index(kind) if isinstance(kind, str) else int(kind)
        return (self.types == code).any(axis=1)


def _type_counts(types: np.ndarray, axis: int) -> np.ndarray:
    onehot = types[:, :, None] == np.arange(len(ERROR_TYPES), dtype=types.dtype)
    return np.count_nonzero(onehot, axis=axis).astype(np.int64)


def classify_errors(
    gt_coords: np.ndarray,
    gt_visibility: np.ndarray,
    categories: np.ndarray,
    pred_coords: np.ndarray,
    pred_visibility: np.ndarray | None = None,
    t_good: float = DEFAULT_T_GOOD,
    t_miss: float = DEFAULT_T_MISS,
    missing_penalty: float = 1.0,
) -> ErrorTypes:
    """Type every scored point with a prediction, on aligned arrays (as `normalized_errors`).

    With e = d / s the point's normalized error and e_twin the distance of its prediction to
    the ground truth of its left/right twin (over the same s):

    - good: e <= t_good;
    - inversion: otherwise, if e_twin < e and e_twin <= t_miss (points without a twin, or
      whose twin is absent, are never inversions);
    - jitter: otherwise, if e <= t_miss;
    - miss: otherwise (beyond t_miss of both its own and its twin's ground truth).

    An inversion takes precedence over jitter: a prediction nearer the twin's ground truth
    than its own most likely took the wrong side, whatever its distance to its own point.
    """
    if not (0.0 <= t_good <= t_miss and math.isfinite(t_miss)):
        raise ValueError(f"thresholds must satisfy 0 <= t_good <= t_miss (got t_good={t_good}, t_miss={t_miss})")
    gt = np.asarray(gt_coords)
    gv = np.asarray(gt_visibility)
    pe = normalized_errors(gt, gv, categories, pred_coords, pred_visibility, missing_penalty)
    # Distances as in `normalized_errors`: input precision, (dx, dy) viewed as complex numbers.
    dtype = np.result_type(gt.dtype, np.asarray(pred_coords).dtype, np.float32)
    delta = np.ascontiguousarray(np.asarray(pred_coords, dtype=dtype) - gt[:, FLIP_PERMUTATION])
    d_twin = np.abs(delta.view(np.result_type(dtype, np.complex64))[:, :, 0])
    with np.errstate(invalid="ignore", divide="ignore"):
        twin = np.divide(d_twin, pe.normalizer[:, None], dtype=np.float64)
    twin[(gv[:, FLIP_PERMUTATION] == -1) | ~_HAS_TWIN] = np.nan
    e = pe.errors
    typed = ~np.isnan(e) & ~pe.missing
    # NaN compares False throughout; the first rule that holds wins (see the docstring).
    with np.errstate(invalid="ignore"):
        types = (e > t_miss).astype(np.int8)
        types *= MISS - JITTER
        types += JITTER  # JITTER, or MISS beyond t_miss
        types[(twin < e) & (twin <= t_miss)] = INVERSION
        types[e <= t_good] = GOOD
    types[~typed] = UNTYPED
    return ErrorTypes(types, e, twin, pe.missing, np.asarray(categories), float(t_good), float(t_miss))


class WhatIfStep(NamedTuple):
    """NE after correcting one more error type (`fixed`), cumulatively."""

    fixed: str     # "nothing", "miss", "inversion", "jitter", "good"
    ne: float
    points: int    # points this step changed


def what_if(types: ErrorTypes) -> list[WhatIfStep]:
    """NE with the error types corrected cumulatively in the order miss, inversion, jitter, good.

    As coco-analyze does, each step shows what fixing one more kind of error is worth:

    - miss: misses, and scored points with no prediction, move to the ground truth (error 0);
    - inversion: the left/right label is fixed: the prediction keeps its offset from the
      twin's ground truth, now from its own, so its error becomes `twin_errors`;
    - jitter: jitters, and fixed inversions whose offset is still beyond t_good, go to 0;
    - good: the remaining residual of good points (and of fixed inversions) goes to 0.

    Every step only lowers errors, so NE never increases, and it ends at 0.
    """
    scored = ~np.isnan(types.errors)
    # Only scored points matter: work on them as flat arrays.
    e = types.errors[scored]
    t = types.types[scored]
    twin = types.twin_errors[scored]
    n = len(e)

    def ne() -> float:
        return float(e.sum() / n) if n else math.nan

    steps = [WhatIfStep("nothing", ne(), 0)]
    with np.errstate(invalid="ignore"):
        fixes = {
            "miss": ((t == MISS) | types.missing[scored], 0.0),
            "inversion": (t == INVERSION, twin),
            "jitter": ((t == JITTER) | ((t == INVERSION) & (twin > types.t_good)), 0.0),
            "good": (np.ones(n, dtype=bool), 0.0),
        }
    for name in WHAT_IF_ORDER:
        mask, value = fixes[name]
        changed = int(np.count_nonzero(mask & (e != 0.0)))
        e = np.where(mask, value, e)
        steps.append(WhatIfStep(name, ne(), changed))
    return steps


@dataclass
class ErrorAnalysis:
    """Error types and the fix-what-if of a prediction file against ground truth."""

    image_ids: np.ndarray
    types: ErrorTypes
    what_if: list[WhatIfStep]

    def counts(self) -> dict[str, int]:
        """Points of each type over all images, plus `no_prediction` (scored, not predicted)."""
        totals = self.types.counts_per_image().sum(axis=0)
        out = {name: int(totals[i]) for i, name in enumerate(ERROR_TYPES)}
        out["no_prediction"] = int(np.count_nonzero(self.types.missing))
        return out

    def to_json(self) -> dict[str, Any]:
        """The `errors` and `what_if` objects of `fkp eval --errors --json`."""
        t = self.types
        per_image = t.counts_per_image()
        typed = per_image.sum(axis=1) > 0

        def rows(matrix: np.ndarray, names) -> dict[str, dict[str, int]]:
            return {name: dict(zip(ERROR_TYPES, (int(x) for x in row)))
                    for name, row in zip(names, matrix) if row.any()}

        errors = {
            "t_good": t.t_good, "t_miss": t.t_miss,
            "counts": self.counts(),
            "per_category": rows(t.counts_per_category(), CATEGORIES),
            "per_keypoint": rows(t.counts_per_keypoint(), KEYPOINTS),
            "per_image": rows(per_image[typed], (str(i) for i in self.image_ids[typed])),
        }
        what = [{"fixed": s.fixed, "ne": json_number(s.ne), "points": s.points} for s in self.what_if]
        return {"errors": errors, "what_if": what}


def analyze_errors(gt: Annotations, pred: Annotations, t_good: float = DEFAULT_T_GOOD,
                   t_miss: float = DEFAULT_T_MISS, missing_penalty: float = 1.0,
                   intersect: bool = False) -> ErrorAnalysis:
    """Error types and what-if of `pred` against `gt`, rows matched by image id (as `evaluate`)."""
    if not gt.has_keypoints or not pred.has_keypoints:
        raise ValueError("both files need keypoint columns to analyse errors")
    coords, vis, matched = align_predictions(gt, pred, copy=False)
    if intersect and not matched.all():
        vis = np.where(matched[:, None], vis, -1)
    types = classify_errors(gt.coords, gt.visibility, np.asarray(gt.categories, dtype=np.int64),
                            coords, vis, t_good, t_miss, missing_penalty)
    if intersect and not matched.all():
        # Images with no prediction row are not scored at all with --intersect.
        types.errors[~matched] = np.nan
        types.missing[~matched] = False
    return ErrorAnalysis(gt.image_ids, types, what_if(types))
