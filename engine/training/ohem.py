"""Batch-level online hard example mining over (image, keypoint) instances.

All valid instances of the batch are ranked together (not a fixed number per image, not per
keypoint type): hard keypoints are unevenly spread over images, so the loss follows them.
"""

from __future__ import annotations

import math

import torch


def ohem_select(per_instance_loss: torch.Tensor, valid: torch.Tensor, top_fraction: float,
                groups: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean mask (same shape) of the hardest ceil(top_fraction * n_valid) valid instances
    (at least one), of the batch or, with `groups` (B,) ints, of each group of images.

    Computed on the tensors' device without reading anything back (no host sync before backward).
    """
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    return _select(per_instance_loss, valid, top_fraction, _dense_groups(per_instance_loss, groups))[0]


def ohem_loss(per_instance_loss: torch.Tensor, valid: torch.Tensor, top_fraction: float) -> torch.Tensor:
    """Mean loss over the hardest top fraction of the valid instances; gradients reach only those.

    A batch without any valid instance gives a zero that is still connected to the graph.
    """
    return grouped_ohem_loss(per_instance_loss, valid, top_fraction, None)


def grouped_ohem_loss(per_instance_loss: torch.Tensor, valid: torch.Tensor, top_fraction: float,
                      groups: torch.Tensor | None) -> torch.Tensor:
    """OHEM within each group of images (`groups` (B,) ints; None: one group), each group's loss
    weighted by its share of the batch.

    A retrain's batch mixes hard-set images with replayed ordinary ones; ranked together, the
    hard images' instances would take almost every OHEM slot and the replay, there to keep the
    model good on ordinary images, would get next to no gradient.
    """
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    dense = _dense_groups(per_instance_loss, groups)
    mask, inst = _select(per_instance_loss, valid, top_fraction, dense)
    b = per_instance_loss.shape[0]
    flat = per_instance_loss.reshape(-1)
    # torch.where, not boolean indexing: indexing needs the count on the host.
    chosen = torch.where(mask.reshape(-1), flat, torch.zeros_like(flat))
    sums = flat.new_zeros(b).scatter_add(0, inst, chosen)
    counts = flat.new_zeros(b).scatter_add(0, inst, mask.reshape(-1).to(flat.dtype))
    rows = flat.new_zeros(b).scatter_add(0, dense, torch.ones_like(dense, dtype=flat.dtype))
    return (sums / counts.clamp(min=1) * (rows / b)).sum()


def _dense_groups(per_instance_loss: torch.Tensor, groups: torch.Tensor | None) -> torch.Tensor:
    """Group numbers 0, 1, ... (B,) for the images' group labels, on the device, without a sync."""
    b = per_instance_loss.shape[0]
    device = per_instance_loss.device
    if groups is None:
        return torch.zeros(b, dtype=torch.long, device=device)
    g = groups.to(device).reshape(-1)
    order = torch.argsort(g, stable=True)
    s = g[order]
    starts = torch.ones_like(s, dtype=torch.long)
    starts[0] = 0
    starts[1:] = (s[1:] != s[:-1]).long()
    dense = torch.empty_like(order)
    dense[order] = torch.cumsum(starts, 0)
    return dense


def _select(per_instance_loss: torch.Tensor, valid: torch.Tensor, top_fraction: float,
            dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask of the kept instances, each instance's group number (B*K,))."""
    b = per_instance_loss.shape[0]
    flat = per_instance_loss.detach().reshape(-1).float()
    ok = valid.reshape(-1).bool()
    inst = dense[:, None].expand(b, flat.numel() // max(b, 1)).reshape(-1)
    n_valid = flat.new_zeros(b, dtype=torch.float64).scatter_add(0, inst, ok.double())
    # float64 as Python's math.ceil(top_fraction * n) computes it; at least one per group.
    n_keep = torch.ceil(n_valid * top_fraction).clamp(min=1)
    ranked = torch.where(ok, flat, torch.full_like(flat, -math.inf))
    # Rank inside each group: sort by loss (hardest first), then stably by group.
    by_loss = torch.argsort(ranked, descending=True, stable=True)
    order = by_loss[torch.argsort(inst[by_loss], stable=True)]
    sizes = torch.zeros(b, dtype=torch.long, device=flat.device).scatter_add(0, inst, torch.ones_like(inst))
    first = torch.cumsum(sizes, 0) - sizes
    position = torch.arange(flat.numel(), device=flat.device)
    rank = torch.empty_like(position)
    rank[order] = position - first[inst[order]]
    mask = ok & (rank < n_keep[inst])
    return mask.reshape(valid.shape), inst
