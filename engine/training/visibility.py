"""Training the visibility stage (`engine.model.visibility`) on annotated images.

Patches are cut around the annotated points, moved by a little noise (a predicted point is never
exactly where the annotator put it), labelled occluded (v = 0) or visible (v = 1). A tenth of
the images is held out: the report says how well the trained stage separates the two there and
how many of a reviewer's visibility toggles it saves at its threshold.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from engine.analysis.review_effort import rank_auc
from engine.io.annotations import Annotations
from engine.io.images import ImageError, read_image
from engine.model.visibility import (VisibilityConfig, VisibilityNet, garment_sizes, keypoint_patches,
                                     patch_tensor)


@dataclass
class VisibilityReport:
    """Held-out figures of a trained visibility stage."""

    train_points: int
    held_out_points: int
    occluded_share: float        # of the held-out points
    auc: float                   # chance an occluded point scores above a visible one
    toggles_all_visible: int     # a reviewer's toggles if every point were predicted visible
    toggles: int                 # ... with this stage's visibility
    losses: list[float]          # mean training loss per epoch
    skipped: list[str]           # images that could not be read ("id: why"), left out


def point_patches(root: str | os.PathLike, annotations: Annotations, config: VisibilityConfig,
                  rng: np.random.Generator | None = None, jitter: float = 0.0, skipped: list[str] | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(patches (M, P, P, 3) uint8, keypoints (M,), occluded (M,) bool) of every annotated point,
    each moved by normal noise of `jitter` x the garment size when `rng` is given. An image that
    cannot be read is left out and named in `skipped`."""
    present = annotations.visibility >= 0
    sizes = garment_sizes(annotations.coords, present)
    patches, keypoints, occluded = [], [], []
    for i in np.flatnonzero(present.sum(axis=1) >= 2):
        try:
            image = read_image(os.path.join(root, str(annotations.image_ids[i])), root)
        except ImageError as e:
            if skipped is not None:
                skipped.append(f"{annotations.image_ids[i]}: {e}")
            continue
        ks = np.flatnonzero(present[i])
        points = annotations.coords[i, ks].astype(np.float32)
        if rng is not None and jitter > 0:
            points = points + rng.normal(0.0, jitter * sizes[i], points.shape).astype(np.float32)
        patches.append(keypoint_patches(image, points, float(sizes[i] * config.scale), config.patch_size))
        keypoints.append(ks)
        occluded.append(annotations.visibility[i, ks] == 0)
    if not patches:
        raise ValueError("no image with at least two annotated points to learn visibility from")
    return np.concatenate(patches), np.concatenate(keypoints), np.concatenate(occluded)


def train_visibility(root: str | os.PathLike, annotations: Annotations, config: VisibilityConfig = VisibilityConfig(),
                     epochs: int = 12, batch_size: int = 256, lr: float = 2e-3, jitter: float = 0.02, seed: int = 0,
                     device: torch.device | str = "cpu",
                     on_epoch: Callable[[int, int, float], None] | None = None) -> tuple[VisibilityNet, VisibilityReport]:
    """Train a visibility stage on the annotated points of `annotations` (images under `root`);
    a tenth of the images (at least one) is held out for the report."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(annotations))
    held = max(1, len(annotations) // 10)
    train, val = annotations.subset(np.sort(order[held:])), annotations.subset(np.sort(order[:held]))
    skipped: list[str] = []
    x, k, y = point_patches(root, train, config, rng, jitter, skipped)
    torch.manual_seed(seed)
    net = VisibilityNet(config).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    keypoints, labels = torch.from_numpy(k), torch.from_numpy(y.astype(np.float32))
    losses = []
    for epoch in range(epochs):
        net.train()
        total, seen = 0.0, 0
        for batch in torch.randperm(len(y), generator=generator).split(batch_size):
            patches = patch_tensor(x[batch.numpy()]).to(device)
            # Brightness per channel: photos differ in light and white balance.
            patches = patches * (0.8 + 0.4 * torch.rand(len(batch), 3, 1, 1, generator=generator)).to(device)
            loss = nn.functional.binary_cross_entropy_with_logits(net(patches, keypoints[batch].to(device)),
                                                                  labels[batch].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, seen = total + loss.item() * len(batch), seen + len(batch)
        losses.append(total / seen)
        if on_epoch is not None:
            on_epoch(epoch + 1, epochs, losses[-1])
    net.eval()
    return net, _report(net, root, val, config, len(y), losses, skipped, device)


@torch.no_grad()
def _report(net: VisibilityNet, root, val: Annotations, config: VisibilityConfig, train_points: int,
            losses: list[float], skipped: list[str], device) -> VisibilityReport:
    x, k, occluded = point_patches(root, val, config, skipped=skipped)
    prob = torch.sigmoid(net(patch_tensor(x).to(device), torch.from_numpy(k).to(device))).cpu().numpy()
    return VisibilityReport(train_points=train_points, held_out_points=len(occluded),
                            occluded_share=float(occluded.mean()), auc=rank_auc(prob[occluded], prob[~occluded]),
                            toggles_all_visible=int(occluded.sum()),
                            toggles=int(((prob >= config.threshold) != occluded).sum()), losses=losses,
                            skipped=skipped)
