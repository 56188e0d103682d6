"""The simulated reviewer's bookkeeping: each action where it belongs, in seconds."""

from __future__ import annotations

import numpy as np

from engine.analysis.review_effort import ReviewCosts, from_scratch, prelabelled, queue_gain
from engine.io.annotations import Annotations
from engine.schema import KEYPOINT_INDEX

K = KEYPOINT_INDEX


def _blouse() -> Annotations:
    """One blouse: armpits 100 px apart (its normalizer), four more points, one occluded."""
    coords = np.full((1, 24, 2), -1, np.float32)
    vis = np.full((1, 24), -1, np.int8)
    for name, xy, v in (("armpit_left", (50, 100), 1), ("armpit_right", (150, 100), 1),
                        ("neckline_left", (80, 20), 1), ("neckline_right", (120, 20), 0),
                        ("top_hem_left", (60, 200), 1), ("top_hem_right", (140, 200), 1)):
        coords[0, K[name]], vis[0, K[name]] = xy, v
    return Annotations.from_arrays(["Images/blouse/a.jpg"], [0], coords, vis)


def test_from_scratch_places_every_point_and_toggles_the_occluded():
    effort = from_scratch(_blouse())
    assert effort.counts() == {"place": 6, "drag": 0, "toggle": 1, "remove": 0, "accept": 1}
    assert effort.total == 6 * 3.0 + 0.5 + 0.5


def test_prelabelled_accepts_near_points_drags_far_ones_places_missing_and_removes_extra():
    truth = _blouse()
    pred_xy, pred_v = truth.coords.copy(), truth.visibility.copy()
    pred_v[pred_v == 0] = 1
    pred_xy[0, K["armpit_left"]] += (4, 0)        # 4 px of a 100 px normalizer: within 0.05, accepted
    pred_xy[0, K["top_hem_left"]] += (30, 0)      # 0.30: dragged
    pred_v[0, K["top_hem_right"]] = -1            # not predicted: placed
    pred_xy[0, K["cuff_left_in"]], pred_v[0, K["cuff_left_in"]] = (10, 10), 1  # not in the truth: removed
    pred_xy[0, K["waistline_left"]], pred_v[0, K["waistline_left"]] = (10, 10), 1  # not a blouse point: ignored
    costs = ReviewCosts(place=3, drag=2, toggle=0.5, remove=0.25, accept=0.5)
    effort = prelabelled(truth, pred_xy, pred_v, costs)
    assert effort.counts() == {"place": 1, "drag": 1, "toggle": 1, "remove": 1, "accept": 1}
    assert effort.total == 3 + 2 + 0.5 + 0.25 + 0.5 and effort.needs_fix.tolist() == [True]
    perfect = prelabelled(truth, truth.coords, np.where(truth.visibility >= 0, 1, -1))
    assert perfect.counts()["drag"] == 0 and perfect.counts()["place"] == 0 and perfect.total == 0.5 + 0.5


def test_queue_gain_compares_the_queues_head_with_the_overall_rate():
    needs_fix = np.array([True, True, False, False, False, False, False, False, False, False])
    confidence = np.array([0.1, 0.2, 0.9, 0.8, 0.7, 0.6, 0.95, 0.85, 0.75, 0.65])
    assert queue_gain(needs_fix, confidence, share=0.2) == 5.0  # 2 of 2 vs 2 of 10
    assert queue_gain(needs_fix, -confidence, share=0.2) == 0.0


def test_a_toggle_alone_is_a_fix_but_not_a_move():
    truth = _blouse()
    effort = prelabelled(truth, truth.coords, np.where(truth.visibility >= 0, 1, -1))  # occluded point predicted visible
    assert effort.needs_fix.tolist() == [True] and effort.needs_moving.tolist() == [False]
