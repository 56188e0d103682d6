"""Refinement after a correction, whichever the model can do: the studio's one entry point.

A model whose keypoint net takes hints (format `fkp-model/2`) predicts the untouched points again
with the set points as hints (`engine.model.hint_refine`, issue 32 (b)); any other model
re-decodes its vote maps under the shape model (`engine.model.refine`, issue 32 (a)): one
keypoint-net run per image for its candidate peaks (kept for the image's next corrections), then
numpy per correction. Either way a point set by hand comes back exactly where it was set.

    refiner = CorrectionRefiner(model)        # once per loaded model, on the thread that uses it
    out = refiner.refine(key, image, category, predicted, fixed, fixed_coords)
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from engine.model.hint_refine import HintRefiner, RefinedPoints, takes_hints
from engine.model.refine import ImagePrediction, candidate_peaks, refine_points
from engine.model.shape_model import ShapeModel, synthetic_shape_model
from engine.schema import CATEGORY_MASK

# Images whose candidate peaks are kept (a reviewer corrects one image several times in a row).
PEAK_CACHE = 8


class CorrectionRefiner:
    """Re-predicts a garment's untouched points from the points a reviewer set (see the module)."""

    def __init__(self, model, device: torch.device | str | None = None, shapes: ShapeModel | None = None):
        self.uses_hints = takes_hints(model)
        if self.uses_hints:
            self._hints = HintRefiner(model, device)
        else:
            from engine.model.pipeline import Pipeline  # the pipeline imports nothing of this

            self._pipeline = Pipeline(model, device=device)
            self._shapes = shapes
            self._peaks: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def refine(self, key: str, image: np.ndarray, category: int, predicted: tuple[np.ndarray, np.ndarray, np.ndarray],
               fixed: np.ndarray, fixed_coords: np.ndarray) -> RefinedPoints:
        """One image (RGB uint8), its category code, its prediction (coords (24, 2), visibility (24,),
        scores (24,)) and the points set by hand (`fixed` (24,) bool, their `fixed_coords` (24, 2)).
        `key` names the image and its prediction (the candidate peaks are kept under it).
        Returns every point: set ones as set, the others predicted again."""
        coords, visibility, scores = (np.asarray(a) for a in predicted)
        fixed = np.asarray(fixed, bool) & CATEGORY_MASK[int(category)]
        current = np.where(fixed[:, None], np.asarray(fixed_coords, np.float32), coords).astype(np.float32)
        if self.uses_hints:
            return self._hints.refine(image, int(category), current, fixed, visibility)
        peaks, mass = self._candidate_peaks(key, image, int(category), coords)
        new = refine_points(self._shape_model(), ImagePrediction(int(category), coords, scores, peaks, mass),
                            fixed, current)
        out_scores = np.where(fixed, 1.0, scores).astype(np.float32)
        return RefinedPoints(np.asarray(new, np.float32), np.asarray(visibility, np.int8), out_scores)

    def _candidate_peaks(self, key: str, image: np.ndarray, category: int,
                         coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if key not in self._peaks:
            peaks, mass = candidate_peaks(self._pipeline, [image], np.asarray(coords, np.float32)[None],
                                          np.array([category]))
            self._peaks[key] = (peaks[0], mass[0])
            while len(self._peaks) > PEAK_CACHE:
                self._peaks.popitem(last=False)
        self._peaks.move_to_end(key)
        return self._peaks[key]

    def _shape_model(self) -> ShapeModel:
        if self._shapes is None:
            self._shapes = synthetic_shape_model()  # about a second, once per refiner
        return self._shapes
