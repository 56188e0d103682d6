"""Keypoint crops: square crops around a garment, augmentation, and the training dataset.

A crop is described by a 2x3 affine matrix M mapping image pixels to crop pixels (pixel
centres at integers, OpenCV's convention); the same M warps the image and moves keypoints,
and its inverse maps predictions back. Augmentation composes into M: a detector-like jitter
of the box (scale, position), extra scale and rotation about the crop centre, and a
horizontal flip, which also swaps every `_left` keypoint with its `_right` twin.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from engine.schema import CATEGORY_MASK, FLIP_PERMUTATION

log = logging.getLogger(__name__)

# ImageNet statistics, so an encoder initialized from ImageNet weights sees what it expects.
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255.0
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255.0
PAD_VALUE = tuple(float(v) for v in MEAN)  # padding outside the image normalizes to 0
MIN_CROP_SIDE = 16.0


# --- boxes and affine crops --------------------------------------------------------------


def keypoint_box(coords: np.ndarray, visibility: np.ndarray) -> np.ndarray | None:
    """Tight box (x0, y0, x1, y1) around the annotated keypoints (v >= 0) of one image, or None."""
    ok = visibility >= 0
    if ok.sum() < 2:
        return None
    pts = coords[ok]
    return np.concatenate([pts.min(axis=0), pts.max(axis=0)]).astype(np.float32)


def square_around(box: np.ndarray, margin: float) -> tuple[float, float, float]:
    """(cx, cy, side) of the square that holds `box` grown by `margin` of its larger side per side."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0, MIN_CROP_SIDE) * (1.0 + 2.0 * margin)
    return (x0 + x1) / 2.0, (y0 + y1) / 2.0, side


def crop_affine(
    cx: float, cy: float, side: float, size: int, angle_deg: float = 0.0, flip: bool = False
) -> np.ndarray:
    """M (2, 3) mapping the square (centre, side) of the image to a size x size crop.

    The crop is rotated by `angle_deg` (counter-clockwise in the image) and mirrored if `flip`.
    """
    s = size / side
    a = np.deg2rad(angle_deg)
    cos, sin = np.cos(a) * s, np.sin(a) * s
    mid = (size - 1) / 2.0
    m = np.array([[cos, sin, mid - cos * cx - sin * cy], [-sin, cos, mid + sin * cx - cos * cy]], dtype=np.float64)
    if flip:
        m[0] = -m[0]
        m[0, 2] += size - 1
    return m.astype(np.float32)


def crop_from_box(box: np.ndarray, margin: float, size: int) -> np.ndarray:
    """M for the square crop (no augmentation) around a garment box (x0, y0, x1, y1)."""
    cx, cy, side = square_around(box, margin)
    return crop_affine(cx, cy, side, size)


def warp_crop(image: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """The size x size crop of an RGB image under M; outside the image is mean-grey."""
    return cv2.warpAffine(
        image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=PAD_VALUE
    )


def apply_affine(coords: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Points (..., 2) through M (2, 3) or a batch of them (..., 2, 3) broadcast over leading axes."""
    return np.einsum("...ij,...kj->...ki", m[..., :2], coords) + m[..., None, :, 2]


def invert_affine(m: np.ndarray) -> np.ndarray:
    """The inverse of M (2, 3), or of each of a batch (..., 2, 3)."""
    a = m[..., :2]
    inv = np.linalg.inv(a)
    t = -np.einsum("...ij,...j->...i", inv, m[..., 2])
    return np.concatenate([inv, t[..., None]], axis=-1).astype(np.float32)


def flip_keypoints(coords: np.ndarray, visibility: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Mirror keypoints (..., 24, 2) in an image `width` wide and swap left/right twins."""
    out = coords[..., FLIP_PERMUTATION, :].copy()
    vis = visibility[..., FLIP_PERMUTATION].copy()
    present = vis >= 0
    out[..., 0] = np.where(present, (width - 1) - out[..., 0], out[..., 0])
    return out, vis


def crop_keypoints(coords: np.ndarray, visibility: np.ndarray, m: np.ndarray, flipped: bool) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (24, 2) in the crop of M; a flipped M also swaps left/right twins."""
    out = apply_affine(coords.astype(np.float32), m).astype(np.float32)
    vis = visibility.copy()
    if flipped:
        out, vis = out[FLIP_PERMUTATION], vis[FLIP_PERMUTATION]
    out[vis < 0] = -1.0
    return out, vis


def normalize_image(crop: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> float tensor (3, H, W), ImageNet-normalized."""
    x = (crop.astype(np.float32) - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


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
        from engine.annotations import Annotations, load_annotations

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
        from engine.images import read_image

        if self._cache is not None and i in self._cache:
            return self._cache[i]
        img = read_image(self.root / self.image_ids[i])
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
    from engine.targets import encode_targets

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
