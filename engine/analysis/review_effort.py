"""What reviewing costs a person: a simulated reviewer's actions, converted to seconds.

The reviewer knows the truth. Annotating from scratch, every point the garment shows is placed
(and toggled to occluded when it is). Reviewing a pre-labelled image, a predicted point within
`t_good` of the truth (normalized by the image's NE normalizer) is accepted as it is, a farther
one is dragged, a missing one placed, one the truth does not have removed; a point whose
predicted visibility differs from the truth's is toggled (a model without a visibility stage
predicts every point visible). Either way the
image is then accepted (Enter). The costs per action are stated and adjustable (`ReviewCosts`).

`corrected` is the reviewer of issue 32: the worst point first, one at a time, and after each fix
the model may re-predict the points nobody touched (a `Refine` callable, so this module stays
torch-free); its corrections per image (places + drags) are the NoC of Click-Pose. Either
refinement fits it: (a) `engine.model.refine.refine_points` over stored peaks, or (b) the
hint-taking keypoint net, `lambda row, fixed, xy: HintRefiner(model).refine(image[row],
category[row], xy, fixed).coords` (`engine.model.hint_refine`, as `benchmarks/bench_annotation_effort.py`
does). Toggles are counted on the pre-labels' visibility.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from engine.analysis.error_types import DEFAULT_T_GOOD
from engine.analysis.ne import normalizers
from engine.io.annotations import Annotations
from engine.schema import CATEGORY_MASK

ACTIONS = ("place", "drag", "toggle", "remove", "accept")

# (row, set by hand (24,) bool, the image's points (24, 2)) -> its new points (24, 2); the set
# points must come back where they are.
Refine = Callable[[int, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ReviewCosts:
    """Seconds per action."""

    place: float = 3.0
    drag: float = 2.0
    toggle: float = 0.5
    remove: float = 0.5
    accept: float = 0.5


@dataclass
class Effort:
    """Per image: the count of each action (N, 5 in `ACTIONS` order) and its seconds."""

    actions: np.ndarray
    seconds: np.ndarray

    @property
    def total(self) -> float:
        return float(self.seconds.sum())

    @property
    def needs_fix(self) -> np.ndarray:
        """(N,) the image needed more than its accept: a point placed, dragged, toggled or removed."""
        return self.actions[:, :4].sum(axis=1) > 0

    @property
    def needs_moving(self) -> np.ndarray:
        """(N,) a point had to be placed, dragged or removed: the model got a position wrong (a
        toggle alone is not that: the model predicts every point visible, so each occluded point
        costs a toggle however sure it is)."""
        return self.actions[:, [0, 1, 3]].sum(axis=1) > 0

    @property
    def corrections(self) -> np.ndarray:
        """(N,) points placed or dragged: the number of corrections (NoC)."""
        return self.actions[:, 0] + self.actions[:, 1]

    def counts(self) -> dict[str, int]:
        return {name: int(n) for name, n in zip(ACTIONS, self.actions.sum(axis=0))}

    def subset(self, rows: np.ndarray) -> Effort:
        return Effort(self.actions[rows], self.seconds[rows])


def _effort(actions: np.ndarray, costs: ReviewCosts) -> Effort:
    prices = np.array([asdict(costs)[a] for a in ACTIONS])
    return Effort(actions, actions @ prices)


def from_scratch(truth: Annotations, costs: ReviewCosts = ReviewCosts()) -> Effort:
    """Every point the truth has is placed; occluded ones are toggled too; then the accept."""
    v = truth.visibility
    actions = np.zeros((len(truth), len(ACTIONS)), np.int64)
    actions[:, 0] = (v >= 0).sum(axis=1)
    actions[:, 2] = (v == 0).sum(axis=1)
    actions[:, 4] = 1
    return _effort(actions, costs)


def prelabelled(truth: Annotations, pred_coords: np.ndarray, pred_visibility: np.ndarray,
                costs: ReviewCosts = ReviewCosts(), t_good: float = DEFAULT_T_GOOD) -> Effort:
    """The actions to turn predictions (aligned with `truth`'s rows) into the truth."""
    v = truth.visibility
    scale = review_scale(truth)
    present = v >= 0
    predicted = (np.asarray(pred_visibility) >= 0) & CATEGORY_MASK[truth.categories.astype(np.int64)]
    distance = np.hypot(*(np.asarray(pred_coords, np.float64) - truth.coords).transpose(2, 0, 1))
    good = predicted & present & (distance <= t_good * scale[:, None])
    actions = _visibility_actions(truth, predicted, pred_visibility)
    actions[:, 0] = (present & ~predicted).sum(axis=1)
    actions[:, 1] = (present & predicted & ~good).sum(axis=1)
    return _effort(actions, costs)


def review_scale(truth: Annotations) -> np.ndarray:
    """(N,) the length `t_good` is a share of: the NE normalizer, or without one (one of its points
    absent) the garment's extent."""
    v, cats = truth.visibility, truth.categories.astype(np.int64)
    scale = normalizers(truth.coords, v, cats)
    xy = np.where((v >= 0)[..., None], truth.coords, np.nan)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an image with no point: no extent
        extent = np.hypot(*(np.nanmax(xy, axis=1) - np.nanmin(xy, axis=1)).T)
    return np.where(np.isfinite(scale) & (scale > 0), scale, extent)


def _visibility_actions(truth: Annotations, predicted: np.ndarray, pred_visibility: np.ndarray) -> np.ndarray:
    """(N, 5) actions with the toggles, removals and the accept filled in (they do not depend on
    where the points end up): a placed point is visible until toggled, a predicted one is toggled
    when its visibility is wrong."""
    v, pred_v = truth.visibility, np.asarray(pred_visibility)
    present = v >= 0
    actions = np.zeros((len(truth), len(ACTIONS)), np.int64)
    actions[:, 2] = ((present & ~predicted & (v == 0)) | (present & predicted & (pred_v != v))).sum(axis=1)
    actions[:, 3] = (~present & predicted).sum(axis=1)
    actions[:, 4] = 1
    return actions


def corrected(truth: Annotations, pred_coords: np.ndarray, pred_visibility: np.ndarray,
              refine: Refine | None = None, costs: ReviewCosts = ReviewCosts(),
              t_good: float = DEFAULT_T_GOOD) -> Effort:
    """The actions of a reviewer who fixes the worst point first (a missing one is placed, the
    farthest beyond `t_good` dragged) until every point the truth has is within `t_good`; with
    `refine`, the model re-predicts the untouched points after each fix (and may move a good one
    out, to be fixed in turn). Without `refine` the same actions as `prelabelled`."""
    present = truth.visibility >= 0
    predicted = (np.asarray(pred_visibility) >= 0) & CATEGORY_MASK[truth.categories.astype(np.int64)]
    actions = _visibility_actions(truth, predicted, pred_visibility)
    limit = t_good * review_scale(truth)
    for i in range(len(truth)):
        actions[i, :2] = _fix_image(i, truth.coords[i], present[i], predicted[i], pred_coords[i], limit[i], refine)
    return _effort(actions, costs)


def _fix_image(row: int, truth: np.ndarray, present: np.ndarray, predicted: np.ndarray, coords: np.ndarray,
               limit: float, refine: Refine | None) -> tuple[int, int]:
    """(places, drags) that bring one image's points within `limit` of the truth, worst first."""
    current = np.array(coords, np.float64)
    set_by_hand = np.zeros(len(present), bool)
    places = drags = 0
    while True:
        distance = np.where(predicted | set_by_hand, np.hypot(*(current - truth).T), np.inf)
        wrong = present & ~set_by_hand & (distance > limit)
        if not wrong.any():
            return places, drags
        worst = int(np.argmax(np.where(wrong, distance, -1.0)))
        places += int(not predicted[worst])
        drags += int(predicted[worst])
        current[worst], set_by_hand[worst] = truth[worst], True
        if refine is not None:
            new = np.asarray(refine(row, set_by_hand.copy(), current.copy()), np.float64)
            current = np.where(set_by_hand[:, None], current, new)


def queue_gain(needs_fix: np.ndarray, confidence: np.ndarray, share: float = 0.2) -> float:
    """How many times more of the images that need a fix the first `share` of the review queue
    (least confident first) holds than random order would (its rate over the overall rate)."""
    needs_fix = np.asarray(needs_fix, bool)
    first = np.argsort(np.asarray(confidence, np.float64), kind="stable")[:max(1, int(round(share * len(needs_fix))))]
    overall = needs_fix.mean()
    return float(needs_fix[first].mean() / overall) if overall > 0 else float("nan")


def image_confidence(scores: np.ndarray, pred_visibility: np.ndarray) -> np.ndarray:
    """(N,) the mean confidence of each image's predicted points: the review queue's key, least
    confident first (an image with nothing predicted, +inf, comes last: there is nothing to check)."""
    s = np.where(np.asarray(pred_visibility) >= 0, np.asarray(scores, np.float64), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nothing predicted: NaN
        mean = np.nanmean(s, axis=1)
    return np.where(np.isnan(mean), np.inf, mean)


def occlusion_auc(truth: Annotations, scores: np.ndarray, pred_visibility: np.ndarray) -> float:
    """How well a low score picks out the occluded points among the predicted points the truth
    has: the chance that an occluded point scores lower than a visible one (0.5: no better than
    chance; ties count half)."""
    v, s = truth.visibility, np.asarray(scores, np.float64)
    both = (v >= 0) & (np.asarray(pred_visibility) >= 0) & np.isfinite(s)
    return rank_auc(s[both & (v == 1)], s[both & (v == 0)])


def rank_auc(higher: np.ndarray, lower: np.ndarray) -> float:
    """The chance that a value of `higher` is above one of `lower` (ties count half; NaN when
    either is empty): the area under the ROC curve of a score meant to separate them."""
    hi, lo = np.asarray(higher, np.float64), np.sort(np.asarray(lower, np.float64))
    if not len(hi) or not len(lo):
        return float("nan")
    below = np.searchsorted(lo, hi, side="left")
    ties = np.searchsorted(lo, hi, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(hi) * len(lo)))
