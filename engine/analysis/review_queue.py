"""The review queue, measured in seconds: which images it puts first and how much of the work that is.

Cost capture: the share of a batch's total correction seconds found in the first 20 % of the
queue. Random order captures 0.20 on average; the oracle (images sorted by their true seconds)
the most any order can; the normalized gain (ours - 0.2) / (oracle - 0.2) says how much of the
oracle's advantage over random order an order earns (issue 31: goal >= 0.5).

The order: each image's expected correction seconds, a linear model over its predicted points'
features (`point_features`: the confidence, the predicted visibility and, when the prediction
carries them, `engine.model.uncertainty`'s signals), summed per image, fitted by ridge least
squares on synthetic images (`fit_seconds_model`, `benchmarks/fit_review_seconds.py`).
Without the signals (a predictions file holds confidences only) the confidence-only model orders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HEAD_SHARE = 0.2

SIGNAL_NAMES = ("uncertainty", "second_peak", "flip", "stacks")  # engine.model.uncertainty.SIGNALS (no torch here)
# Per point: 1 - confidence and whether it is predicted occluded (a toggle is likelier); with the
# signals, whether a signal is past its threshold (about the 85th percentile of the fitting images'
# points: a drag costs the same however far off a point is, so a flag rather than the raw value).
# Chosen by 5-fold cross-validation on the fitting images (docs/benchmarks.md): the flip flag
# added to the confidence 0.664 -> 0.693 normalized gain; the second peak, the stacks' disagreement
# and the raw values added nothing beyond it.
CONFIDENCE_FEATURES = ("uncertainty", "occluded")
SIGNAL_THRESHOLDS = {"flip": 0.015}
SIGNAL_FEATURES = CONFIDENCE_FEATURES + tuple(f"{name}>{t}" for name, t in SIGNAL_THRESHOLDS.items())


def cost_capture(seconds: np.ndarray, order: np.ndarray, share: float = HEAD_SHARE) -> float:
    """The share of the total `seconds` (N,) held by the first `share` of `order` (row indices,
    queue order; the head is round(share * N) images, at least one)."""
    seconds = np.asarray(seconds, np.float64)
    total = seconds.sum()
    if total <= 0:
        return float("nan")
    head = np.asarray(order)[:max(1, int(round(share * len(seconds))))]
    return float(seconds[head].sum() / total)


def oracle_capture(seconds: np.ndarray, share: float = HEAD_SHARE) -> float:
    """The most any order captures: the images sorted by their true seconds, most first."""
    return cost_capture(seconds, np.argsort(-np.asarray(seconds, np.float64), kind="stable"), share)


def normalized_gain(ours: float, oracle: float, share: float = HEAD_SHARE) -> float:
    """(ours - random) / (oracle - random), random order's capture being `share`: 1 = the oracle,
    0 = no better than random, negative = worse (NaN when no order beats random)."""
    return float((ours - share) / (oracle - share)) if oracle > share else float("nan")


def most_first(key: np.ndarray) -> np.ndarray:
    """The queue order of a key, highest first (ties in row order)."""
    return np.argsort(-np.asarray(key, np.float64), kind="stable")


def point_features(scores: np.ndarray, visibility: np.ndarray, signals: np.ndarray | None = None) -> np.ndarray:
    """(N, 24, F) features of each predicted point: `CONFIDENCE_FEATURES` from the scores, or with
    `signals` (N, 24, 4) in `SIGNAL_NAMES` order `SIGNAL_FEATURES`; 0 where nothing is predicted."""
    vis = np.asarray(visibility)
    # A point without a score (NaN in the studio, MISSING_SCORE in files) counts as unsure as can be.
    confidence = np.nan_to_num(np.asarray(scores, np.float64), nan=-1.0)
    columns = [np.clip(1.0 - confidence, 0.0, 1.0), (vis == 0).astype(np.float64)]
    if signals is not None:
        s = np.asarray(signals, np.float64)
        columns += [(s[..., SIGNAL_NAMES.index(name)] > t).astype(np.float64) for name, t in SIGNAL_THRESHOLDS.items()]
    return np.where((vis >= 0)[..., None], np.stack(columns, axis=-1), 0.0)


def image_design(features: np.ndarray, visibility: np.ndarray) -> np.ndarray:
    """(N, 2 + F) per image: 1, the count of predicted points, the sum of each point feature (a
    per-point linear model summed over the image is a linear model of these)."""
    predicted = np.asarray(visibility) >= 0
    return np.column_stack([np.ones(len(predicted)), predicted.sum(axis=1), features.sum(axis=1)])


@dataclass(frozen=True)
class SecondsModel:
    """Expected correction seconds of an image: `weights` @ `image_design` (intercept, per point, per feature)."""

    features: tuple[str, ...]
    weights: tuple[float, ...]

    def expected_seconds(self, scores: np.ndarray, visibility: np.ndarray,
                         signals: np.ndarray | None = None) -> np.ndarray:
        """(N,) expected seconds; -inf for an image with nothing predicted (nothing to check: last)."""
        if self.features == SIGNAL_FEATURES and signals is None:
            raise ValueError("this model needs the uncertainty signals")
        feats = point_features(scores, visibility, signals if self.features == SIGNAL_FEATURES else None)
        seconds = image_design(feats, visibility) @ np.asarray(self.weights, np.float64)
        return np.where((np.asarray(visibility) >= 0).any(axis=1), seconds, -np.inf)


def fit_linear(design: np.ndarray, target: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """Ridge least squares (the first column, the intercept, unpenalized; columns scaled to unit
    RMS so one `ridge` fits all) -> weights in the design's own units."""
    x, y = np.asarray(design, np.float64), np.asarray(target, np.float64)
    scale = np.sqrt((x * x).mean(axis=0))
    scale[scale == 0] = 1.0
    xs = x / scale
    penalty = ridge * len(x) * np.eye(x.shape[1])
    penalty[0, 0] = 0.0
    return np.linalg.solve(xs.T @ xs + penalty, xs.T @ y) / scale


def fit_seconds_model(seconds: np.ndarray, scores: np.ndarray, visibility: np.ndarray,
                      signals: np.ndarray | None = None, ridge: float = 1e-3) -> SecondsModel:
    """The `SecondsModel` fitted to images' true correction seconds (N,): with the signals when given."""
    feats = point_features(scores, visibility, signals)
    weights = fit_linear(image_design(feats, visibility), seconds, ridge)
    names = SIGNAL_FEATURES if signals is not None else CONFIDENCE_FEATURES
    return SecondsModel(names, tuple(round(float(w), 5) for w in weights))


# Fitted by `benchmarks/fit_review_seconds.py` (the demo model; 600 ordinary synthetic images of
# seeds 3101-3106, none of the benchmark's); see docs/benchmarks.md, "The review queue in seconds".
CONFIDENCE_MODEL = SecondsModel(CONFIDENCE_FEATURES, (-1.85096, 0.51976, 2.00133, 0.65943))
SIGNAL_MODEL = SecondsModel(SIGNAL_FEATURES, (-1.7768, 0.48338, 1.38993, 0.53242, 0.50872))


def expected_review_seconds(scores: np.ndarray, visibility: np.ndarray,
                            signals: np.ndarray | None = None) -> np.ndarray:
    """(N,) the review queue's key, most first: expected correction seconds from the signals when
    the prediction has them, else from its confidences (-inf: nothing predicted)."""
    model = SIGNAL_MODEL if signals is not None else CONFIDENCE_MODEL
    return model.expected_seconds(scores, visibility, signals)
