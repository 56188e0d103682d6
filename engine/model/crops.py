"""Keypoint crops: the square crop around a garment that the keypoint net sees, in training and
at inference alike.

A crop is described by a 2x3 affine matrix M mapping image pixels to crop pixels (pixel
centres at integers, OpenCV's convention); the same M warps the image and moves keypoints,
and its inverse maps predictions back (`engine.training.dataset` composes its augmentation
into M).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from engine.schema import FLIP_PERMUTATION


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
