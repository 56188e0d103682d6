"""Predicted visibility in the simulated review: a point predicted with the truth's visibility
costs no toggle, one predicted wrongly does; the AUC says how well a score separates occluded
points from visible ones."""

from __future__ import annotations

import math

import numpy as np

from engine.analysis.review_effort import occlusion_auc, prelabelled, rank_auc
from engine.io.annotations import Annotations


def _truth(vis_row) -> Annotations:
    vis = np.full((1, 24), -1, np.int8)
    vis[0, :len(vis_row)] = vis_row
    coords = np.where(vis[..., None] >= 0, np.arange(48, dtype=np.float32).reshape(1, 24, 2) * 10, -1)
    return Annotations.from_arrays(["Images/blouse/a.jpg"], [0], coords, vis)


def test_a_toggle_is_paid_only_where_the_predicted_visibility_is_wrong():
    truth = _truth([1, 1, 0, 0, 1])
    all_visible = np.where(truth.visibility >= 0, 1, -1)
    assert prelabelled(truth, truth.coords, all_visible).counts()["toggle"] == 2
    predicted = all_visible.copy()
    predicted[0, 1] = predicted[0, 2] = 0
    # Point 1 is wrongly occluded, point 3 wrongly visible: two toggles; point 2 right: none.
    assert prelabelled(truth, truth.coords, predicted).counts()["toggle"] == 2
    predicted[0, 1], predicted[0, 3] = 1, 0
    assert prelabelled(truth, truth.coords, predicted).counts()["toggle"] == 0
    # A point placed (not predicted) is toggled when it is occluded.
    missing = all_visible.copy()
    missing[0, 2] = -1
    assert prelabelled(truth, truth.coords, missing).counts() == {"place": 1, "drag": 0, "toggle": 2, "remove": 0,
                                                                  "accept": 1}


def test_the_auc_says_how_well_scores_separate_occluded_from_visible_points():
    truth = _truth([1, 1, 1, 0, 0, 1])
    visible = np.where(truth.visibility >= 0, 1, -1)
    separating = np.array([[0.9, 0.8, 0.85, 0.2, 0.3, 0.95] + [-1] * 18])
    assert occlusion_auc(truth, separating, visible) == 1.0
    mixed = np.array([[0.2, 0.9, 0.3, 0.25, 0.95, 0.8] + [-1] * 18])  # occluded points no lower than visible ones
    assert occlusion_auc(truth, mixed, visible) < 0.5
    assert occlusion_auc(truth, np.full((1, 24), 0.5), visible) == 0.5  # ties: a coin toss
    assert math.isnan(occlusion_auc(_truth([1, 1]), np.full((1, 24), 0.5), np.where(_truth([1, 1]).visibility >= 0, 1, -1)))
    assert rank_auc([3, 4], [1, 2]) == 1.0 and rank_auc([1], [1, 2]) == 0.25 and math.isnan(rank_auc([], [1]))
