"""Hints for the keypoint net (issue 32 (b)): the points a reviewer set, as input heatmaps.

One channel per keypoint (`NetConfig.hint_channels` = 24): a Gaussian at the point set by hand,
in crop pixels at the network's input resolution, peak 1; a channel whose point is not set is
zero. `engine.model.hourglass.KeypointNet.forward(x, hints)` takes them.
"""

from __future__ import annotations

import torch

# The hint's spread in input pixels, a share of the preset's disk radius (lite: 12 px -> 6 px).
HINT_SIGMA_RADII = 0.5


def hint_heatmaps(coords: torch.Tensor, set_mask: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """(B, K, size, size) float32 hint heatmaps of points (B, K, 2) in crop pixels where
    `set_mask` (B, K) is true; zero channels elsewhere (a point outside the crop still shows its
    Gaussian's tail where that reaches in)."""
    coords = coords.to(torch.float32)
    axis = torch.arange(size, device=coords.device, dtype=torch.float32)
    gx = torch.exp(-0.5 * ((axis.view(1, 1, -1) - coords[..., 0:1]) / sigma) ** 2)   # (B, K, W)
    gy = torch.exp(-0.5 * ((axis.view(1, 1, -1) - coords[..., 1:2]) / sigma) ** 2)   # (B, K, H)
    maps = gy.unsqueeze(-1) * gx.unsqueeze(-2)                                          # (B, K, H, W)
    return maps * set_mask.to(maps.dtype).view(*set_mask.shape, 1, 1)


def hint_sigma(preset) -> float:
    """The hint Gaussian's sigma for a preset, in input pixels."""
    return HINT_SIGMA_RADII * float(preset.radius)
