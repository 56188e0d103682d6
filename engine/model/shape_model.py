"""A per-category shape model of garment layouts: where the keypoints sit relative to each other.

Each complete annotated layout of a category is aligned to the others by a similarity transform
(generalized Procrustes: centred, unit RMS radius, rotated onto the mean), and the aligned
coordinates are modelled as one Gaussian: a mean shape and the covariance of its 2K coordinates
(its principal modes, all of them kept). `engine.model.refine` conditions it on the points a
reviewer set to re-decode the others. Numpy only; saved as an `.npz` of plain arrays.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from engine.io.annotations import Annotations
from engine.schema import CATEGORIES, CATEGORY_MASK, NUM_KEYPOINTS

# Added to the covariance's diagonal (model units, unit RMS radius): a floor under the modes that
# few layouts estimate, so conditioning never divides by a near-zero variance.
COVARIANCE_FLOOR = 1e-4
PROCRUSTES_ROUNDS = 5


@dataclass(frozen=True)
class ShapeModel:
    """Per category c: `mean[c]` (24, 2) aligned mean shape (zeros off the category), `cov[c]`
    (48, 48) covariance of the aligned coordinates (x0, y0, x1, y1, ...), `layouts[c]` how many
    complete layouts it was fitted on."""

    mean: np.ndarray
    cov: np.ndarray
    layouts: np.ndarray

    @classmethod
    def fit(cls, annotations: Annotations) -> ShapeModel:
        """The model of an annotation set's complete layouts (every point of the category present)."""
        mean = np.zeros((len(CATEGORIES), NUM_KEYPOINTS, 2))
        cov = np.tile(np.eye(2 * NUM_KEYPOINTS), (len(CATEGORIES), 1, 1))
        counts = np.zeros(len(CATEGORIES), np.int64)
        cats, vis = annotations.categories.astype(np.int64), annotations.visibility
        for c in range(len(CATEGORIES)):
            mask = CATEGORY_MASK[c]
            rows = np.flatnonzero((cats == c) & (vis[:, mask] >= 0).all(axis=1))
            counts[c] = len(rows)
            if len(rows) < 2:
                continue
            aligned = procrustes(annotations.coords[rows][:, mask].astype(np.float64))
            flat = aligned.reshape(len(rows), -1)
            idx = np.flatnonzero(np.repeat(mask, 2))
            mean[c, mask] = aligned.mean(axis=0)
            cov[c][np.ix_(idx, idx)] = np.cov(flat, rowvar=False) + COVARIANCE_FLOOR * np.eye(len(idx))
        return cls(mean, cov, counts)

    def save(self, path: str | os.PathLike) -> None:
        """Written atomically as an `.npz` of three arrays."""
        from engine.io.files import atomic_write

        atomic_write(path, lambda f: np.savez(f, mean=self.mean, cov=self.cov, layouts=self.layouts))

    @classmethod
    def load(cls, path: str | os.PathLike) -> ShapeModel:
        """A model written by `save` (plain arrays only: nothing is unpickled)."""
        with np.load(path, allow_pickle=False) as z:
            return cls(z["mean"], z["cov"], z["layouts"])


def normalize_shapes(shapes: np.ndarray) -> np.ndarray:
    """(N, K, 2) -> centred on their centroid, scaled to unit RMS radius."""
    centred = shapes - shapes.mean(axis=1, keepdims=True)
    rms = np.sqrt((centred ** 2).sum(axis=2).mean(axis=1))
    return centred / np.maximum(rms, 1e-9)[:, None, None]


def procrustes(shapes: np.ndarray) -> np.ndarray:
    """Generalized Procrustes: (N, K, 2) layouts -> aligned to their mean (rotation, scale, shift)."""
    z = normalize_shapes(shapes)
    zc = z[..., 0] + 1j * z[..., 1]
    ref = zc[0]
    for _ in range(PROCRUSTES_ROUNDS):
        # The rotation that best maps each shape onto the reference (both centred, unit size).
        turn = (np.conj(zc) * ref).sum(axis=1)
        zc = zc * (turn / np.maximum(np.abs(turn), 1e-12))[:, None]
        ref = zc.mean(axis=0)
        ref = ref / np.sqrt((np.abs(ref) ** 2).mean())
    return np.stack([zc.real, zc.imag], axis=2)


def synthetic_shape_model(n: int = 6000, seed: int = 11, size: int = 256) -> ShapeModel:
    """The model of `n` synthetic layouts drawn as the demo model's training data was (`fkp synth`
    geometry, annotations only: nothing rendered, about a second)."""
    import tempfile

    from engine.io.annotations import load_annotations
    from engine.synth import generate_dataset

    with tempfile.TemporaryDirectory() as tmp:
        return ShapeModel.fit(load_annotations(generate_dataset(tmp, n, seed=seed, split="shapes", size=size,
                                                                annotations_only=True)))
