"""Keypoint-net input made on the networks' device, batched: normalization of uint8 crops and,
at inference, the affine crops themselves (one `affine_grid` / `grid_sample` for all views).

The CPU only decodes (and in training warps uint8 crops); the float work of a batch runs where
the network runs, so a GPU is not left waiting on per-sample CPU work. The crop convention is
`engine.model.crops`' (2x3 image -> crop matrices, pixel centres at integers, outside the image
mean-grey, i.e. 0 once normalized).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from engine.model.crops import MEAN, STD
from engine.model.device import prepare_input


def normalize_batch(images: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, H, W) with values 0-255 (uint8 or float) -> float32 ImageNet-normalized, same memory format."""
    mean = torch.as_tensor(MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.as_tensor(STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() - mean) / std


def network_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Crops for the keypoint net on `device`: uint8 crops (B, 3, S, S) are moved as uint8 and
    normalized there; float crops are taken as already normalized."""
    if images.dtype == torch.uint8:
        return prepare_input(normalize_batch(images.to(device, non_blocking=True)), device)
    return prepare_input(images, device)


def crop_thetas(mats: np.ndarray, size: int, height: int, width: int) -> np.ndarray:
    """`affine_grid` matrices (N, 2, 3) (align_corners=False) for image -> crop matrices M (N, 2, 3)
    of an image `height` x `width` cut to `size` x `size` crops."""
    m = np.asarray(mats, np.float64).reshape(-1, 2, 3)
    n = len(m)
    full = np.zeros((n, 3, 3))
    full[:, :2] = m
    full[:, 2, 2] = 1.0
    inv = np.linalg.inv(full)                                   # crop pixel -> image pixel
    out_to_px = np.array([[size / 2, 0, (size - 1) / 2], [0, size / 2, (size - 1) / 2], [0, 0, 1]])
    px_to_in = np.array([[2 / width, 0, 1 / width - 1], [0, 2 / height, 1 / height - 1], [0, 0, 1]])
    theta = px_to_in @ inv @ out_to_px
    return theta[:, :2].astype(np.float32)


def cut_crops(images: torch.Tensor, mats: np.ndarray, size: int) -> torch.Tensor:
    """Normalized crops (n * V, 3, size, size) of normalized images (n, 3, H, W) under V matrices
    per image, `mats` (n, V, 2, 3) image -> crop: bilinear, 0 (mean grey) outside the image.

    One `grid_sample` for the whole batch: each image's V crops are stacked along the grid's
    height, so no image is copied per view.
    """
    n, _, h, w = images.shape
    v = mats.shape[1]
    theta = torch.from_numpy(crop_thetas(mats.reshape(n * v, 2, 3), size, h, w)).to(images.device, non_blocking=True)
    grid = F.affine_grid(theta, [n * v, 3, size, size], align_corners=False)
    grid = grid.view(n, v * size, size, 2)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.view(n, 3, v, size, size).transpose(1, 2).reshape(n * v, 3, size, size)
