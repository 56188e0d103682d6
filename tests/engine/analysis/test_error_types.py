"""Error types (good, jitter, inversion, miss), the fix-what-if and suspected label errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.io.annotations import Annotations, load_annotations, save_annotations
from engine.cli import main
from engine.analysis.label_errors import align_scores, suspected_label_errors, wrong_side
from engine.analysis.error_types import (
    ERROR_TYPES, GOOD, INVERSION, JITTER, MISS, UNTYPED, analyze_errors, classify_errors, what_if,
)
from engine.analysis.ne import evaluate
from engine.schema import CATEGORIES, CATEGORY_MASK, FLIP_PAIRS, FLIP_PERMUTATION, KEYPOINT_INDEX

DATA = Path(__file__).resolve().parents[2] / "data" / "fashionai"
K = KEYPOINT_INDEX
BLOUSE = CATEGORIES.index("blouse")

# An upright blouse with armpits 100 px apart (s = 100): every offset below is e * 100 px.
BLOUSE_POINTS = {
    "neckline_left": (40, 10), "neckline_right": (60, 10), "center_front": (50, 25),
    "shoulder_left": (20, 20), "shoulder_right": (80, 20),
    "armpit_left": (0, 60), "armpit_right": (100, 60),
    "cuff_left_in": (-10, 120), "cuff_left_out": (-30, 115),
    "cuff_right_in": (110, 120), "cuff_right_out": (130, 115),
    "top_hem_left": (5, 200), "top_hem_right": (95, 200),
}


def blouses(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    coords = np.full((n, 24, 2), -1, dtype=np.float32)
    vis = np.full((n, 24), -1, dtype=np.int8)
    for name, xy in BLOUSE_POINTS.items():
        coords[:, K[name]] = xy
        vis[:, K[name]] = 1
    return np.full(n, BLOUSE, dtype=np.int8), coords, vis


def typed(pred_coords, gt=None, **kw):
    cats, coords, vis = gt if gt is not None else blouses(len(pred_coords))
    return classify_errors(coords, vis, cats, pred_coords, **kw)


def test_each_error_type_on_constructed_points() -> None:
    cats, gt, vis = blouses(1)
    pred = gt.copy()
    pred[0, K["shoulder_left"]] += (3, 4)          # e = 0.05: good (boundary is inclusive)
    pred[0, K["shoulder_right"]] += (6, 8)         # e = 0.10: jitter
    pred[0, K["top_hem_left"]] += (0, 21)          # e = 0.21, far from top_hem_right: miss
    pred[0, K["cuff_left_in"]] = gt[0, K["cuff_right_in"]] + (3, 0)   # at the twin's point: inversion
    pred[0, K["center_front"]] += (30, 0)          # no twin: a miss, never an inversion
    t = typed(pred, (cats, gt, vis))
    row = t.types[0]
    assert row[K["shoulder_left"]] == GOOD
    assert row[K["shoulder_right"]] == JITTER
    assert row[K["top_hem_left"]] == MISS
    assert row[K["cuff_left_in"]] == INVERSION
    assert row[K["center_front"]] == MISS
    assert row[K["neckline_left"]] == GOOD
    assert t.twin_errors[0, K["cuff_left_in"]] == pytest.approx(0.03)
    assert np.isnan(t.twin_errors[0, K["center_front"]])
    assert (row[~CATEGORY_MASK[BLOUSE]] == UNTYPED).all()


def test_inversion_wins_over_jitter_and_needs_the_twin_within_t_miss() -> None:
    cats, gt, vis = blouses(3)
    pred = gt.copy()
    # 15 px from its own neckline point, 5 px from the twin's (20 px apart): an inversion.
    pred[0, K["neckline_left"]] += (15, 0)
    # Nearer the twin, but 0.25 from it (> t_miss) and 0.3 from its own: a miss.
    pred[1, K["top_hem_left"]] = gt[1, K["top_hem_right"]] + (0, 25)
    pred[1, K["top_hem_left"], 0] -= 10
    # The twin is absent from the ground truth: whatever the position, not an inversion.
    vis[2, K["cuff_right_in"]] = -1
    gt[2, K["cuff_right_in"]] = -1
    pred[2, K["cuff_left_in"]] = (110, 120)
    t = typed(pred, (cats, gt, vis))
    assert t.types[0, K["neckline_left"]] == INVERSION
    assert t.types[1, K["top_hem_left"]] == MISS
    assert t.types[2, K["cuff_left_in"]] == MISS


def test_a_pure_left_right_swap_is_an_inversion_on_every_pair() -> None:
    cats, gt, vis = blouses(2)
    pred = gt[:, FLIP_PERMUTATION]
    t = typed(pred, (cats, gt, vis))
    paired = [k for pair in FLIP_PAIRS for k in pair if CATEGORY_MASK[BLOUSE, k]]
    assert (t.types[:, paired] == INVERSION).all()
    assert (t.types[:, K["center_front"]] == GOOD).all()
    assert t.images_with("inversion").all() and t.images_with(INVERSION).all()
    assert t.counts_per_image()[:, INVERSION].tolist() == [len(paired)] * 2


def test_thresholds_are_configurable_and_checked() -> None:
    cats, gt, vis = blouses(1)
    pred = gt.copy()
    pred[0, K["shoulder_right"]] += (6, 8)  # e = 0.10
    assert typed(pred.copy(), (cats, gt, vis)).types[0, K["shoulder_right"]] == JITTER
    assert typed(pred.copy(), (cats, gt, vis), t_good=0.1).types[0, K["shoulder_right"]] == GOOD
    assert typed(pred.copy(), (cats, gt, vis), t_good=0.01, t_miss=0.05).types[0, K["shoulder_right"]] == MISS
    with pytest.raises(ValueError, match="t_good <= t_miss"):
        typed(pred, (cats, gt, vis), t_good=0.3, t_miss=0.2)


def test_counts_per_image_keypoint_and_category() -> None:
    cats, gt, vis = blouses(2)
    cats[1] = CATEGORIES.index("dress")  # a dress with the same points (all are dress keypoints too)
    vis[1, K["top_hem_left"]] = vis[1, K["top_hem_right"]] = -1
    gt[1, K["top_hem_left"]] = gt[1, K["top_hem_right"]] = -1
    pred = gt.copy()
    pred[0, K["shoulder_right"]] += (6, 8)
    pred[1, K["shoulder_right"]] += (60, 80)
    vis[0, K["center_front"]] = 0  # occluded: not scored, not typed
    t = classify_errors(gt, vis, cats, pred)
    per_image = t.counts_per_image()
    assert per_image.tolist() == [[11, 1, 0, 0], [10, 0, 0, 1]]
    per_kp = t.counts_per_keypoint()
    assert per_kp[K["shoulder_right"]].tolist() == [0, 1, 0, 1]
    assert per_kp[K["center_front"]].tolist() == [1, 0, 0, 0]
    per_cat = t.counts_per_category()
    assert per_cat[BLOUSE].tolist() == [11, 1, 0, 0]
    assert per_cat[CATEGORIES.index("dress")].tolist() == [10, 0, 0, 1]
    assert per_cat.sum() == per_image.sum() == per_kp.sum()


def test_points_without_prediction_are_not_typed_but_counted_missing() -> None:
    cats, gt, vis = blouses(1)
    pred = gt.copy()
    pred_vis = vis.copy()
    pred_vis[0, K["cuff_left_in"]] = -1
    t = classify_errors(gt, vis, cats, pred, pred_vis)
    assert t.types[0, K["cuff_left_in"]] == UNTYPED
    assert t.missing[0, K["cuff_left_in"]]


def mixed_prediction() -> tuple[Annotations, Annotations]:
    """Four blouses with misses, inversions, jitter and good points, and one missing point."""
    cats, gt, vis = blouses(4)
    pred = gt.copy()
    pred_vis = vis.copy()
    pred[:, :, 0] += 2                                                   # every point 0.02 off (good)
    pred[0, K["top_hem_left"]] += (0, 40)                                # miss
    pred[1, K["cuff_left_out"]], pred[1, K["cuff_right_out"]] = (       # a swapped pair, 0.04 residual
        gt[1, K["cuff_right_out"]] + (4, 0), gt[1, K["cuff_left_out"]] + (4, 0))
    pred[2, K["shoulder_left"]] = gt[2, K["shoulder_right"]] + (0, 10)  # inversion with 0.10 residual
    pred[3, K["armpit_left"]] += (8, 0)                                  # jitter
    pred_vis[3, K["center_front"]] = -1                                  # no prediction
    ids = [f"b{i}" for i in range(4)]
    return Annotations.from_arrays(ids, cats, gt, vis), Annotations.from_arrays(ids, cats, pred, pred_vis)


def test_what_if_is_cumulative_monotone_in_coco_analyze_order_and_ends_at_zero() -> None:
    gt, pred = mixed_prediction()
    analysis = analyze_errors(gt, pred)
    steps = analysis.what_if
    assert [s.fixed for s in steps] == ["nothing", "miss", "inversion", "jitter", "good"]
    assert steps[0].ne == pytest.approx(evaluate(gt, pred).ne)
    ne = [s.ne for s in steps]
    assert all(a >= b for a, b in zip(ne, ne[1:]))
    assert ne[-1] == 0.0
    assert analysis.counts() == {"good": 46, "jitter": 1, "inversion": 3, "miss": 1, "no_prediction": 1}

    # Each step by hand: the error array with that kind (and the earlier ones) corrected.
    t = analysis.types
    e = np.where(np.isnan(t.errors), 0.0, t.errors)
    n = np.count_nonzero(~np.isnan(t.errors))
    e[(t.types == MISS) | t.missing] = 0
    assert ne[1] == pytest.approx(e.sum() / n)
    inv = t.types == INVERSION
    e[inv] = t.twin_errors[inv]
    assert ne[2] == pytest.approx(e.sum() / n)
    assert t.twin_errors[1, K["cuff_left_out"]] == pytest.approx(0.04)
    # The fixed inversion with 0.10 residual is jitter now and goes with the jitter step.
    e[(t.types == JITTER) | (inv & (t.twin_errors > t.t_good))] = 0
    assert ne[3] == pytest.approx(e.sum() / n)
    assert [s.points for s in steps] == [0, 2, 3, 2, 48]


def test_what_if_of_a_perfect_prediction_is_zero_throughout() -> None:
    cats, gt, vis = blouses(2)
    steps = what_if(classify_errors(gt, vis, cats, gt.copy()))
    assert [s.ne for s in steps] == [0.0] * 5


def test_intersect_leaves_images_without_predictions_out() -> None:
    gt, pred = mixed_prediction()
    some = pred.subset([0, 1])
    with_all = analyze_errors(gt, some)
    only_both = analyze_errors(gt, some, intersect=True)
    assert with_all.counts()["no_prediction"] == 2 * len(BLOUSE_POINTS)
    assert only_both.counts()["no_prediction"] == 0
    assert only_both.what_if[0].ne == pytest.approx(evaluate(gt, some, intersect=True).ne)


def test_error_analysis_json() -> None:
    gt, pred = mixed_prediction()
    obj = json.loads(json.dumps(analyze_errors(gt, pred).to_json()))
    assert set(obj) == {"errors", "what_if"}
    assert obj["errors"]["counts"]["inversion"] == 3
    assert obj["errors"]["per_image"]["b2"] == {"good": 12, "jitter": 0, "inversion": 1, "miss": 0}
    assert obj["errors"]["per_keypoint"]["top_hem_left"]["miss"] == 1
    assert obj["errors"]["per_category"]["blouse"]["jitter"] == 1
    assert obj["what_if"][-1] == {"fixed": "good", "ne": 0.0, "points": 48}


# --- suspected label errors -------------------------------------------------------------------


def test_wrong_side_pair_is_flagged_only_on_rigid_pairs_of_upright_garments() -> None:
    cats, gt, vis = blouses(3)
    gt[0, [K["shoulder_left"], K["shoulder_right"]]] = gt[0, [K["shoulder_right"], K["shoulder_left"]]]
    gt[1, [K["cuff_left_out"], K["cuff_right_out"]]] = gt[1, [K["cuff_right_out"], K["cuff_left_out"]]]  # crossed sleeves
    gt[2] = gt[2] * (1, -1)  # upside down: left/right order says nothing
    gt[2, [K["shoulder_left"], K["shoulder_right"]]] = gt[2, [K["shoulder_right"], K["shoulder_left"]]]
    ann = Annotations.from_arrays(["a", "b", "c"], cats, gt, vis)
    flags = wrong_side(gt, vis, cats)
    assert flags.any(axis=1).tolist() == [True, False, False]
    found = suspected_label_errors(ann)
    assert [(s.image_id, s.keypoint, s.kind) for s in found] == [("a", "shoulder_left", "wrong_side")]
    assert "right of shoulder_right" in found[0].reason


def test_wrong_side_on_real_annotations_finds_the_armpit_on_the_border() -> None:
    gt = load_annotations(DATA / "val.csv")
    found = suspected_label_errors(gt)
    assert [(s.image_id, s.keypoint) for s in found] == [
        ("Images/outwear/7e3e6816296420d9cc0329e83935fd70.jpg", "armpit_left")]


def test_confident_far_points_with_scores_and_without() -> None:
    cats, gt, vis = blouses(2)
    pred = gt.copy()
    pred[:, K["top_hem_left"]] += (0, 40)  # a miss in both images
    pred[1, K["shoulder_left"]] += (6, 8)  # image 1 has a jitter too
    ann = Annotations.from_arrays(["a", "b"], cats, gt, vis)
    types = classify_errors(gt, vis, cats, pred)
    # No scores: only image a, where the miss is the model's one non-good point.
    assert [(s.image_id, s.keypoint) for s in suspected_label_errors(ann, types)] == [("a", "top_hem_left")]
    scores = np.full((2, 24), 0.9)
    scores[0, K["top_hem_left"]] = 0.2
    scores_file_ids = ["b", "a"]
    aligned = align_scores(ann, scores_file_ids, scores)  # file rows in another order
    assert aligned[1, K["top_hem_left"]] == pytest.approx(0.2)
    # With scores: a's miss is confident (0.9), b's is not (0.2) despite b's jitter elsewhere.
    found = suspected_label_errors(ann, types, aligned)
    assert [(s.image_id, s.keypoint, s.kind) for s in found] == [("a", "top_hem_left", "confident_far")]
    assert "score 0.90" in found[0].reason


# --- fkp eval --errors ------------------------------------------------------------------------


def test_cli_eval_errors_prints_types_what_if_and_check_annotation(tmp_path, capsys) -> None:
    gt, pred = mixed_prediction()
    save_annotations(gt, tmp_path / "gt.csv")
    save_annotations(pred, tmp_path / "pred.csv")
    assert main(["eval", str(tmp_path / "gt.csv"), str(tmp_path / "pred.csv"), "--errors"]) == 0
    out = capsys.readouterr().out
    assert "inversion 3" in out and "miss 1" in out and "no prediction 1" in out
    assert "+ inversion" in out and "+ jitter" in out
    assert "check annotation: 1 suspected" in out and "top_hem_left" in out


def test_cli_eval_errors_json_and_thresholds(tmp_path, capsys) -> None:
    gt, pred = mixed_prediction()
    save_annotations(gt, tmp_path / "gt.csv")
    save_annotations(pred, tmp_path / "pred.csv")
    args = ["eval", str(tmp_path / "gt.csv"), str(tmp_path / "pred.csv"), "--errors", "--json"]
    assert main(args) == 0
    obj = json.loads(capsys.readouterr().out)
    assert {"ne", "errors", "what_if", "check_annotation"} <= set(obj)
    assert obj["errors"]["t_good"] == 0.05 and obj["errors"]["counts"]["jitter"] == 1
    assert main(args + ["--t-good", "0.1", "--t-miss", "0.5"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["errors"]["t_miss"] == 0.5 and obj["errors"]["counts"]["miss"] == 0
    assert main(args[:3] + ["--t-good", "0.1"]) == 2
    assert "need --errors" in capsys.readouterr().err


def test_cli_eval_errors_uses_the_scores_file_beside_the_predictions(tmp_path, capsys) -> None:
    from engine.io.scores import save_scores

    gt, pred = mixed_prediction()
    save_annotations(gt, tmp_path / "gt.csv")
    save_annotations(pred, tmp_path / "pred.csv")
    scores = np.full((4, 24), 0.1)
    save_scores(tmp_path / "pred.scores.csv", list(pred.image_ids), scores)
    args = ["eval", str(tmp_path / "gt.csv"), str(tmp_path / "pred.csv"), "--errors", "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["check_annotation"] == []  # low confidence: not suspected
    scores[0, K["top_hem_left"]] = 0.95
    save_scores(tmp_path / "pred.scores.csv", list(pred.image_ids), scores)
    assert main(args) == 0
    found = json.loads(capsys.readouterr().out)["check_annotation"]
    assert [(s["image_id"], s["keypoint"], s["kind"]) for s in found] == [("b0", "top_hem_left", "confident_far")]
    assert "score 0.95" in found[0]["reason"]
    assert main(args + ["--scores", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv" in capsys.readouterr().err


def test_error_type_names() -> None:
    assert ERROR_TYPES == ("good", "jitter", "inversion", "miss")
