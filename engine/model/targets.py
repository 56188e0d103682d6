"""Disk heatmap + offset targets (Papandreou et al., CVPR 2017), their loss, Hough-voting decode.

Coordinates are in input (crop) pixels with pixel centres at integers (OpenCV's convention).
Output cell (i, j) of a stride-s map sits at input position (j*s + (s-1)/2, i*s + (s-1)/2).
For keypoint k at position p_k, the target heatmap is 1 on the cells within radius R of p_k
and 0 elsewhere; on those cells the target offset is (p_k - cell) / R.

Decoding: every cell votes at `cell + R * offset` with weight sigmoid(logit), bilinearly
splatted into a map at output resolution; the keypoint is the vote peak, refined to sub-pixel
precision by the weighted mean of the votes that landed near it (two mean-shift steps).
Its confidence is the share of a full disk's vote mass that landed there.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def cell_centres(size: int, stride: int) -> np.ndarray:
    """Input-pixel positions of the output cells along one axis."""
    return np.arange(size // stride, dtype=np.float32) * stride + (stride - 1) / 2.0


def encode_targets(
    coords: np.ndarray, valid: np.ndarray, input_size: int, stride: int, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (K, 2) in crop pixels -> heatmaps (K, h, w) in {0, 1}, offsets (K, 2, h, w).

    Keypoints with valid=False get all-zero maps (they are also masked out of the loss).
    """
    c = cell_centres(input_size, stride)
    dx = coords[:, 0, None, None].astype(np.float32) - c[None, None, :]  # (K, 1, w)
    dy = coords[:, 1, None, None].astype(np.float32) - c[None, :, None]  # (K, h, 1)
    dx, dy = np.broadcast_arrays(dx, dy)
    inside = (dx * dx + dy * dy <= radius * radius) & valid[:, None, None]
    heat = inside.astype(np.float32)
    offsets = np.stack([dx, dy], axis=1) / np.float32(radius) * heat[:, None]
    return heat, offsets.astype(np.float32)


