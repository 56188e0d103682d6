"""Refinement after a correction: the points a reviewer set by hand re-decode the others.

Without retraining (issue 32, part (a)). Each keypoint's vote map offers a few peaks
(`candidate_peaks`, computed once per image: one more keypoint-net run on the crop around the
predicted points, as the pipeline's refinement pass crops). After a correction, `refine_points`:

1. frames the category's shape model (`engine.model.shape_model`) on the current points by a
   weighted similarity transform (the set points count most);
2. for every untouched point, predicts where the shape puts it given all the *other* points
   (leave-one-out Gaussian conditioning: set points nearly exact, predictions with a noise that
   shrinks with their vote mass);
3. chooses among the point's candidates (its prediction, its own peaks, and its twin's
   prediction and peaks: the net may have mixed left and right) the one that the vote mass and
   the shape together make most likely; where none is plausible, the shape's position. A
   candidate lying on the spot where the reviewer set the point's twin is never chosen (one spot
   cannot be both), which swaps a mixed-up pair when one of its points is set. A peak with little
   vote mass is no candidate, and with the defaults the shape's position is never taken: on a
   geometry the synthetic shape model never saw, both moved more good points out than bad ones in.

Points set by hand are never moved; with none set the prediction comes back unchanged. Numpy
only per correction (a few milliseconds); `candidate_peaks` runs the keypoint net once per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from engine.model.crops import apply_affine, crop_affine, invert_affine
from engine.model.device import autocast_for, prepare_input
from engine.model.shape_model import ShapeModel
from engine.model.targets import vote_peaks
from engine.schema import CATEGORY_MASK, FLIP_PERMUTATION, NUM_KEYPOINTS

NUM_PEAKS = 4


@dataclass(frozen=True)
class RefineSettings:
    """The refinement's knobs; lengths in shape-model units (the garment's RMS radius is 1)."""

    # Defaults chosen on 150 ordinary + 100 new-domain images of tuning seeds (777, 778), not the
    # benchmark's: a wider shape (its layouts are synthetic), only strong peaks, no fallback to the
    # shape's own position (each of these moved good points out on the new domain).
    prediction_sigma: float = 0.04   # a predicted point's noise at full vote mass
    set_sigma: float = 0.005         # a point set by hand: nearly exact
    mass_floor: float = 0.05         # a peak's vote mass counts at least this (noise <= sigma / sqrt(floor))
    twin_penalty: float = 2.0        # log-odds against taking the twin's peak over one's own
    twin_radius: float = 0.1         # a candidate this near the set twin is the twin
    implausible_d2: float = float("inf")    # Mahalanobis^2 past which no candidate fits: the shape's position
    shape_scale: float = 4.0         # the shape model's covariance widened by this (layouts it never saw)
    min_mass: float = 0.3            # a peak with less vote mass is no candidate
    same_peak: float = 0.05          # a candidate this near an earlier one of the same point is that one
    keep_bonus: float = 0.0          # log-odds for keeping the prediction: another peak must beat it by this
    rounds: int = 2                  # choose, re-frame, choose again


@dataclass(frozen=True)
class ImagePrediction:
    """What refining one image needs: its category, the pipeline's points (24, 2) and
    confidences (24,), and each keypoint's candidate peaks (24, P, 2) in image pixels with their
    vote mass (24, P) (0: no peak)."""

    category: int
    coords: np.ndarray
    scores: np.ndarray
    peaks: np.ndarray
    peak_mass: np.ndarray


@torch.no_grad()
def candidate_peaks(pipeline, images: Sequence[np.ndarray], coords: np.ndarray, categories: np.ndarray,
                    angles: np.ndarray | None = None, num_peaks: int = NUM_PEAKS) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of every keypoint's vote map on the crop around each image's predicted points (as the
    pipeline's refinement pass crops; `angles` the crop angles where rotation search turned it)
    -> (n, 24, P * views, 2) image pixels, (n, 24, P * views) mass; with flip TTA the mirrored
    view's peaks follow, swapped back to their keypoints."""
    from engine.model.pipeline import DeviceImages, keypoint_squares  # the pipeline imports nothing of this

    p = pipeline.preset
    n = len(images)
    angles = np.zeros(n, np.float32) if angles is None else np.asarray(angles, np.float32)
    squares = keypoint_squares(np.asarray(coords, np.float32), CATEGORY_MASK[np.asarray(categories)], angles,
                               p.crop_margin)
    views = (False, True) if pipeline.flip_tta else (False,)
    mats = np.array([[crop_affine(*squares[i], p.input_size, float(angles[i]), flip=f) for f in views]
                     for i in range(n)], np.float32)                                     # (n, V, 2, 3)
    crops = DeviceImages(images, pipeline.device, pipeline.grid_crops).crops(mats, p.input_size)
    with autocast_for(pipeline.device):
        out = pipeline.keypoint_net(prepare_input(crops, pipeline.device))[-1]
    peaks, mass = (t.cpu().numpy() for t in vote_peaks(out.float(), p.radius, p.stride, num_peaks))
    peaks = peaks.reshape(n, len(views), NUM_KEYPOINTS, num_peaks, 2)
    mass = mass.reshape(n, len(views), NUM_KEYPOINTS, num_peaks)
    if pipeline.flip_tta:
        # A mirrored crop finds each keypoint in its twin's channel.
        peaks[:, 1], mass[:, 1] = peaks[:, 1][:, FLIP_PERMUTATION], mass[:, 1][:, FLIP_PERMUTATION]
    image = apply_affine(peaks.reshape(n, len(views), -1, 2), invert_affine(mats))
    image = image.reshape(n, len(views), NUM_KEYPOINTS, num_peaks, 2).transpose(0, 2, 1, 3, 4)
    return (image.reshape(n, NUM_KEYPOINTS, -1, 2).astype(np.float32),
            mass.transpose(0, 2, 1, 3).reshape(n, NUM_KEYPOINTS, -1).astype(np.float32))


