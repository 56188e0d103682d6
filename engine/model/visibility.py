"""The visibility stage: is a predicted keypoint occluded (FashionAI v = 0) or visible (v = 1)?

The keypoint network says where a point is, not whether something covers it, and its confidence
hardly tells (AUC 0.57-0.60 on synthetic data): an occluder (hair, an arm, a bag) is a local
thing. So a small classifier looks at a patch of the image around each predicted point (a side of
`VisibilityConfig.scale` times the garment's size, resized to `patch_size`), with an embedding of
which keypoint it is, and gives the probability that the point is occluded. Each occluded point
it gets right saves the reviewer a `V`; each visible one it marks occluded costs one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from engine.schema import NUM_KEYPOINTS


@dataclass(frozen=True)
class VisibilityConfig:
    """The visibility classifier's patches, layers and decision threshold."""

    patch_size: int = 32            # pixels of the patch the network sees
    scale: float = 0.25             # patch side / garment size (the larger side of its keypoint box)
    channels: tuple[int, int, int] = (16, 32, 64)
    embedding: int = 16             # size of the keypoint-type embedding
    threshold: float = 0.5          # occluded where the probability reaches it

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VisibilityConfig:
        d = dict(d)
        d["channels"] = tuple(int(c) for c in d["channels"])
        return cls(**d)


def _conv(a: int, b: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True))


class VisibilityNet(nn.Module):
    """Patches (N, 3, P, P) float in [0, 1] and keypoint indices (N,) -> occlusion logits (N,)."""

    def __init__(self, config: VisibilityConfig = VisibilityConfig()):
        super().__init__()
        c1, c2, c3 = config.channels
        self.config = config
        self.features = nn.Sequential(_conv(3, c1), nn.MaxPool2d(2), _conv(c1, c2), nn.MaxPool2d(2), _conv(c2, c3),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.keypoint = nn.Embedding(NUM_KEYPOINTS, config.embedding)
        self.head = nn.Sequential(nn.Linear(c3 + config.embedding, 32), nn.ReLU(inplace=True), nn.Linear(32, 1))

    def forward(self, patches: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.features(patches), self.keypoint(keypoints)], dim=1)).squeeze(1)


def garment_sizes(coords: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(n,) the larger side of each row's box of present keypoints (at least 8 px)."""
    big = np.float32(1e9)
    lo = np.where(present[..., None], coords, big).min(axis=1)
    hi = np.where(present[..., None], coords, -big).max(axis=1)
    size = np.where(present.any(axis=1), (hi - lo).max(axis=1), 0)
    return np.maximum(size, 8.0).astype(np.float32)


def keypoint_patches(image: np.ndarray, points: np.ndarray, side: float, size: int) -> np.ndarray:
    """uint8 patches (M, size, size, 3) of an RGB image centred on `points` (M, 2), `side` pixels wide."""
    s = size / side
    out = np.empty((len(points), size, size, 3), np.uint8)
    for j, (x, y) in enumerate(np.asarray(points, np.float32)):
        m = np.array([[s, 0, size / 2 - x * s], [0, s, size / 2 - y * s]], np.float32)
        out[j] = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out


def patch_tensor(patches: np.ndarray) -> torch.Tensor:
    """uint8 (M, P, P, 3) -> float (M, 3, P, P) in [0, 1]."""
    return torch.from_numpy(patches).permute(0, 3, 1, 2).float().div_(255)


@torch.no_grad()
def occlusion_probability(net: nn.Module, images: Sequence[np.ndarray], coords: np.ndarray, mask: np.ndarray,
                          device: torch.device | str = "cpu") -> np.ndarray:
    """(n, 24) probability that each point of `mask` (n, 24) at `coords` (n, 24, 2) is occluded
    in its RGB image; NaN outside the mask."""
    config: VisibilityConfig = net.config
    sides = garment_sizes(coords, mask) * config.scale
    patches, keypoints = [], []
    for i, image in enumerate(images):
        ks = np.flatnonzero(mask[i])
        patches.append(keypoint_patches(image, coords[i, ks], float(sides[i]), config.patch_size))
        keypoints.append(ks)
    prob = np.full(mask.shape, np.nan, np.float32)
    if not sum(len(k) for k in keypoints):
        return prob
    x = patch_tensor(np.concatenate(patches)).to(device)
    k = torch.from_numpy(np.concatenate(keypoints)).to(device)
    p = torch.sigmoid(net(x, k).float()).cpu().numpy()
    prob[mask] = p  # row-major order of the mask, as the patches were cut
    return prob


def predicted_visibility(prob: np.ndarray, mask: np.ndarray, threshold: float) -> np.ndarray:
    """FashionAI visibility (n, 24) int8: 0 where the occlusion probability reaches `threshold`, 1
    elsewhere in `mask`, -1 outside it."""
    return np.where(mask, np.where(np.nan_to_num(prob, nan=0.0) >= threshold, 0, 1), -1).astype(np.int8)
