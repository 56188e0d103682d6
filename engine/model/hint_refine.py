"""Refinement after a correction with a keypoint net that takes hints (issue 32 (b)).

The points a reviewer set by hand go to the network as hint heatmaps (`engine.model.hints`)
together with the image's garment crop, and the network predicts all points again; the set points
come back exactly where they were set, every other point of the category takes the hinted
prediction (the default). With `residual=True` a point instead moves by what the hints change: the
net runs on the same crop with and without the hints (one batch) and the point moves by the
difference, so a net whose hint weights are zero changes nothing; measured worse (the moves are
added to the points the caller passes, which already hold the earlier ones, so they pile up over
a reviewer's corrections; docs/benchmarks.md). One keypoint-net run per correction (two crops
with flip TTA, the mirrored crop's hints swapped to their twins' channels; doubled with
`residual`), on the square crop around the current points (set and predicted), as the
pipeline's refinement pass crops.

The model must be a package whose keypoint net takes hints (format `fkp-model/2`, made by
`fkp train-hints`); `takes_hints(model)` says whether it does.

    refiner = HintRefiner(model)              # once, with the loaded model (any thread)
    out = refiner.refine(image, category, coords, fixed, visibility)
    out.coords (24, 2), out.visibility (24,), out.scores (24,)

`refine` holds no state between calls and may run off the main thread (one call at a time per
refiner, since torch's thread count is the process's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from engine.model.crops import apply_affine, crop_affine, invert_affine, normalize_image, warp_crop
from engine.model.device import autocast_for, pick_device, prepare_input
from engine.model.hints import hint_heatmaps, hint_sigma
from engine.model.targets import decode
from engine.schema import CATEGORY_MASK, FLIP_PERMUTATION, NUM_KEYPOINTS


@dataclass(frozen=True)
class RefinedPoints:
    """One image's points after a refinement: coordinates (24, 2) float32 in image pixels (-1 outside
    the category), FashionAI visibility (24,) int8, confidences (24,) float32 (1 for a set point,
    -1 outside the category)."""

    coords: np.ndarray
    visibility: np.ndarray
    scores: np.ndarray


def takes_hints(model) -> bool:
    """Whether a loaded `TwoStageModel`'s keypoint net takes hints (refinement (b) can run)."""
    return bool(getattr(model.keypoint_net, "takes_hints", False))


