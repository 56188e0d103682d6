"""Normalized Error (NE), the FashionAI challenge metric, exactly as the challenge scored it.

NE pools every ground-truth keypoint with v = 1 (occluded v = 0 points are not scored):

    NE = sum_{i,k} (d_ik / s_i) [v_ik = 1]  /  sum_{i,k} [v_ik = 1]

`d_ik` is the distance between prediction and ground truth, `s_i` the ground-truth distance
between the category's normalizer pair (`schema.NORMALIZER_PAIRS`), whatever those two points'
visibility (0 or 1). An image whose normalizer cannot be computed (a normalizer point absent,
or zero length) is excluded and reported. A visible point with no prediction (no row, or
`-1_-1_-1`) scores `missing_penalty` (1.0 by default) and is counted separately.

Beyond the number, `engine.analysis.error_types` types every scored point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from engine.io.annotations import Annotations
from engine.schema import CATEGORIES, KEYPOINTS, NORMALIZER_PAIRS, NUM_KEYPOINTS


class PointErrors(NamedTuple):
    """Per-point normalized errors of N images (see `normalized_errors`)."""

    errors: np.ndarray      # (N, 24) float64; NaN where the point is not scored
    normalizer: np.ndarray  # (N,) float64; NaN: a normalizer point is absent, 0: zero length
    missing: np.ndarray     # (N, 24) bool; scored points that had no prediction


def normalizers(gt_coords: np.ndarray, gt_visibility: np.ndarray, categories: np.ndarray) -> np.ndarray:
    """(N,) ground-truth normalizer lengths; NaN where a normalizer point is absent (v = -1)."""
    pairs = NORMALIZER_PAIRS[np.asarray(categories, dtype=np.int64)]  # (N, 2)
    coords = np.asarray(gt_coords).reshape(-1, 2)
    vis = np.asarray(gt_visibility).reshape(-1)
    # Flat indices: one `take` is much faster than fancy indexing with two index arrays.
    first = np.arange(len(pairs)) * NUM_KEYPOINTS
    i, j = first + pairs[:, 0], first + pairs[:, 1]
    delta = coords.take(i, axis=0).astype(np.float64) - coords.take(j, axis=0)
    s = np.hypot(delta[:, 0], delta[:, 1])
    s[(vis.take(i) == -1) | (vis.take(j) == -1)] = np.nan
    return s


def normalized_errors(
    gt_coords: np.ndarray,
    gt_visibility: np.ndarray,
    categories: np.ndarray,
    pred_coords: np.ndarray,
    pred_visibility: np.ndarray | None = None,
    missing_penalty: float = 1.0,
) -> PointErrors:
    """Normalized error of every scored point, on aligned arrays (row i of gt <-> row i of pred).

    A point is scored when its ground truth has v = 1 and its image's normalizer is positive.
    A prediction is missing where `pred_visibility` is -1 or its coordinates are not finite;
    such a scored point gets `missing_penalty`.
    """
    gt = np.asarray(gt_coords)
    pred = np.asarray(pred_coords)
    gv = np.asarray(gt_visibility)
    n = gt.shape[0]
    if gt.shape != (n, NUM_KEYPOINTS, 2) or pred.shape != gt.shape or gv.shape != (n, NUM_KEYPOINTS):
        raise ValueError(f"shape mismatch: gt {gt.shape}, gt visibility {gv.shape}, pred {pred.shape}")
    s = normalizers(gt, gv, categories)
    # Distances in the inputs' precision (float32 for Annotations: exact to ~1e-7 relative),
    # the division and everything after in float64.
    dtype = np.result_type(gt.dtype, pred.dtype, np.float32)
    diff = np.ascontiguousarray(pred.astype(dtype, copy=False) - gt)
    # (dx, dy) pairs viewed as complex numbers: abs() is a fast, overflow-safe hypot.
    d = np.abs(diff.view(np.result_type(dtype, np.complex64))[:, :, 0])
    have = np.isfinite(d)
    if pred_visibility is not None:
        have &= np.asarray(pred_visibility) != -1
    with np.errstate(invalid="ignore", divide="ignore"):
        usable = s > 0  # False for NaN too
        errors = np.divide(d, s[:, None], dtype=np.float64)
    scored = (gv == 1) & usable[:, None]
    missing = scored & ~have
    if not have.all():
        errors = np.where(have, errors, missing_penalty)
    errors = np.where(scored, errors, np.nan)
    return PointErrors(errors, s, missing)


def pooled_ne(errors: np.ndarray, axis: int | None = None) -> float | np.ndarray:
    """NE of point errors (NaN: not scored): the mean over the scored points, of all of them or
    along `axis` (NaN where none is scored). The one aggregation every NE figure is made with."""
    scored = ~np.isnan(errors)
    ne = _mean(np.where(scored, errors, 0.0).sum(axis=axis), np.count_nonzero(scored, axis=axis))
    return float(ne) if axis is None else ne


def _mean(total, n):
    """total / n, NaN where n is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.asarray(n) > 0, total / np.maximum(n, 1), np.nan)


