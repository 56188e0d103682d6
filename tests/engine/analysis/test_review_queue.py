"""The review queue in seconds (issue 31, item 4): cost capture, the seconds regressor, the signals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.analysis.review_queue import (CONFIDENCE_FEATURES, SIGNAL_FEATURES, SIGNAL_NAMES, SecondsModel,
                                          cost_capture, expected_review_seconds, fit_linear, fit_seconds_model,
                                          most_first, normalized_gain, oracle_capture)
from engine.model.detector import DetectorConfig, build_detector
from engine.model.hourglass import KeypointNet
from engine.model.package import TwoStageModel
from engine.model.pipeline import Pipeline
from engine.model.presets import get_preset
from engine.model.uncertainty import SIGNALS, SignalPipeline

# Two of ten images hold all the work.
CONCENTRATED = np.array([0.5, 0.5, 9.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0])


def test_random_order_captures_the_head_share_on_average():
    # Over every cyclic shift of the queue each image is in the head (2 of 10) exactly twice.
    shifts = [cost_capture(CONCENTRATED, np.roll(np.arange(10), k)) for k in range(10)]
    assert np.mean(shifts) == pytest.approx(0.2)


def test_the_oracle_captures_everything_when_the_costs_are_concentrated():
    oracle = oracle_capture(np.array([0.0, 0.0, 9.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0]))
    assert oracle == 1.0
    assert oracle_capture(CONCENTRATED) == pytest.approx(12.0 / 13.0)
    assert normalized_gain(oracle, oracle) == 1.0


def test_the_reversed_order_captures_least_and_gains_below_zero():
    seconds = np.array([0.0, 0.0, 9.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0])
    reversed_order = np.argsort(seconds, kind="stable")
    ours = cost_capture(seconds, reversed_order)
    assert ours == 0.0
    assert normalized_gain(ours, oracle_capture(seconds)) == pytest.approx(-0.25)   # (0 - 0.2) / (1 - 0.2)
    assert cost_capture(seconds, most_first(seconds)) == 1.0
    # Half the oracle's gain: 0.6 of the work in the head.
    assert normalized_gain(0.6, 1.0) == pytest.approx(0.5)
    assert np.isnan(normalized_gain(0.2, 0.2))   # every image costs the same: no order beats random


def test_the_regressor_recovers_a_known_linear_relation():
    rng = np.random.default_rng(0)
    design = np.column_stack([np.ones(200), rng.uniform(0, 10, (200, 3))])
    truth = np.array([0.5, 2.0, -1.0, 0.25])
    np.testing.assert_allclose(fit_linear(design, design @ truth, ridge=0.0), truth, atol=1e-9)
    noisy = design @ truth + rng.normal(0, 0.01, 200)
    np.testing.assert_allclose(fit_linear(design, noisy), truth, atol=0.05)  # the ridge pulls a little


def test_the_seconds_model_refits_the_seconds_it_made():
    rng = np.random.default_rng(1)
    scores = rng.uniform(0, 1, (300, 24))
    vis = np.where(rng.uniform(size=(300, 24)) < 0.5, 1, -1).astype(np.int8)
    vis[rng.uniform(size=(300, 24)) < 0.1] = 0
    signals = rng.uniform(0, 0.2, (300, 24, 4))  # each flag both ways
    made = SecondsModel(SIGNAL_FEATURES, (0.5, 0.1, 2.0, 0.4, 1.0))
    seconds = made.expected_seconds(scores, vis, signals)
    fitted = fit_seconds_model(seconds, scores, vis, signals, ridge=0.0)
    np.testing.assert_allclose(fitted.weights, made.weights, atol=1e-4)
    assert fit_seconds_model(seconds, scores, vis).features == CONFIDENCE_FEATURES


def test_an_image_with_nothing_predicted_comes_last():
    scores, vis = np.full((2, 24), 0.5), np.full((2, 24), -1, np.int8)
    vis[0, :4] = 1
    seconds = expected_review_seconds(scores, vis)
    assert np.isfinite(seconds[0]) and seconds[1] == -np.inf and most_first(seconds).tolist() == [0, 1]


def test_without_signals_the_less_confident_of_like_images_comes_first():
    # Images of one category: the expected seconds order the queue as the mean confidence did.
    scores = np.repeat(np.array([0.9, 0.5, 0.8, 0.2, 0.7, 0.95])[:, None], 24, axis=1)
    vis = np.full((6, 24), -1, np.int8)
    vis[:, :13] = 1
    assert most_first(expected_review_seconds(scores, vis)).tolist() == [3, 1, 4, 2, 0, 5]


PRESET = get_preset("lite").with_(
    input_size=32,
    net={"blocks": (1, 1, 1, 1), "widths": ((8, 4), (8, 4), (8, 4), (8, 4)), "stem_channels": 8,
         "decoder_channels": 8, "num_stages": 2},
)
DETECTOR = DetectorConfig(backbone="mobilenet_v3_large", min_size=64, max_size=64, fpn_channels=16, box_head_dim=16)


@pytest.mark.parametrize("flip_tta", [False, True])
def test_the_signals_come_with_the_plain_predictions_coordinates(flip_tta):
    torch.manual_seed(0)
    model = TwoStageModel(PRESET, build_detector(DETECTOR).eval(), DETECTOR, KeypointNet(PRESET.net).eval())
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (64, 80, 3), dtype=np.uint8) for _ in range(3)]
    plain = Pipeline(model, "cpu", flip_tta=flip_tta).predict_images(images, [0, 1, 3])
    coords, scores, cats, boxes, signals = SignalPipeline(model, "cpu", flip_tta=flip_tta).predict_images_with_signals(
        images, [0, 1, 3])
    for a, b in zip(plain, (coords, scores, cats, boxes)):
        np.testing.assert_array_equal(a, b)
    assert SIGNALS == SIGNAL_NAMES   # the torch-free side names them in the same order
    assert signals.shape == (3, 24, len(SIGNALS)) and np.isfinite(signals).all() and (signals >= 0).all()
    # The first signal is the decoded peak's shortfall: 1 - the score.
    np.testing.assert_allclose(signals[..., 0], 1 - scores, atol=1e-5)


def test_a_point_without_a_score_counts_as_the_least_sure():
    vis = np.ones((3, 24), np.int8)
    scores = np.full((3, 24), 0.9)
    scores[1, 0], scores[2, 0] = np.nan, 0.0  # the studio's missing score, and a score of 0
    seconds = expected_review_seconds(scores, vis)
    assert np.isfinite(seconds).all() and seconds[1] == seconds[2] > seconds[0]
