"""The keypoint net's training data: random crop transforms (box jitter, scale, rotation, flip),
colour jitter, and `KeypointCropDataset`, augmented crops of a data set with their targets.

Every transform composes into the crop's 2x3 affine matrix (`engine.model.crops`), so the
image and its keypoints move together; a flip also swaps each `_left` keypoint with its
`_right` twin.
"""

from __future__ import annotations

import logging

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from engine.model.crops import (crop_affine, crop_from_box, crop_keypoints, keypoint_box, normalize_image,
                                square_around, warp_crop)
from engine.schema import CATEGORY_MASK

log = logging.getLogger(__name__)


# --- augmentation --------------------------------------------------------------------------


@dataclass(frozen=True)
class Augmentation:
    """Ranges of the random transforms of a training crop."""

    box_scale: float = 0.15       # crop side x U(1 - a, 1 + a): a detector's box is not exact
    box_shift: float = 0.08       # centre moved by U(-a, a) x side, each axis
    scale: float = 0.15           # further zoom x 2**U(-a, a)
    rotation_deg: float = 20.0    # U(-a, a)
    flip_prob: float = 0.5
    colour: float = 0.25          # brightness / contrast / saturation factors 1 + U(-a, a)


def random_crop_affine(
    rng: np.random.Generator, box: np.ndarray, margin: float, size: int, aug: Augmentation
) -> tuple[np.ndarray, bool]:
    """A random augmented crop of the garment box -> (M, flipped)."""
    cx, cy, side = square_around(box, margin)
    side *= rng.uniform(1 - aug.box_scale, 1 + aug.box_scale) * 2.0 ** rng.uniform(-aug.scale, aug.scale)
    cx += rng.uniform(-aug.box_shift, aug.box_shift) * side
    cy += rng.uniform(-aug.box_shift, aug.box_shift) * side
    angle = rng.uniform(-aug.rotation_deg, aug.rotation_deg)
    flip = bool(rng.random() < aug.flip_prob)
    return crop_affine(cx, cy, side, size, angle, flip), flip


def colour_jitter(rng: np.random.Generator, crop: np.ndarray, amount: float) -> np.ndarray:
    """Random brightness, contrast and saturation of an RGB uint8 image."""
    if amount <= 0:
        return crop
    b, c, s = 1.0 + rng.uniform(-amount, amount, size=3)
    x = crop.astype(np.float32)
    grey = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    x = grey[..., None] + s * (x - grey[..., None])        # saturation
    x = grey.mean() + c * (x - grey.mean())                 # contrast
    return np.clip(x * b, 0, 255).astype(np.uint8)          # brightness


# --- the dataset ---------------------------------------------------------------------------


class KeypointCropDataset(Dataset):
    """Square crops of the annotated garments of a FashionAI-layout root, with their targets.

    Each item is a dict: `image` (3, S, S) float, `heat` (24, S/4, S/4), `offsets`
    (24, 2, S/4, S/4), `valid` (24,) bool (the category has it, it is annotated, it is in the
    crop), `coords` (24, 2) crop pixels, `affine` (2, 3) image -> crop, `index`.
    Without `augment` the crop is the ground-truth box plus the preset's margin (validation).
    Images with fewer than two annotated keypoints are left out (with a log line).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        annotations,
        preset,
        augment: Augmentation | None = None,
        seed: int = 0,
        cache_images: bool = False,
    ):
        from engine.io.annotations import Annotations, load_annotations

        self.root = Path(root)
        ann = annotations if isinstance(annotations, Annotations) else load_annotations(annotations)
        self.preset = preset
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        boxes = [keypoint_box(c, v) for c, v in zip(ann.coords, ann.visibility)]
        keep = np.array([b is not None for b in boxes], dtype=bool)
        if (~keep).any():
            log.info("%d images have fewer than two annotated keypoints; left out", int((~keep).sum()))
        self.rows = np.flatnonzero(keep)
        self.image_ids = np.asarray(ann.image_ids)[keep]
        self.categories = np.asarray(ann.categories)[keep].astype(np.int64)
        self.coords = np.asarray(ann.coords, dtype=np.float32)[keep]
        self.visibility = np.asarray(ann.visibility, dtype=np.int8)[keep]
        self.boxes = np.array([b for b in boxes if b is not None], dtype=np.float32).reshape(-1, 4)
        self._cache: dict[int, np.ndarray] | None = {} if cache_images else None

    def __len__(self) -> int:
        return len(self.image_ids)

    def set_epoch(self, epoch: int) -> None:
        """Different augmentation each epoch, reproducible from (seed, epoch, index)."""
        self.epoch = epoch

    def image(self, i: int) -> np.ndarray:
        from engine.io.images import read_image

        if self._cache is not None and i in self._cache:
            return self._cache[i]
        img = read_image(self.root / self.image_ids[i], self.root)
        if self._cache is not None:
            self._cache[i] = img
        return img

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        p = self.preset
        size = p.input_size
        img = self.image(i)
        if self.augment is None:
            m, flipped = crop_from_box(self.boxes[i], p.crop_margin, size), False
        else:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            m, flipped = random_crop_affine(rng, self.boxes[i], p.crop_margin, size, self.augment)
        crop = warp_crop(img, m, size)
        if self.augment is not None:
            crop = colour_jitter(rng, crop, self.augment.colour)
        coords, vis = crop_keypoints(self.coords[i], self.visibility[i], m, flipped)
        inside = ((coords >= 0) & (coords <= size - 1)).all(axis=1)
        valid = CATEGORY_MASK[self.categories[i]] & (vis >= 0) & inside
        heat, offsets = _encode(coords, valid, p)
        return {
            "image": normalize_image(crop),
            "heat": torch.from_numpy(heat),
            "offsets": torch.from_numpy(offsets),
            "valid": torch.from_numpy(valid),
            "coords": torch.from_numpy(coords),
            "affine": torch.from_numpy(m),
            "index": torch.tensor(i),
        }


def _encode(coords: np.ndarray, valid: np.ndarray, preset) -> tuple[np.ndarray, np.ndarray]:
    from engine.model.targets import encode_targets

    return encode_targets(coords, valid, preset.input_size, preset.stride, preset.radius)


class CropSubset(Dataset):
    """Some items of a KeypointCropDataset, still exposing its arrays (items keep their base `index`)."""

    def __init__(self, base: KeypointCropDataset, idx):
        self.base = base
        self.idx = np.asarray(idx, dtype=np.int64)
        self.categories = base.categories
        self.coords = base.coords
        self.visibility = base.visibility

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.base[int(self.idx[i])]
