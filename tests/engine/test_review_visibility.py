"""Predicted visibility in the simulated review: a point predicted with the truth's visibility
costs no toggle, one predicted wrongly does; the confidence threshold is only used where it helps."""

from __future__ import annotations

import math

import numpy as np

from engine.analysis.review_effort import (best_visibility_threshold, occlusion_auc, prelabelled,
                                           visibility_from_confidence)
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
    scores = np.array([[0.9, 0.2, 0.1, 0.8, 0.9] + [0.5] * 19])
    predicted = visibility_from_confidence(scores, all_visible, 0.5)
    assert predicted[0, :5].tolist() == [1, 0, 0, 1, 1] and (predicted[0, 5:] == -1).all()
    # Point 1 is wrongly occluded, point 3 wrongly visible: two toggles; point 2 right: none.
    assert prelabelled(truth, truth.coords, predicted).counts()["toggle"] == 2
    assert visibility_from_confidence(scores, all_visible, None).tolist() == all_visible.tolist()
    # A point placed (not predicted) is toggled when it is occluded.
    missing = all_visible.copy()
    missing[0, 2] = -1
    assert prelabelled(truth, truth.coords, missing).counts() == {"place": 1, "drag": 0, "toggle": 2, "remove": 0,
                                                                  "accept": 1}


def test_the_threshold_is_chosen_only_when_it_saves_toggles_and_the_auc_says_how_well_scores_separate():
    truth = _truth([1, 1, 1, 0, 0, 1])
    visible = np.where(truth.visibility >= 0, 1, -1)
    separating = np.array([[0.9, 0.8, 0.85, 0.2, 0.3, 0.95] + [-1] * 18])
    assert occlusion_auc(truth, separating, visible) == 1.0
    assert best_visibility_threshold(truth, separating, visible) is not None
    t = best_visibility_threshold(truth, separating, visible)
    assert 0.3 < t <= 0.8
    assert prelabelled(truth, truth.coords, visibility_from_confidence(separating, visible, t)).counts()["toggle"] == 0
    mixed = np.array([[0.2, 0.9, 0.3, 0.25, 0.95, 0.8] + [-1] * 18])  # occluded points no lower than visible ones
    assert occlusion_auc(truth, mixed, visible) < 0.5
    assert best_visibility_threshold(truth, mixed, visible) is None
    assert occlusion_auc(truth, np.full((1, 24), 0.5), visible) == 0.5  # ties: a coin toss
    assert math.isnan(occlusion_auc(_truth([1, 1]), np.full((1, 24), 0.5), np.where(_truth([1, 1]).visibility >= 0, 1, -1)))
