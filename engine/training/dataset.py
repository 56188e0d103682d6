"""The keypoint net's training data: random crop transforms (box jitter, scale, rotation, flip),
colour jitter, and `KeypointCropDataset`, augmented crops of a data set with their targets.

Every transform composes into the crop's 2x3 affine matrix (`engine.model.crops`), so the
image and its keypoints move together; a flip also swaps each `_left` keypoint with its
`_right` twin.

The work is split for speed: a dataset item is what needs the image on the CPU (decode, the
uint8 warp) plus small tensors (keypoints, the drawn colour factors); `device_batch` does the
per-pixel float work of a whole batch on the training device: colour jitter, normalization and
the targets. All random parameters are still drawn per item from (seed, epoch, index).
"""

from __future__ import annotations

import logging

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from engine.model.crops import crop_affine, crop_from_box, crop_keypoints, keypoint_box, square_around, warp_crop
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


def colour_factors(rng: np.random.Generator, amount: float) -> np.ndarray:
    """Random (brightness, contrast, saturation) factors 1 + U(-a, a); all 1 (no jitter) when a <= 0."""
    if amount <= 0:
        return np.ones(3, np.float32)
    return (1.0 + rng.uniform(-amount, amount, size=3)).astype(np.float32)


_GREY = (0.299, 0.587, 0.114)


def colour_jitter_batch(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast and saturation of uint8 RGB images (B, 3, H, W) by factors (B, 3)
    -> float images with whole values 0-255 (cut to integers, as a uint8 image would be).

    Rows whose factors are all 1 are returned unchanged."""
    x = images.float()
    w = torch.tensor(_GREY, device=x.device).view(1, 3, 1, 1)
    grey = (x * w).sum(dim=1, keepdim=True)
    f = factors.to(x.device, torch.float32).view(-1, 3, 1, 1, 1).unbind(1)
    b, c, s = f
    y = grey + s * (x - grey)                                       # saturation
    m = grey.mean(dim=(1, 2, 3), keepdim=True)
    y = m + c * (y - m)                                             # contrast
    y = (y * b).clamp(0, 255).trunc()                               # brightness
    same = (factors.to(x.device) == 1).all(dim=1).view(-1, 1, 1, 1)
    return torch.where(same, x, y)


def device_images(batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
    """The network input of a collated batch on `device`: its uint8 crops colour-jittered by their
    `colour` factors and normalized there (float crops are taken as already prepared)."""
    from engine.model.device import prepare_input
    from engine.model.device_crops import normalize_batch

    images = batch["image"]
    if images.dtype != torch.uint8:
        return prepare_input(images, device)
    x = images.to(device, non_blocking=True)
    if "colour" in batch:
        x = colour_jitter_batch(x, batch["colour"].to(device, non_blocking=True))
    return prepare_input(normalize_batch(x), device)


def device_batch(batch: dict[str, torch.Tensor], preset, device: torch.device) -> dict[str, torch.Tensor]:
    """A collated batch of `KeypointCropDataset` items on `device`, ready for the loss: `image`
    the normalized network input, `heat` and `offsets` its targets (`encode_targets_batch`).

    A batch that already has its targets is only moved (so callers may prepare it early)."""
    from engine.model.targets import encode_targets_batch

    out = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    out["image"] = device_images(out, device)     # from the copy already moved: one upload
    if "heat" not in out:
        out["heat"], out["offsets"] = encode_targets_batch(out["coords"], out["valid"], preset.input_size,
                                                           preset.stride, preset.radius)
    return out


# --- the dataset ---------------------------------------------------------------------------


class KeypointCropDataset(Dataset):
    """Square crops of the annotated garments of a FashionAI-layout root, with their targets.

    Each item is a dict: `image` (3, S, S) uint8, `colour` (3,) its colour-jitter factors (all 1
    without augmentation), `valid` (24,) bool (the category has it, it is annotated, it is in
    the crop), `coords` (24, 2) crop pixels, `affine` (2, 3) image -> crop, `index`. A collated
    batch becomes network input and targets with `device_batch` (or `device_images`).
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
        colour = np.ones(3, np.float32)
        if self.augment is None:
            m, flipped = crop_from_box(self.boxes[i], p.crop_margin, size), False
        else:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            m, flipped = random_crop_affine(rng, self.boxes[i], p.crop_margin, size, self.augment)
            colour = colour_factors(rng, self.augment.colour)
        crop = warp_crop(img, m, size)
        coords, vis = crop_keypoints(self.coords[i], self.visibility[i], m, flipped)
        inside = ((coords >= 0) & (coords <= size - 1)).all(axis=1)
        valid = CATEGORY_MASK[self.categories[i]] & (vis >= 0) & inside
        return {
            # (3, S, S) view of the (S, S, 3) crop: a batch of them is channels-last already.
            "image": torch.from_numpy(crop).permute(2, 0, 1),
            "colour": torch.from_numpy(colour),
            "valid": torch.from_numpy(valid),
            "coords": torch.from_numpy(coords),
            "affine": torch.from_numpy(m),
            "index": torch.tensor(i),
        }


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
