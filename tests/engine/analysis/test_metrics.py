"""The Normalized Error metric: hand-computed cases, exclusions, missing predictions, the golden check."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from engine.io.annotations import Annotations, load_annotations
from engine.analysis.ne import evaluate, normalized_errors
from engine.schema import CATEGORIES, KEYPOINT_INDEX

DATA = Path(__file__).resolve().parents[2] / "data" / "fashionai"
K = KEYPOINT_INDEX


def blank(n: int, category: str = "blouse") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cats = np.full(n, CATEGORIES.index(category), dtype=np.int8)
    coords = np.full((n, 24, 2), -1, dtype=np.float32)
    vis = np.full((n, 24), -1, dtype=np.int8)
    return cats, coords, vis


def put(coords, vis, row, name, xy, v) -> None:
    coords[row, K[name]] = xy
    vis[row, K[name]] = v


def two_blouses() -> tuple[Annotations, Annotations]:
    """GT: image a (normalizer 100, 2 visible points), image b (normalizer 50, 1 visible, 1 occluded).

    Predictions: a's points off by 5 and 10 px, b's visible point off by 4 px, b's occluded one
    off by 40 px (must not count).
    """
    cats, gc, gv = blank(2)
    put(gc, gv, 0, "armpit_left", (0, 0), 0)  # occluded normalizer points still define s
    put(gc, gv, 0, "armpit_right", (100, 0), 0)
    put(gc, gv, 0, "neckline_left", (10, 10), 1)
    put(gc, gv, 0, "neckline_right", (20, 10), 1)
    put(gc, gv, 1, "armpit_left", (0, 0), 1)
    put(gc, gv, 1, "armpit_right", (30, 40), 1)
    put(gc, gv, 1, "center_front", (5, 5), 0)
    gt = Annotations.from_arrays(["a", "b"], cats, gc, gv)
    pc, pv = gc.copy(), gv.copy()
    pv[pv == 0] = 1
    pc[0, K["neckline_left"]] += (3, 4)      # 5 px / 100
    pc[0, K["neckline_right"]] += (6, 8)     # 10 px / 100
    pc[1, K["armpit_left"]] += (0, 4)        # 4 px / 50
    pc[1, K["center_front"]] += (40, 0)      # occluded in GT: not scored
    pred = Annotations.from_arrays(["b", "a"], cats, pc[::-1], pv[::-1])  # any order
    return gt, pred


def test_hand_computed_pooled_ne() -> None:
    gt, pred = two_blouses()
    result = evaluate(gt, pred)
    # a: 0.05 + 0.10 ; b: armpit_left 4/50 = 0.08, armpit_right exact 0 -> pooled over 4 points
    assert result.n_visible == 4 and result.n_images == 2
    assert result.ne == pytest.approx((0.05 + 0.10 + 0.08 + 0.0) / 4)
    np.testing.assert_allclose(result.per_image, [0.075, 0.04])
    assert result.per_category == {"blouse": {"ne": pytest.approx(0.0575), "n": 4}}
    assert result.per_keypoint["neckline_right"] == {"ne": pytest.approx(0.10), "n": 1}
    assert "center_front" not in result.per_keypoint  # occluded GT points are never scored
    assert math.isnan(result.per_image_errors[1, K["center_front"]])
    assert result.missing == 0 and result.excluded == []


def test_pooling_is_not_a_mean_of_image_means() -> None:
    cats, gc, gv = blank(2, "skirt")
    for r in range(2):
        put(gc, gv, r, "waistband_left", (0, 0), 1)
        put(gc, gv, r, "waistband_right", (100, 0), 1)
    put(gc, gv, 0, "hemline_left", (0, 200), 1)
    put(gc, gv, 0, "hemline_right", (100, 200), 1)
    pc = gc.copy()
    pc[1, K["waistband_left"]] = (30, 0)  # image 1: errors 0.3 and 0 ; image 0: four zeros
    gt = Annotations.from_arrays(["x", "y"], cats, gc, gv)
    result = evaluate(gt, Annotations.from_arrays(["x", "y"], cats, pc, gv))
    assert result.ne == pytest.approx(0.3 / 6)
    assert np.nanmean(result.per_image) == pytest.approx(0.15 / 2)  # the unofficial per-image mean


def test_missing_predictions_get_the_penalty_and_are_counted() -> None:
    gt, pred = two_blouses()
    only_a = pred.subset([1])
    only_a.visibility[0, K["neckline_right"]] = -1  # an explicit -1_-1_-1 prediction
    result = evaluate(gt, only_a)
    # a: 0.05 + 1.0 (missing) ; b: no row -> both visible points missing
    assert result.missing == 3 and result.unmatched_gt == 1
    assert result.ne == pytest.approx((0.05 + 1.0 + 1.0 + 1.0) / 4)
    half = evaluate(gt, only_a, missing_penalty=0.5)
    assert half.ne == pytest.approx((0.05 + 0.5 + 0.5 + 0.5) / 4)


def test_intersect_scores_only_images_in_both_files() -> None:
    gt, pred = two_blouses()
    result = evaluate(gt, pred.subset([1]), intersect=True)
    assert result.n_images == 1 and result.n_visible == 2 and result.missing == 0
    assert result.ne == pytest.approx(0.075)
    assert math.isnan(result.per_image[1])


def test_images_without_a_normalizer_are_excluded_with_a_reason() -> None:
    cats, gc, gv = blank(3, "trousers")
    for r in range(3):
        put(gc, gv, r, "crotch", (50, 50), 1)
        put(gc, gv, r, "waistband_left", (0, 0), 1)
        put(gc, gv, r, "waistband_right", (80, 0), 1)
    put(gc, gv, 1, "waistband_right", (-1, -1), -1)   # absent normalizer point
    put(gc, gv, 2, "waistband_right", (0, 0), 1)      # zero length
    gt = Annotations.from_arrays(["ok", "absent", "zero"], cats, gc, gv)
    pc = gc.copy()
    pc[:, K["crotch"]] += (8, 0)
    result = evaluate(gt, Annotations.from_arrays(["ok", "absent", "zero"], cats, pc, gv))
    assert result.excluded == [
        {"image_id": "absent", "reason": "normalizer point waistband_right absent (v=-1)"},
        {"image_id": "zero", "reason": "normalizer length is zero (waistband_left and waistband_right coincide)"},
    ]
    assert result.n_images == 1 and result.n_visible == 3
    assert result.ne == pytest.approx(0.1 / 3)


def test_normalized_errors_on_plain_arrays() -> None:
    gt, pred = two_blouses()
    pred_aligned = pred.subset([1, 0])
    errors, s, missing = normalized_errors(gt.coords, gt.visibility, gt.categories,
                                           pred_aligned.coords, pred_aligned.visibility)
    np.testing.assert_allclose(s, [100.0, 50.0])
    assert errors.shape == (2, 24) and errors.dtype == np.float64
    assert errors[0, K["neckline_left"]] == pytest.approx(0.05)
    assert np.isnan(errors[0, K["armpit_left"]])  # occluded in GT
    nan_pred = pred_aligned.coords.astype(np.float64)
    nan_pred[0, K["neckline_left"]] = np.nan  # no visibility given: NaN coords mean missing
    errors, _, missing = normalized_errors(gt.coords, gt.visibility, gt.categories, nan_pred, None, 2.0)
    assert errors[0, K["neckline_left"]] == 2.0 and missing.sum() == 1


def test_golden_real_predictions_against_val() -> None:
    gt = load_annotations(DATA / "val.csv")
    pred = load_annotations(DATA / "pred_blouse_test_b.csv")
    result = evaluate(gt, pred, intersect=True)
    assert result.n_images == 172
    assert round(100 * result.ne, 3) == 3.979
    # not the per-image mean (4.179 %), and occluded points not counted (that would give 5.281 %)
    assert round(100 * float(np.nanmean(result.per_image)), 3) == 4.179
    occluded_too = gt.copy()
    occluded_too.visibility[occluded_too.visibility == 0] = 1
    assert round(100 * evaluate(occluded_too, pred, intersect=True).ne, 3) == 5.281
    assert sum(v["n"] for v in result.per_keypoint.values()) == result.n_visible
    # without --intersect every other val image counts as entirely missing
    full = evaluate(gt, pred)
    assert full.unmatched_gt == len(gt) - 172 and full.missing > 0 and len(full.excluded) == 40


def test_to_json_is_serializable_and_complete() -> None:
    gt, pred = two_blouses()
    doc = json.loads(json.dumps(evaluate(gt, pred).to_json()))
    assert {"ne", "n_visible", "n_images", "per_category", "per_keypoint", "per_image", "excluded",
            "missing"} <= doc.keys()
    assert doc["per_image"] == {"a": pytest.approx(0.075), "b": pytest.approx(0.04)}


def test_duplicate_prediction_ids_are_refused() -> None:
    gt, pred = two_blouses()
    dup = Annotations.from_arrays(["a", "a"], pred.categories, pred.coords, pred.visibility)
    with pytest.raises(ValueError, match="more than once"):
        evaluate(gt, dup)


def test_a_test_split_cannot_be_scored() -> None:
    gt, _ = two_blouses()
    with pytest.raises(ValueError, match="no keypoint"):
        evaluate(Annotations.from_arrays(["a"], [0]), gt)