class HintRefiner:
    """Re-predicts an image's untouched points from the points set by hand, with the model's
    hint-taking keypoint net (and its visibility stage for their visibility, when it has one)."""

    def __init__(self, model, device: torch.device | str | None = None, flip_tta: bool | None = None,
                 visibility: bool = True, residual: bool = False):
        if not takes_hints(model):
            raise ValueError("the model's keypoint net takes no hints (a format fkp-model/1 package): "
                             "refinement (b) needs one trained with fkp train-hints")
        self.preset = model.preset
        self.device = device if isinstance(device, torch.device) else pick_device(device)
        self.net = model.keypoint_net.to(self.device).eval()
        self.flip_tta = self.preset.flip_tta if flip_tta is None else flip_tta
        self.residual = residual
        stage = model.visibility if visibility else None
        self.visibility = None if stage is None else stage.to(self.device).eval()

    @torch.no_grad()
    def refine(self, image: np.ndarray, category: int, coords: np.ndarray, fixed: np.ndarray,
               visibility: np.ndarray | None = None, angle: float = 0.0) -> RefinedPoints:
        """One image (RGB uint8 (H, W, 3)) of category code `category`: its current points (24, 2)
        image pixels (set and predicted), `fixed` (24,) True where a point was set by hand, its
        current FashionAI visibility (24,) (None: all visible). Set points keep their coordinates
        and visibility exactly; the category's other points are predicted again with the set ones
        as hints (their visibility from the visibility stage, else kept); with nothing set, the
        net's plain prediction on the crop around `coords`. `angle`: the crop's angle in degrees
        (as `crop_affine`; 0 upright)."""
        from engine.model.pipeline import keypoint_squares  # the pipeline imports nothing of this

        p = self.preset
        mask = CATEGORY_MASK[int(category)]
        fixed = np.asarray(fixed, bool) & mask
        current = np.asarray(coords, np.float32).copy()
        vis_in = (np.where(mask, 1, -1) if visibility is None else np.asarray(visibility)).astype(np.int8)
        square = keypoint_squares(current[None], mask[None], np.array([angle], np.float32), p.crop_margin)[0]
        views = (False, True) if self.flip_tta else (False,)
        mats = np.stack([crop_affine(*square, p.input_size, float(angle), flip=f) for f in views]).astype(np.float32)
        crops = torch.stack([normalize_image(warp_crop(image, m, p.input_size)) for m in mats])
        hint_xy = np.stack([apply_affine(current, m) for m in mats])                     # (V, 24, 2) crop pixels
        hint_set = np.repeat(fixed[None], len(views), axis=0)
        if self.flip_tta:
            # The mirrored crop holds each keypoint in its twin's channel.
            hint_xy[1], hint_set[1] = hint_xy[1][FLIP_PERMUTATION], hint_set[1][FLIP_PERMUTATION]
        hints = hint_heatmaps(torch.from_numpy(hint_xy).to(self.device), torch.from_numpy(hint_set).to(self.device),
                              p.input_size, hint_sigma(p))
        x = crops
        if self.residual:  # the same crops without hints (zero heatmaps: exactly the plain net) first
            x, hints = torch.cat([crops, crops]), torch.cat([torch.zeros_like(hints), hints])
        with autocast_for(self.device):
            out = self.net(prepare_input(x, self.device), prepare_input(hints, self.device) if fixed.any() else None)[-1]
        pts, conf = (t.cpu().numpy() for t in decode(out.float(), p.radius, p.stride))
        new, score = self._combine(pts[-len(views):], conf[-len(views):], mats)
        if self.residual:
            plain, _ = self._combine(pts[:len(views)], conf[:len(views)], mats)
            new = np.where(mask[:, None], current, 0) + (new - plain)
        out_xy = np.where(mask[:, None], new, -1.0).astype(np.float32)
        out_xy[fixed] = current[fixed]
        scores = np.where(mask, score, -1.0).astype(np.float32)
        scores[fixed] = 1.0
        vis = np.where(mask, vis_in, -1).astype(np.int8)
        if self.visibility is not None and (mask & ~fixed).any():
            from engine.model.visibility import occlusion_probability, predicted_visibility

            prob = occlusion_probability(self.visibility, [image], out_xy[None], mask[None], self.device)
            stage = predicted_visibility(prob, mask[None], self.visibility.config.threshold)[0]
            vis = np.where(fixed, vis, stage).astype(np.int8)
        vis[fixed] = vis_in[fixed]
        return RefinedPoints(out_xy, vis, scores)

    def _combine(self, pts: np.ndarray, conf: np.ndarray, mats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The views' points (V, 24, 2) crop pixels (the mirrored one's channels still its own) ->
        one (24, 2) in image pixels, the views weighted by confidence, and the mean confidence (24,)."""
        pts, conf = pts.copy(), conf.copy()
        if self.flip_tta:
            pts[1], conf[1] = pts[1][FLIP_PERMUTATION], conf[1][FLIP_PERMUTATION]
        image_pts = np.stack([apply_affine(pts[v], invert_affine(mats[v])) for v in range(len(pts))])
        weight = np.maximum(conf, 1e-6)
        return (image_pts * weight[..., None]).sum(0) / weight.sum(0)[:, None], conf.mean(0)


def refine_with_hints(model, image: np.ndarray, category: int, coords: np.ndarray, fixed: np.ndarray,
                      visibility: np.ndarray | None = None, angle: float = 0.0) -> RefinedPoints:
    """`HintRefiner(model).refine(...)` in one call (a caller refining often keeps the refiner)."""
    return HintRefiner(model).refine(image, category, coords, fixed, visibility, angle)


__all__ = ["HintRefiner", "RefinedPoints", "refine_with_hints", "takes_hints", "NUM_KEYPOINTS"]