def encode_targets_batch(
    coords: torch.Tensor, valid: torch.Tensor, input_size: int, stride: int, radius: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """`encode_targets` for a batch, on the tensors' device: coords (B, K, 2), valid (B, K)
    -> heatmaps (B, K, h, w) in {0, 1}, offsets (B, K, 2, h, w)."""
    c = torch.as_tensor(cell_centres(input_size, stride), device=coords.device)
    xy = coords.float()
    dx = (xy[..., 0, None, None] - c[None, None, None, :]).expand(-1, -1, len(c), -1)  # (B, K, h, w)
    dy = (xy[..., 1, None, None] - c[None, None, :, None]).expand(-1, -1, -1, len(c))
    inside = (dx * dx + dy * dy <= radius * radius) & valid.bool()[..., None, None]
    heat = inside.float()
    offsets = torch.stack([dx, dy], dim=2) / radius * heat[:, :, None]
    return heat, offsets


def disk_cells(radius: float, stride: int) -> float:
    """Area of the disk in output cells: the vote mass of a perfectly predicted keypoint."""
    return math.pi * (radius / stride) ** 2


def instance_losses(
    output: torch.Tensor,
    heat_t: torch.Tensor,
    offsets_t: torch.Tensor,
    radius: float,
    stride: int,
    offset_weight: float,
) -> torch.Tensor:
    """Per (image, keypoint) loss (B, K) of one stage output (B, 3K, h, w).

    Logistic loss summed over the map and divided by the disk area in cells (so a keypoint's
    loss does not depend on the map size); Huber loss on the offsets, in output-cell units,
    averaged over the cells inside the target disk only.
    """
    k = heat_t.shape[1]
    out = output.float()
    b, _, h, w = out.shape
    heat = out[:, :k]
    offsets = out[:, k:].reshape(b, k, 2, h, w)
    bce = F.binary_cross_entropy_with_logits(heat, heat_t, reduction="none").sum(dim=(2, 3))
    bce = bce / disk_cells(radius, stride)
    scale = radius / stride  # R-units -> output-cell units
    huber = F.smooth_l1_loss(offsets * scale, offsets_t * scale, reduction="none", beta=1.0).sum(dim=2)
    n_in = heat_t.sum(dim=(2, 3))
    off = (huber * heat_t).sum(dim=(2, 3)) / n_in.clamp(min=1.0)
    return bce + offset_weight * off


def decode(
    output: torch.Tensor, radius: float, stride: int, input_size: int | None = None, refine_steps: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hough-vote decode of a stage output (B, 3K, h, w) -> coords (B, K, 2) in crop pixels, confidence (B, K).

    `input_size` is unused beyond documentation: the map size fixes the crop size (h*stride).
    """
    del input_size
    vx, vy, prob, (h, w) = _votes(output, radius, stride)
    b, k = prob.shape[:2]
    half = (stride - 1) / 2.0

    votes = _splat(vx, vy, prob, h, w, stride)  # (B, K, h*w)
    peak = votes.argmax(dim=2)
    px = (peak % w).float() * stride + half
    py = torch.div(peak, w, rounding_mode="floor").float() * stride + half

    # Mean-shift refinement: weighted mean of the votes within `window` of the estimate.
    window = max(1.5 * stride, 0.5 * radius)
    mass = prob.new_zeros(b, k)
    for _ in range(max(1, refine_steps)):
        near = ((vx - px[..., None]) ** 2 + (vy - py[..., None]) ** 2 <= window * window).float() * prob
        mass = near.sum(dim=2)
        has = mass > 1e-12
        safe = mass.clamp(min=1e-12)
        px = torch.where(has, (near * vx).sum(dim=2) / safe, px)
        py = torch.where(has, (near * vy).sum(dim=2) / safe, py)
    confidence = (mass / disk_cells(radius, stride)).clamp(max=1.0)
    return torch.stack([px, py], dim=2), confidence


def _votes(output: torch.Tensor, radius: float,
           stride: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Every cell's vote of a stage output (B, 3K, h, w): x, y in crop pixels and weight, each (B, K, h*w)."""
    out = output.detach().float()
    b, c, h, w = out.shape
    k = c // 3
    prob = torch.sigmoid(out[:, :k]).reshape(b, k, h * w)
    offsets = out[:, k:].reshape(b, k, 2, h * w)
    ys, xs = torch.meshgrid(
        torch.arange(h, device=out.device, dtype=torch.float32),
        torch.arange(w, device=out.device, dtype=torch.float32),
        indexing="ij",
    )
    half = (stride - 1) / 2.0
    cx = (xs.reshape(-1) * stride + half)[None, None]
    cy = (ys.reshape(-1) * stride + half)[None, None]
    return cx + radius * offsets[:, :, 0], cy + radius * offsets[:, :, 1], prob, (h, w)


def vote_peaks(output: torch.Tensor, radius: float, stride: int,
               num_peaks: int = 4, refine_steps: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """The `num_peaks` strongest local maxima of each keypoint's vote map, each refined as `decode`
    refines its one peak -> coords (B, K, P, 2) in crop pixels, vote mass (B, K, P) as `decode`'s
    confidence (0 where a map has fewer maxima). The refinement after a correction chooses among them."""
    vx, vy, prob, (h, w) = _votes(output, radius, stride)
    b, k = prob.shape[:2]
    votes = _splat(vx, vy, prob, h, w, stride).reshape(b * k, 1, h, w)
    # A local maximum is a cell no 3x3 neighbour outvotes; plateaus of zero are not peaks.
    is_max = (votes == F.max_pool2d(votes, 3, stride=1, padding=1)) & (votes > 1e-6)
    strength = torch.where(is_max, votes, torch.zeros_like(votes)).reshape(b, k, h * w)
    top, cell = strength.topk(min(num_peaks, h * w), dim=2)                     # (B, K, P)
    half = (stride - 1) / 2.0
    px = (cell % w).float() * stride + half
    py = torch.div(cell, w, rounding_mode="floor").float() * stride + half
    window = max(1.5 * stride, 0.5 * radius)
    mass = torch.zeros_like(px)
    x, y, p = vx[:, :, None], vy[:, :, None], prob[:, :, None]                # (B, K, 1, h*w)
    for _ in range(max(1, refine_steps)):
        near = ((x - px[..., None]) ** 2 + (y - py[..., None]) ** 2 <= window * window).float() * p
        mass = near.sum(dim=3)
        has = mass > 1e-12
        safe = mass.clamp(min=1e-12)
        px = torch.where(has, (near * x).sum(dim=3) / safe, px)
        py = torch.where(has, (near * y).sum(dim=3) / safe, py)
    mass = torch.where(top > 0, (mass / disk_cells(radius, stride)).clamp(max=1.0), torch.zeros_like(mass))
    return torch.stack([px, py], dim=3), mass


def _splat(vx: torch.Tensor, vy: torch.Tensor, weight: torch.Tensor, h: int, w: int, stride: int) -> torch.Tensor:
    """Bilinearly splat weighted votes (crop pixels) into (B, K, h*w) maps at output resolution."""
    b, k, n = vx.shape
    u = (vx - (stride - 1) / 2.0) / stride  # output-cell coordinates
    v = (vy - (stride - 1) / 2.0) / stride
    u0 = torch.floor(u)
    v0 = torch.floor(v)
    fu = u - u0
    fv = v - v0
    maps = weight.new_zeros(b * k, h * w)
    flat_w = weight.reshape(b * k, n)
    for du, dv, wt in ((0, 0, (1 - fu) * (1 - fv)), (1, 0, fu * (1 - fv)), (0, 1, (1 - fu) * fv), (1, 1, fu * fv)):
        uu = (u0 + du).long()
        vv = (v0 + dv).long()
        ok = (uu >= 0) & (uu < w) & (vv >= 0) & (vv < h)
        idx = (vv.clamp(0, h - 1) * w + uu.clamp(0, w - 1)).reshape(b * k, n)
        maps.scatter_add_(1, idx, (wt * ok).reshape(b * k, n) * flat_w)
    return maps.reshape(b, k, h * w)


def targets_as_output(heat: np.ndarray, offsets: np.ndarray, logit: float = 12.0) -> torch.Tensor:
    """Perfect network output for given targets (heatmaps -> +-logit), shape (1, 3K, h, w).

    Used to check encode/decode round trips and by tools that visualise targets.
    """
    k, h, w = heat.shape
    logits = np.where(heat > 0.5, logit, -logit).astype(np.float32)
    out = np.concatenate([logits, offsets.reshape(k * 2, h, w)], axis=0)
    return torch.from_numpy(out)[None]