def per_image_ne(errors: np.ndarray) -> np.ndarray:
    """(N,) NE of each image from its (N, 24) point errors (NaN where no point is scored)."""
    return pooled_ne(errors, axis=1)


def grouped_ne(errors: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """(n_groups,) NE of the images of each group (a category code per row, say); NaN if none scored."""
    scored = ~np.isnan(errors)
    n = np.bincount(groups, weights=np.count_nonzero(scored, axis=1), minlength=n_groups)
    return _mean(np.bincount(groups, weights=np.where(scored, errors, 0.0).sum(axis=1), minlength=n_groups), n)


@dataclass
class Evaluation:
    """NE of a prediction file against ground truth, with the breakdowns an analyst needs.

    `per_image` and `per_image_errors` are aligned with the ground-truth rows (NaN where not
    scored). `n_images` counts images with at least one scored point.
    """

    ne: float
    n_visible: int
    n_images: int
    per_category: dict[str, dict[str, Any]]
    per_keypoint: dict[str, dict[str, Any]]
    per_image: np.ndarray
    per_image_errors: np.ndarray
    excluded: list[dict[str, str]]
    missing: int
    image_ids: np.ndarray = field(repr=False)
    unmatched_gt: int = 0     # ground-truth images with no prediction row
    unmatched_pred: int = 0   # prediction rows whose image is not in the ground truth

    def to_json(self) -> dict[str, Any]:
        """The `fkp eval --json` object (fractions, not percent; null where undefined)."""
        ok = np.isfinite(self.per_image)
        return {
            "ne": json_number(self.ne),
            "n_visible": self.n_visible,
            "n_images": self.n_images,
            "per_category": {k: {"ne": json_number(v["ne"]), "n": v["n"]} for k, v in self.per_category.items()},
            "per_keypoint": {k: {"ne": json_number(v["ne"]), "n": v["n"]} for k, v in self.per_keypoint.items()},
            "per_image": {str(i): float(x) for i, x in zip(self.image_ids[ok], self.per_image[ok])},
            "excluded": list(self.excluded),
            "missing": self.missing,
            "unmatched_gt": self.unmatched_gt,
            "unmatched_pred": self.unmatched_pred,
        }


def json_number(x: float | None) -> float | None:
    """A float for JSON: None where it is missing or not finite."""
    return None if x is None or not math.isfinite(x) else float(x)


def align_predictions(gt: Annotations, pred: Annotations, copy: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prediction coords (N_gt, 24, 2) and visibility aligned to gt rows by image id.

    Returns (coords, visibility, matched); unmatched rows are NaN / -1 / False. Without `copy`,
    prediction rows already in gt order are returned as they are, not copied.
    """
    if len(gt) == len(pred) and gt.image_ids.tolist() == pred.image_ids.tolist():
        # Same rows in the same order (our own prediction files): no hashing needed.
        coords, vis = (pred.coords.copy(), pred.visibility.copy()) if copy else (pred.coords, pred.visibility)
        return coords, vis, np.ones(len(gt), dtype=bool)
    index = pred.id_index()  # built while loading, so matching is one dict look-up per row
    if len(index) != len(pred):
        ids = pd.Index(pred.image_ids, dtype=object)
        raise ValueError(f"predictions list image {ids[ids.duplicated()][0]} more than once")
    get = index.get
    where = np.array([get(i, -1) for i in gt.image_ids.tolist()], dtype=np.int64)
    matched = where >= 0
    if len(pred) == 0:  # nothing to take rows from: every row is unmatched
        coords = np.empty((len(gt), NUM_KEYPOINTS, 2), np.float32)
        vis = np.empty((len(gt), NUM_KEYPOINTS), np.int8)
    else:
        take = np.where(matched, where, 0)
        coords = np.take(pred.coords, take, axis=0)
        vis = np.take(pred.visibility, take, axis=0)
    if not matched.all():
        coords = coords.astype(np.float32, copy=False)
        coords[~matched] = np.nan
        vis[~matched] = -1
    return coords, vis, matched


def evaluate(gt: Annotations, pred: Annotations, missing_penalty: float = 1.0,
             intersect: bool = False) -> Evaluation:
    """Score `pred` against `gt`, matching rows by image id in any order.

    Without `intersect`, a ground-truth image with no prediction row has all its visible
    points missing; with it, only images present in both files are scored. The ground
    truth's category decides which points count and the normalizer.
    """
    if not gt.has_keypoints:
        raise ValueError("the ground truth has no keypoint columns (a test split cannot be scored)")
    if not pred.has_keypoints:
        raise ValueError("the predictions have no keypoint columns")
    coords, vis, matched = align_predictions(gt, pred, copy=False)
    cats = np.asarray(gt.categories, dtype=np.int64)
    errors, s, missing = normalized_errors(gt.coords, gt.visibility, cats, coords, vis, missing_penalty)
    in_set = matched if intersect else np.ones(len(gt), dtype=bool)
    if not in_set.all():
        errors[~in_set] = np.nan
        missing &= in_set[:, None]

    # One pass over the point errors; every figure below is a ratio of these sums (_mean).
    scored = ~np.isnan(errors)
    filled = np.where(scored, errors, 0.0)
    per_point_n, per_point_sum = np.count_nonzero(scored, axis=1), filled.sum(axis=1)
    per_image = _mean(per_point_sum, per_point_n)
    n_visible = int(per_point_n.sum())
    ne = float(_mean(per_point_sum.sum(), n_visible))

    cat_n = np.bincount(cats, weights=per_point_n, minlength=len(CATEGORIES))
    cat_ne = _mean(np.bincount(cats, weights=per_point_sum, minlength=len(CATEGORIES)), cat_n)
    per_category = {CATEGORIES[c]: {"ne": float(cat_ne[c]), "n": int(cat_n[c])}
                    for c in range(len(CATEGORIES)) if cat_n[c] > 0}
    kp_n = np.count_nonzero(scored, axis=0)
    kp_ne = _mean(filled.sum(axis=0), kp_n)
    per_keypoint = {KEYPOINTS[k]: {"ne": float(kp_ne[k]), "n": int(kp_n[k])}
                    for k in range(NUM_KEYPOINTS) if kp_n[k] > 0}

    return Evaluation(
        ne=ne, n_visible=n_visible, n_images=int((per_point_n > 0).sum()),
        per_category=per_category, per_keypoint=per_keypoint,
        per_image=per_image, per_image_errors=errors,
        excluded=_excluded(gt, s, in_set), missing=int(missing.sum()),
        image_ids=gt.image_ids,
        unmatched_gt=int((~matched).sum()),
        unmatched_pred=int(len(pred) - matched.sum()),
    )


def _excluded(gt: Annotations, s: np.ndarray, in_set: np.ndarray) -> list[dict[str, str]]:
    """Images of the scored set whose normalizer cannot be computed, with the reason."""
    with np.errstate(invalid="ignore"):
        bad = in_set & ~(s > 0)
    out = []
    for i in np.flatnonzero(bad):
        a, b = NORMALIZER_PAIRS[gt.categories[i]]
        if np.isnan(s[i]):
            absent = [KEYPOINTS[k] for k in (a, b) if gt.visibility[i, k] == -1]
            reason = f"normalizer point {' and '.join(absent)} absent (v=-1)"
        else:
            reason = f"normalizer length is zero ({KEYPOINTS[a]} and {KEYPOINTS[b]} coincide)"
        out.append({"image_id": str(gt.image_ids[i]), "reason": reason})
    return out