def refine_points(shapes: ShapeModel, pred: ImagePrediction, fixed: np.ndarray, fixed_coords: np.ndarray,
                  settings: RefineSettings = RefineSettings()) -> np.ndarray:
    """New coordinates (24, 2) of one image: points with `fixed` (24,) True keep `fixed_coords`
    (24, 2) exactly; the category's other points are re-decoded from them; with nothing fixed
    the prediction comes back unchanged."""
    dtype = np.result_type(np.asarray(pred.coords).dtype, np.asarray(fixed_coords).dtype)
    out = np.array(pred.coords, np.float64)
    fixed = np.asarray(fixed, bool) & CATEGORY_MASK[pred.category]
    out[fixed] = np.asarray(fixed_coords, np.float64)[fixed]
    idx = np.flatnonzero(CATEGORY_MASK[pred.category])
    f = fixed[idx]
    if not f.any() or f.all():
        return out.astype(dtype)
    cands, mass, prior = _candidates(pred, idx, settings)                     # (Kc, C, 2), (Kc, C), (Kc, C)
    # The set twin's spot: a candidate there is the twin, never this point.
    twin_of = _twin_positions(idx)
    twin_set = (twin_of >= 0) & f[np.maximum(twin_of, 0)]
    twin_xy = out[idx][np.maximum(twin_of, 0)]
    choice = np.zeros(len(idx), np.int64)
    mean = shapes.mean[pred.category, idx]
    xy_idx = (2 * idx[:, None] + np.array([0, 1])).ravel()                 # (x, y) of each point in cov
    cov = settings.shape_scale * shapes.cov[pred.category][np.ix_(xy_idx, xy_idx)]
    for _ in range(max(1, settings.rounds)):
        current = np.where(f[:, None], out[idx], cands[np.arange(len(idx)), choice])
        chosen_mass = mass[np.arange(len(idx)), choice]
        a, t = _similarity(mean, current, np.where(f, 1.0, chosen_mass))
        noise = np.where(f, settings.set_sigma ** 2, settings.prediction_sigma ** 2 / chosen_mass)
        loo_mean, loo_cov = _leave_one_out(mean, cov, _to_model(current, a, t), noise)
        cz = _to_model(cands, a, t)                                             # (Kc, C, 2)
        excluded = twin_set[:, None] & (np.hypot(*(cands - twin_xy[:, None]).transpose(2, 0, 1))
                                        < settings.twin_radius * abs(a))
        score, d2 = _candidate_scores(cz, mass, prior, loo_mean, loo_cov, settings)
        score = np.where(excluded | _repeats(cands, settings.same_peak * abs(a)), -np.inf, score)
        score[:, 0] += settings.keep_bonus
        choice = np.argmax(score, axis=1)
        best_d2 = d2[np.arange(len(idx)), choice]
        # No candidate fits (or every one is the set twin's): the shape's own position.
        implausible = (best_d2 > settings.implausible_d2) | ~np.isfinite(score.max(axis=1))
    new = cands[np.arange(len(idx)), choice]
    new[implausible] = _from_model(loo_mean[implausible], a, t)
    out[idx[~f]] = new[~f]
    return out.astype(dtype)


def _repeats(cands: np.ndarray, radius: float) -> np.ndarray:
    """(Kc, C) True where a candidate lies within `radius` of an earlier candidate of its point:
    the prediction and its own top peak are one spot (the crops differ by a pixel), and only a
    distinct peak may compete with it."""
    gap = np.hypot(*(cands[:, :, None] - cands[:, None]).transpose(3, 0, 1, 2))   # (Kc, C, C)
    earlier = np.tril(np.ones(gap.shape[1:], bool), k=-1)
    return ((gap < radius) & earlier).any(axis=2)


