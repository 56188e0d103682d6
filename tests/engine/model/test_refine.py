"""Refinement after a correction (issue 32 (a)): set points stay put, a mixed-up pair is swapped
back by setting one of it, and the simulated reviewer counts corrections with refinement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.analysis.review_effort import corrected, prelabelled
from engine.io.annotations import Annotations, load_annotations
from engine.model.refine import ImagePrediction, refine_points
from engine.model.shape_model import ShapeModel
from engine.model.targets import decode, vote_peaks
from engine.schema import CATEGORY_INDEX, CATEGORY_MASK, KEYPOINT_INDEX
from engine.synth import generate_dataset

K = KEYPOINT_INDEX
BLOUSE = CATEGORY_INDEX["blouse"]


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> Annotations:
    """Synthetic layouts, annotations only (no image is rendered)."""
    root = tmp_path_factory.mktemp("layouts")
    return load_annotations(generate_dataset(root, 600, seed=5, split="train", size=256, annotations_only=True))


@pytest.fixture(scope="module")
def shapes(layouts) -> ShapeModel:
    return ShapeModel.fit(layouts)


def _blouse_prediction(layouts: Annotations, swap: tuple[str, str] | None = None) -> tuple[np.ndarray, ImagePrediction]:
    """A complete blouse layout (the truth) and a prediction of it: every point right, each
    keypoint's one peak at its predicted point, optionally with one left/right pair swapped."""
    rows = np.flatnonzero((layouts.categories == BLOUSE) & (layouts.visibility[:, CATEGORY_MASK[BLOUSE]] >= 0).all(1))
    truth = layouts.coords[rows[0]].copy()
    coords = truth.copy()
    if swap is not None:
        a, b = K[swap[0]], K[swap[1]]
        coords[[a, b]] = coords[[b, a]]
    scores = np.where(CATEGORY_MASK[BLOUSE], 0.9, -1.0).astype(np.float32)
    peaks = np.zeros((24, 4, 2), np.float32)
    mass = np.zeros((24, 4), np.float32)
    peaks[:, 0], mass[:, 0] = coords, np.where(CATEGORY_MASK[BLOUSE], 0.9, 0.0)
    return truth, ImagePrediction(BLOUSE, coords, scores, peaks, mass)


def test_refinement_never_moves_a_point_set_by_hand(layouts, shapes):
    rng = np.random.default_rng(0)
    truth, pred = _blouse_prediction(layouts, swap=("cuff_left_out", "cuff_right_out"))
    noisy = ImagePrediction(pred.category, pred.coords + rng.normal(0, 6, pred.coords.shape).astype(np.float32),
                            pred.scores, pred.peaks + rng.normal(0, 6, pred.peaks.shape).astype(np.float32),
                            pred.peak_mass)
    points = np.flatnonzero(CATEGORY_MASK[BLOUSE])
    for _ in range(30):
        fixed = np.zeros(24, bool)
        fixed[rng.choice(points, size=rng.integers(1, len(points) + 1), replace=False)] = True
        set_xy = (truth + rng.normal(0, 3, truth.shape)).astype(np.float32)
        out = refine_points(shapes, noisy, fixed, set_xy)
        np.testing.assert_array_equal(out[fixed], set_xy[fixed])


def test_setting_one_point_of_a_swapped_pair_swaps_its_twin_back(layouts, shapes):
    truth, pred = _blouse_prediction(layouts, swap=("cuff_left_out", "cuff_right_out"))
    fixed = np.zeros(24, bool)
    fixed[K["cuff_left_out"]] = True
    out = refine_points(shapes, pred, fixed, truth)
    assert np.hypot(*(out[K["cuff_right_out"]] - truth[K["cuff_right_out"]])) < 1.0
    others = CATEGORY_MASK[BLOUSE] & ~fixed
    np.testing.assert_allclose(out[others], truth[others], atol=1.0)  # the right points stay right


def test_with_no_point_set_the_prediction_comes_back_unchanged(layouts, shapes):
    _, pred = _blouse_prediction(layouts, swap=("armpit_left", "armpit_right"))
    out = refine_points(shapes, pred, np.zeros(24, bool), np.full((24, 2), 7.0, np.float32))
    np.testing.assert_array_equal(out, pred.coords)


def _one_blouse() -> Annotations:
    """Armpits 100 px apart (the normalizer: t_good = 5 px), four more points."""
    coords = np.full((1, 24, 2), -1, np.float32)
    vis = np.full((1, 24), -1, np.int8)
    for name, xy in (("armpit_left", (50, 100)), ("armpit_right", (150, 100)), ("neckline_left", (80, 20)),
                     ("neckline_right", (120, 20)), ("top_hem_left", (60, 200)), ("top_hem_right", (140, 200))):
        coords[0, K[name]], vis[0, K[name]] = xy, 1
    return Annotations.from_arrays(["Images/blouse/a.jpg"], [BLOUSE], coords, vis)


def test_the_reviewer_with_refinement_counts_one_correction_when_one_fix_snaps_the_rest():
    truth = _one_blouse()
    pred = truth.coords + np.array([[30.0, 0.0]], np.float32)   # every point 30 px off: 6 drags without help
    pred[0, K["armpit_left"]] += (50, 0)                          # the worst, fixed first
    vis = np.where(truth.visibility >= 0, 1, -1).astype(np.int8)
    calls = []

    def snap(row: int, fixed: np.ndarray, xy: np.ndarray) -> np.ndarray:
        calls.append((row, np.flatnonzero(fixed).tolist()))
        return truth.coords[row]

    plain = corrected(truth, pred, vis)
    assert plain.corrections.tolist() == [6]
    np.testing.assert_array_equal(plain.actions, prelabelled(truth, pred, vis).actions)
    refined = corrected(truth, pred, vis, snap)
    assert refined.corrections.tolist() == [1] and calls == [(0, [K["armpit_left"]])]
    assert refined.total == 2.0 + 0.5  # one drag, the accept


def test_a_refinement_that_moves_a_good_point_out_costs_a_correction():
    truth = _one_blouse()
    pred = truth.coords.copy()
    pred[0, K["armpit_left"]] += (30, 0)
    vis = np.where(truth.visibility >= 0, 1, -1).astype(np.int8)

    def spoil(row: int, fixed: np.ndarray, xy: np.ndarray) -> np.ndarray:
        out = xy.copy()
        out[K["top_hem_right"]] += (20, 0) if not fixed[K["top_hem_right"]] else (0, 0)
        return out

    assert corrected(truth, pred, vis, spoil).corrections.tolist() == [2]


def test_the_first_vote_peak_is_decodes_point():
    out = torch.randn(2, 12, 12, 12, generator=torch.Generator().manual_seed(3)) * 3   # 4 keypoints
    xy, conf = decode(out, 6.0, 4)
    peaks, mass = vote_peaks(out, 6.0, 4, num_peaks=3)
    assert peaks.shape == (2, 4, 3, 2) and mass.shape == (2, 4, 3)
    torch.testing.assert_close(peaks[:, :, 0], xy)
    torch.testing.assert_close(mass[:, :, 0], conf)


def test_a_shape_model_loads_back_as_saved(shapes, tmp_path):
    shapes.save(tmp_path / "shapes.npz")
    again = ShapeModel.load(tmp_path / "shapes.npz")
    np.testing.assert_array_equal(again.mean, shapes.mean)
    np.testing.assert_array_equal(again.cov, shapes.cov)
    assert again.layouts.tolist() == shapes.layouts.tolist() and shapes.layouts[BLOUSE] > 50
