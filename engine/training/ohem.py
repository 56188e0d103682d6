"""Batch-level online hard example mining over (image, keypoint) instances.

All valid instances of the batch are ranked together (not a fixed number per image, not per
keypoint type): hard keypoints are unevenly spread over images, so the loss follows them.
"""

from __future__ import annotations

import math

import torch


def ohem_select(per_instance_loss: torch.Tensor, valid: torch.Tensor, top_fraction: float) -> torch.Tensor:
    """Boolean mask (same shape) of the hardest ceil(top_fraction * n_valid) valid instances."""
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    flat = per_instance_loss.detach().reshape(-1)
    ok = valid.reshape(-1).bool()
    n_valid = int(ok.sum())
    mask = torch.zeros_like(ok)
    if n_valid == 0:
        return mask.reshape(valid.shape)
    n_keep = max(1, math.ceil(top_fraction * n_valid))
    ranked = torch.where(ok, flat, torch.full_like(flat, -math.inf))
    mask[torch.topk(ranked, n_keep).indices] = True
    return mask.reshape(valid.shape)


def ohem_loss(per_instance_loss: torch.Tensor, valid: torch.Tensor, top_fraction: float) -> torch.Tensor:
    """Mean loss over the hardest top fraction of the valid instances; gradients reach only those.

    A batch without any valid instance gives a zero that is still connected to the graph.
    """
    mask = ohem_select(per_instance_loss, valid, top_fraction)
    n = mask.sum()
    if int(n) == 0:
        return per_instance_loss.sum() * 0.0
    return per_instance_loss[mask].sum() / n


def grouped_ohem_loss(per_instance_loss: torch.Tensor, valid: torch.Tensor, top_fraction: float,
                      groups: torch.Tensor) -> torch.Tensor:
    """OHEM within each group of images (`groups` (B,) ints), each group's loss weighted by its
    share of the batch.

    A retrain's batch mixes hard-set images with replayed ordinary ones; ranked together, the
    hard images' instances would take almost every OHEM slot and the replay, there to keep the
    model good on ordinary images, would get next to no gradient.
    """
    total = per_instance_loss.sum() * 0.0
    for g in torch.unique(groups):
        rows = groups == g
        total = total + ohem_loss(per_instance_loss[rows], valid[rows], top_fraction) * (rows.sum() / len(groups))
    return total
