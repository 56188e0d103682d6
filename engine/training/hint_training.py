"""Training the keypoint net to take hints (issue 32 (b)), with simulated corrections.

As the MICCAI 2022 interactive keypoint work trains: for each training crop the current network
predicts without hints (no gradient, eval mode), the points it got most wrong are "corrected"
(set to their truth, worst first) and given as hint heatmaps (`engine.model.hints`), and the
network learns to predict all points from the image and the hints. Each crop draws its number of
hints k from 0..`max_hints` (k = 0 with probability `no_hint_share`, so the network without hints
keeps predicting as before); now and then a hint goes to a random point instead of the worst
(`random_share`: the reviewer also sets points the network had right). Ordinarily the hint
convolutions start at zero (`hourglass.with_hint_channels`): before its first step the network
is exactly the one it started from.

`fine_tune_with_hints` runs the steps (BatchNorm statistics frozen: the hint-free behaviour
stays that of the start); `hinted_errors` measures the curve a reviewer sees on ground-truth
crops: NE after k corrections worst-first (k = 0..K), each followed by a re-prediction with the
set points as hints, beside correcting only the set points.

`train_hint_package` turns a package into a format-2 one (`fkp train-hints`):

    fkp train-hints --model resources/models/demo --data ROOT \
        --out resources/models/demo-hints [--minutes 30] [--threads 1]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from engine.model.crops import apply_affine, invert_affine
from engine.model.hints import hint_heatmaps, hint_sigma
from engine.model.targets import decode
from engine.schema import CATEGORY_MASK
from engine.training.dataset import Augmentation, KeypointCropDataset, device_batch
from engine.training.keypoints import batch_loss, lr_factor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HintTraining:
    """The simulated corrections' and the fine-tune's settings."""

    max_hints: int = 5
    no_hint_share: float = 0.3      # crops trained without any hint
    random_share: float = 0.15      # a hint's share that goes to a random valid point, not the worst
    lr: float = 3e-4                # the network's own weights
    hint_lr: float = 3e-3           # the (new) hint convolutions
    weight_decay: float = 1e-4
    batch_size: int = 16
    ohem_fraction: float | None = None
    freeze_batchnorm: bool = True   # keep the running statistics of the net it starts from
    loss_on_hinted: bool = True     # False: the set points' own loss left out (only the others teach)


def simulated_hints(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray, rng: np.random.Generator,
                    settings: HintTraining = HintTraining()) -> np.ndarray:
    """(B, K) which points a simulated reviewer sets: k ~ 0..max_hints per crop (0 with
    `no_hint_share`), the valid points the prediction (B, K, 2) missed most first, each pick a
    random valid point instead with `random_share`."""
    b, k = valid.shape
    dist = np.where(valid, np.hypot(*(pred - truth).transpose(2, 0, 1)), -np.inf)
    chosen = np.zeros((b, k), bool)
    for i in range(b):
        n_valid = int(valid[i].sum())
        if n_valid == 0 or rng.random() < settings.no_hint_share:
            continue
        n = min(int(rng.integers(1, settings.max_hints + 1)), n_valid)
        order = [int(j) for j in np.argsort(-dist[i], kind="stable") if valid[i, j]]
        for _ in range(n):
            left = [j for j in order if not chosen[i, j]]
            pick = int(rng.choice(left)) if rng.random() < settings.random_share else left[0]
            chosen[i, pick] = True
    return chosen


def _freeze_batchnorm(net: torch.nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def _optimizer(net: torch.nn.Module, settings: HintTraining) -> torch.optim.Optimizer:
    hint, decay, no_decay = [], [], []
    for name, p in net.named_parameters():
        (hint if ".hint_" in name else no_decay if p.ndim <= 1 else decay).append(p)
    return torch.optim.AdamW([
        {"params": decay, "weight_decay": settings.weight_decay, "base_lr": settings.lr},
        {"params": no_decay, "weight_decay": 0.0, "base_lr": settings.lr},
        {"params": hint, "weight_decay": 0.0, "base_lr": settings.hint_lr},
    ], lr=settings.lr)


def hint_step(net: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor], preset,
              device: torch.device, rng: np.random.Generator, settings: HintTraining = HintTraining()) -> float:
    """One update: predict without hints, set the worst points as hints, learn from image + hints."""
    batch = device_batch(batch, preset, device)
    net.eval()
    with torch.no_grad():
        pred, _ = decode(net(batch["image"])[-1].float(), preset.radius, preset.stride)
    chosen = simulated_hints(pred.cpu().numpy(), batch["coords"].cpu().numpy(), batch["valid"].cpu().numpy(),
                             rng, settings)
    mask = torch.from_numpy(chosen).to(device)
    hints = hint_heatmaps(batch["coords"], mask, preset.input_size, hint_sigma(preset))
    net.train()
    if settings.freeze_batchnorm:
        _freeze_batchnorm(net)
    outputs = net(batch["image"], hints)
    if not settings.loss_on_hinted:
        batch = {**batch, "valid": batch["valid"] & ~mask}
    loss, plain = batch_loss(outputs, batch, preset, settings.ohem_fraction)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
    optimizer.step()
    return float(plain)


def fine_tune_with_hints(net: torch.nn.Module, samples: Dataset, preset, steps: int,
                         settings: HintTraining = HintTraining(), seed: int = 0, time_budget_s: float | None = None,
                         progress: Callable[[dict[str, Any]], None] | None = None,
                         device: torch.device | None = None) -> list[float]:
    """Fine-tune a hint-taking `net` in place for `steps` steps (or until `time_budget_s`; the
    learning rate's cosine follows whichever ends first) -> the per-step plain losses."""
    device = device or next(net.parameters()).device
    if not getattr(net, "takes_hints", False):
        raise ValueError("the network takes no hints: make it with hourglass.with_hint_channels first")
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(samples, batch_size=min(settings.batch_size, len(samples)), shuffle=True,
                        drop_last=len(samples) >= 2 * settings.batch_size, generator=gen)
    optimizer = _optimizer(net, settings)
    losses: list[float] = []
    started, epoch = time.perf_counter(), 0
    while len(losses) < steps:
        if hasattr(samples, "set_epoch"):
            samples.set_epoch(epoch)
        for batch in loader:
            elapsed = time.perf_counter() - started
            done = len(losses) / steps
            if time_budget_s:
                done = max(done, elapsed / time_budget_s)
            if len(losses) >= steps or done >= 1.0:
                return losses
            factor = lr_factor(len(losses), max(1, steps // 20), done)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            losses.append(hint_step(net, optimizer, batch, preset, device, rng, settings))
            if progress is not None:
                progress({"step": len(losses), "loss": losses[-1], "elapsed_s": elapsed, "done": done})
        epoch += 1
    return losses


@torch.no_grad()
def hinted_errors(net: torch.nn.Module, dataset: KeypointCropDataset, preset, max_k: int = 5,
                  batch_size: int = 32, use_hints: bool = True) -> dict[str, list[float]]:
    """NE (fractions) on ground-truth crops after k = 0..max_k corrections, worst point first: with
    the network re-predicting from the set points as hints after each (`hinted`) and with only
    the set points corrected (`clicked_only`); and the mean count of points beyond 0.05 of the
    normalizer per image (`wrong_per_image`) for both. `use_hints` False: the network re-predicts
    without hints (the same as clicked only: a check)."""
    from engine.analysis.ne import normalized_errors, pooled_ne

    device = next(net.parameters()).device
    net.eval()
    curves = {"hinted": [], "clicked_only": [], "wrong_hinted": [], "wrong_clicked_only": []}
    all_err = {name: [[] for _ in range(max_k + 1)] for name in ("hinted", "clicked_only")}
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        idx = batch["index"].numpy()
        inv = invert_affine(batch["affine"].numpy())
        truth, vis, cats = dataset.coords[idx], dataset.visibility[idx], dataset.categories[idx]
        pred_vis = np.where(CATEGORY_MASK[cats], 1, -1).astype(np.int8)
        crop_truth = batch["coords"]
        image = device_batch(batch, preset, device)["image"]
        set_mask = np.zeros(truth.shape[:2], bool)
        first, _ = decode(net(image)[-1].float(), preset.radius, preset.stride)
        hinted = apply_affine(first.cpu().numpy(), inv)
        clicked = hinted.copy()
        present = (vis >= 0) & CATEGORY_MASK[cats]
        for k in range(max_k + 1):
            for name, xy in (("hinted", hinted), ("clicked_only", clicked)):
                e = normalized_errors(truth, vis, cats, xy, pred_vis).errors
                all_err[name][k].append(e)
            if k == max_k:
                break
            # The reviewer sets the worst point of what is shown now (each curve its own).
            dist_h = np.where(present & ~set_mask, np.hypot(*(hinted - truth).transpose(2, 0, 1)), -1.0)
            dist_c = np.where(present, np.hypot(*(clicked - truth).transpose(2, 0, 1)), -1.0)
            rows = np.arange(len(idx))
            # The hinted curve sets its own worst point; the clicked-only curve its own.
            worst_h, worst_c = dist_h.argmax(1), dist_c.argmax(1)
            ok_h, ok_c = dist_h.max(1) >= 0, dist_c.max(1) >= 0
            set_mask[rows[ok_h], worst_h[ok_h]] = True
            hinted[set_mask] = truth[set_mask]
            clicked_set = np.zeros_like(set_mask)
            clicked_set[rows[ok_c], worst_c[ok_c]] = True
            clicked[clicked_set] = truth[clicked_set]
            if use_hints:
                hints = hint_heatmaps(crop_truth.to(device), torch.from_numpy(set_mask).to(device),
                                      preset.input_size, hint_sigma(preset))
                out, _ = decode(net(image, hints)[-1].float(), preset.radius, preset.stride)
            else:
                out, _ = decode(net(image)[-1].float(), preset.radius, preset.stride)
            new = apply_affine(out.cpu().numpy(), inv)
            hinted = np.where(set_mask[..., None], truth, new)
    for name in ("hinted", "clicked_only"):
        for k in range(max_k + 1):
            e = np.concatenate(all_err[name][k])
            curves[name].append(round(float(pooled_ne(e)), 5))
            curves["wrong_" + name].append(round(float(np.nansum(e > 0.05) / len(e)), 4))
    return curves


def _two_stage_ne(model, root: Path, truth) -> float:
    from engine.analysis.ne import evaluate
    from engine.model.pipeline import Pipeline

    pred, _, errors = Pipeline(model).predict(root, truth)
    return float(evaluate(truth, pred).ne)


def train_hint_package(model_path: str | Path, data: str | Path, out: str | Path, settings: HintTraining,
                       steps: int = 100_000, minutes: float = 30.0, seed: int = 0, val_limit: int = 300,
                       curve_before: bool = True, progress: Callable[[dict[str, Any]], None] | None = None
                       ) -> dict[str, Any]:
    """Fine-tune a package's keypoint net to take hints (a hint-taking net goes on: a second round)
    on `data` (Annotations/train.csv, val.csv) and write the hint-taking package (format 2) to
    `out`; returns the figures (the NE-after-k-corrections curve before and after, on the first
    `val_limit` val images, and the two-stage NE without hints before and after)."""
    from engine.io.annotations import load_annotations
    from engine.model.hourglass import with_hint_channels
    from engine.model.package import load_model, save_package

    torch.manual_seed(seed)
    root = Path(data)
    model = load_model(model_path)
    preset = model.preset
    train = KeypointCropDataset(root, root / "Annotations" / "train.csv", preset, Augmentation(), seed=seed)
    val_ann = load_annotations(root / "Annotations" / "val.csv")
    val_ann = val_ann.subset(np.arange(min(val_limit, len(val_ann))))
    val = KeypointCropDataset(root, val_ann, preset)
    net = model.keypoint_net if model.keypoint_net.takes_hints else with_hint_channels(model.keypoint_net)
    before = hinted_errors(net, val, preset) if curve_before else {}
    t0 = time.perf_counter()
    losses = fine_tune_with_hints(net, train, preset, steps, settings, seed, 60 * minutes, progress)
    train_s = time.perf_counter() - t0
    net.eval()
    after = hinted_errors(net, val, preset)
    hinted = type(model)(**{**model.__dict__, "keypoint_net": net})
    ne_before, ne_after = _two_stage_ne(model, root, val_ann), _two_stage_ne(hinted, root, val_ann)
    meta = {**model.metadata, "hints": {
        "from": str(model_path), "data": str(root), "steps": len(losses), "train_s": round(train_s, 1),
        "settings": {k: getattr(settings, k) for k in ("max_hints", "no_hint_share", "random_share", "lr", "hint_lr",
                                                       "loss_on_hinted")},
        "earlier": model.metadata.get("hints"),
        "val_images": len(val_ann), "gt_crop_ne_by_hints_before": before.get("hinted"),
        "gt_crop_ne_by_hints_after": after["hinted"], "clicked_only": after["clicked_only"],
        "two_stage_val_ne_before": ne_before, "two_stage_val_ne_after": ne_after}}
    written = save_package(out, hinted, meta, half=True)
    return {"out": str(written), "steps": len(losses), "train_s": round(train_s, 1),
            "final_loss": float(np.mean(losses[-50:])), "gt_crop_before": before, "gt_crop_after": after,
            "two_stage_val_ne_before": ne_before, "two_stage_val_ne_after": ne_after}