def _twin_positions(idx: np.ndarray) -> np.ndarray:
    """For each category keypoint (by position in `idx`), its twin's position in `idx` (-1: none)."""
    where = np.full(NUM_KEYPOINTS, -1)
    where[idx] = np.arange(len(idx))
    twin = where[FLIP_PERMUTATION[idx]]
    return np.where(FLIP_PERMUTATION[idx] == idx, -1, twin)


def _candidates(pred: ImagePrediction, idx: np.ndarray,
                settings: RefineSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each category point's candidates: its prediction, its peaks, then its twin's prediction and
    peaks -> (Kc, C, 2) image pixels, (Kc, C) vote mass (the prediction's: its confidence; 0: no
    such peak), (Kc, C) prior log-odds (-inf: not a candidate; the twin's lowered by the penalty)."""
    twin = FLIP_PERMUTATION[idx]
    xy = np.concatenate([pred.coords[idx][:, None], pred.peaks[idx],
                         pred.coords[twin][:, None], pred.peaks[twin]], axis=1).astype(np.float64)
    mass = np.concatenate([pred.scores[idx][:, None], pred.peak_mass[idx],
                           pred.scores[twin][:, None], pred.peak_mass[twin]], axis=1).astype(np.float64)
    half = 1 + pred.peaks.shape[1]
    is_twin = np.arange(2 * half) >= half
    usable = (mass > max(settings.min_mass, 0.0)) | (np.arange(2 * half) % half == 0)  # a prediction is always there
    usable &= ~is_twin | (twin != idx)[:, None]
    prior = np.where(usable, np.log(np.maximum(mass, settings.mass_floor)) - settings.twin_penalty * is_twin, -np.inf)
    return xy, np.maximum(mass, settings.mass_floor), prior


def _similarity(model: np.ndarray, image: np.ndarray, weight: np.ndarray) -> tuple[complex, complex]:
    """The weighted similarity image ~ a * model + t (complex a, t) of two (K, 2) point sets."""
    z, x = model[:, 0] + 1j * model[:, 1], image[:, 0] + 1j * image[:, 1]
    w = weight / weight.sum()
    zc, xc = z - (w * z).sum(), x - (w * x).sum()
    a = (w * np.conj(zc) * xc).sum() / max((w * np.abs(zc) ** 2).sum(), 1e-12)
    if abs(a) < 1e-9:  # every point on one spot: no scale to read, take the prediction's size
        a = 1.0 + 0j
    return complex(a), complex((w * x).sum() - a * (w * z).sum())


def _to_model(xy: np.ndarray, a: complex, t: complex) -> np.ndarray:
    """Image pixels (..., 2) -> the shape model's frame (the inverse of `_from_model`)."""
    z = (xy[..., 0] + 1j * xy[..., 1] - t) / a
    return np.stack([z.real, z.imag], axis=-1)


def _from_model(z: np.ndarray, a: complex, t: complex) -> np.ndarray:
    """The shape model's frame (..., 2) -> image pixels: a * z + t."""
    x = a * (z[..., 0] + 1j * z[..., 1]) + t
    return np.stack([x.real, x.imag], axis=-1)


def _leave_one_out(mean: np.ndarray, cov: np.ndarray, observed: np.ndarray,
                   noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the shape puts each point given every other point's observation (observed = true
    point + isotropic noise of variance `noise`): means (K, 2) and covariances (K, 2, 2), all at
    once from the joint precision (the leave-one-out residual is Q_kk^-1 (Q r)_k)."""
    k = len(mean)
    precision = np.linalg.inv(cov + np.diag(np.repeat(noise, 2)))
    residual = (observed - mean).reshape(-1)
    qr = (precision @ residual).reshape(k, 2)
    blocks = precision.reshape(k, 2, k, 2)[np.arange(k), :, np.arange(k), :]   # (K, 2, 2)
    block_inv = np.linalg.inv(blocks)
    loo_mean = observed - np.einsum("kij,kj->ki", block_inv, qr)
    # The predictive covariance of the observation, less its own noise: the true point's.
    loo_cov = block_inv - noise[:, None, None] * np.eye(2)
    return loo_mean, loo_cov


def _candidate_scores(cz: np.ndarray, mass: np.ndarray, prior: np.ndarray, loo_mean: np.ndarray,
                      loo_cov: np.ndarray, settings: RefineSettings) -> tuple[np.ndarray, np.ndarray]:
    """Log-likelihood of each candidate (Kc, C): its prior plus the shape's leave-one-out Gaussian
    (widened by the candidate's own noise), and its Mahalanobis^2."""
    var = settings.prediction_sigma ** 2 / mass
    total = loo_cov[:, None] + (var[..., None, None] + 1e-9) * np.eye(2)
    diff = cz - loo_mean[:, None]
    d2 = np.einsum("kci,kcij,kcj->kc", diff, np.linalg.inv(total), diff)
    score = prior - 0.5 * d2 - 0.5 * np.log(np.maximum(np.linalg.det(total), 1e-18))
    return score, d2
