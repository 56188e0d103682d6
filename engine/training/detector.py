"""Training the garment detector (`engine.model.detector`): samples pre-scaled in memory with
their keypoint boxes, box quality on held-out samples, the training loop and one step of it.

From scratch the backbone trains completely with ordinary BatchNorm; with ImageNet weights
(a local file) BatchNorm is frozen and the first stages stay fixed, as torchvision does.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.models.detection import FasterRCNN
from torchvision.ops import box_iou

from engine.io.boxes import boxes_from_keypoints
from engine.model.detector import (DetectorConfig, build_detector, detect, fuse_boxes, load_detector, save_detector,
                                   scale_for)

log = logging.getLogger(__name__)



def box_quality(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Mean IoU and recall at IoU 0.5 of one predicted box per image against its true box."""
    pred_t = torch.as_tensor(np.asarray(pred, dtype=np.float32)).reshape(-1, 4)
    gt_t = torch.as_tensor(np.asarray(gt, dtype=np.float32)).reshape(-1, 4)
    if len(gt_t) == 0:
        return {"mean_iou": float("nan"), "recall50": float("nan")}
    iou = box_iou(pred_t, gt_t).diagonal().numpy()
    return {"mean_iou": float(iou.mean()), "recall50": float((iou >= 0.5).mean())}


# --- training data ------------------------------------------------------------------------


@dataclass
class DetectorSamples:
    """Images pre-scaled to the detector's input size, with their boxes and class labels.

    Pre-scaling once means each training step skips JPEG decoding and resizing, which on a
    small CPU costs about as much as the network itself.
    """

    image_ids: list[str]
    images: list[np.ndarray]            # RGB uint8, scaled
    boxes: np.ndarray                   # (N, 4) float32 in scaled pixels
    labels: np.ndarray                  # (N,) int64, category code + 1

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: Sequence[int]) -> DetectorSamples:
        idx = list(indices)
        return DetectorSamples([self.image_ids[i] for i in idx], [self.images[i] for i in idx], self.boxes[idx], self.labels[idx])

    def hold_out(self, fraction: float, seed: int = 0) -> tuple[DetectorSamples, DetectorSamples]:
        """(train, held-out): a random `fraction` of the images (at least one) held out."""
        order = np.random.default_rng(seed).permutation(len(self))
        n_val = max(1, int(round(len(self) * fraction)))
        if n_val >= len(self):
            raise ValueError(f"cannot hold out {n_val} of {len(self)} images for validation")
        return self.subset(np.sort(order[n_val:])), self.subset(np.sort(order[:n_val]))

    def batch(self, indices: Sequence[int], flip: np.ndarray | None = None) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
        """Tensors for `FasterRCNN.forward`, horizontally flipping where `flip` is True."""
        images, targets = [], []
        for j, i in enumerate(indices):
            img = self.images[i]
            box = self.boxes[i].copy()
            if flip is not None and flip[j]:
                img = img[:, ::-1]
                w = img.shape[1]
                box[[0, 2]] = w - box[[2, 0]]
            images.append(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255))
            targets.append({"boxes": torch.from_numpy(box[None]), "labels": torch.tensor([self.labels[i]])})
        return images, targets

    def augmented_batch(self, indices: Sequence[int],
                        rng: np.random.Generator) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
        """`batch` with random horizontal flips and brightness / contrast jitter, for training."""
        images, targets = self.batch(indices, flip=rng.random(len(indices)) < 0.5)
        return [_jitter(im, rng) for im in images], targets

    def __add__(self, other: DetectorSamples) -> DetectorSamples:
        return DetectorSamples(self.image_ids + other.image_ids, self.images + other.images,
                               np.concatenate([self.boxes, other.boxes]), np.concatenate([self.labels, other.labels]))


def load_detector_samples(
    root: str | os.PathLike, split: str, config: DetectorConfig, limit: int | None = None,
    shard: tuple[int, int] = (0, 1),
) -> DetectorSamples:
    """Read `<root>/Annotations/<split>.csv` and its images; unreadable images are skipped with a warning.

    `shard=(rank, world)` reads only every world-th row of the first `limit`, from `rank` on
    (each process of a `torchrun` launch holds its own share of the images in memory)."""
    from engine.io.annotations import load_annotations

    path = Path(root) / "Annotations" / f"{split}.csv"
    ann = load_annotations(path)
    if limit is not None and limit < len(ann.image_ids):
        ann = ann.subset(np.arange(limit))
    rank, world = shard
    if world > 1:
        ann = ann.subset(np.arange(rank, len(ann.image_ids), world))
    return detector_samples(root, ann, config, source=str(path))


def detector_samples(root: str | os.PathLike, ann: Any, config: DetectorConfig,
                     source: str = "annotations", skip_unreadable: bool = True) -> DetectorSamples:
    """The detector samples of `ann` (an `Annotations`, image ids relative to `root`).

    Images with fewer than two annotated keypoints are skipped with a warning, and so are
    unreadable images unless `skip_unreadable` is False (then `ImageError` is raised)."""
    import cv2

    from engine.io.images import ImageError, read_image

    root = Path(root)
    ids, images, boxes, labels = [], [], [], []
    kp_boxes, valid = boxes_from_keypoints(ann.coords, ann.visibility, config.box_margin)
    for i, image_id in enumerate(ann.image_ids):
        if not valid[i]:
            log.warning("%s: %s has fewer than two annotated keypoints; skipped", source, image_id)
            continue
        try:
            img = read_image(root / image_id, root)
        except ImageError as e:
            if not skip_unreadable:
                raise
            log.warning("skipped: %s", e)
            continue
        h, w = img.shape[:2]
        s = scale_for(h, w, config.min_size, config.max_size)
        img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        box = np.clip(kp_boxes[i], 0, [w, h, w, h]) * s
        ids.append(image_id)
        images.append(img)
        boxes.append(box)
        labels.append(int(ann.categories[i]) + 1)
    if not images:
        raise ValueError(f"{source}: no usable training images")
    return DetectorSamples(ids, images, np.asarray(boxes, np.float32), np.asarray(labels, np.int64))


def evaluate_detector(model: FasterRCNN, samples: DetectorSamples, batch_size: int = 8) -> dict[str, float]:
    """Box quality of the fused best detection per image (as the pipeline crops it): mean IoU,
    recall@0.5, the accuracy of the best box's category, and `candidate_iou`, the mean IoU of
    the best of the top 10 boxes (what the pipeline's box search can still find)."""
    return _quality_from_sums(_quality_sums(model, samples, batch_size))


_QUALITY = ("mean_iou", "recall50", "category_accuracy", "candidate_iou")


def _quality_from_sums(sums: np.ndarray) -> dict[str, float]:
    """`evaluate_detector`'s figures from per-image sums (last element: the image count)."""
    n = sums[-1]
    return {k: float(v / n) if n else float("nan") for k, v in zip(_QUALITY, sums[:-1])}


def evaluate_detector_shared(model: FasterRCNN, share: DetectorSamples, batch_size: int = 8) -> dict[str, float]:
    """`evaluate_detector` of the held-out images shared by the ranks of a process group: each
    rank scores its share, the sums are all-reduced (alone, `evaluate_detector` itself)."""
    from engine.model.distributed import all_sum

    return _quality_from_sums(all_sum(_quality_sums(model, share, batch_size)))


def _quality_sums(model: FasterRCNN, samples: DetectorSamples, batch_size: int = 8) -> np.ndarray:
    """Sums over the images of IoU, IoU >= 0.5, right category and candidate IoU, then the count."""
    if len(samples) == 0:
        return np.zeros(len(_QUALITY) + 1)
    best = np.zeros((len(samples), 4), np.float32)
    cats = np.full(len(samples), -1, np.int64)
    candidate = np.zeros(len(samples))
    for start in range(0, len(samples), batch_size):
        idx = list(range(start, min(start + batch_size, len(samples))))
        images, _ = samples.batch(idx)
        for i, det in zip(idx, detect(model, images, top_k=10)):
            if len(det.scores):
                best[i] = fuse_boxes(det.boxes, det.scores)
                cats[i] = det.categories[0]
                candidate[i] = box_iou(torch.as_tensor(det.boxes), torch.as_tensor(samples.boxes[i:i + 1])).max().item()
    iou = box_iou(torch.as_tensor(best), torch.as_tensor(samples.boxes)).diagonal().numpy()
    return np.array([iou.sum(), (iou >= 0.5).sum(), (cats == samples.labels - 1).sum(), candidate.sum(), len(samples)],
                    dtype=np.float64)


# --- training -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectorTraining:
    """How long and how fast the detector trains: the figures of one process (under `torchrun`
    `train_detector` scales them by the rule of `engine.model.distributed`)."""

    steps: int = 3000
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 200
    eval_every: int = 250
    seed: int = 0


def train_detector(
    train: DetectorSamples,
    config: DetectorConfig,
    schedule: DetectorTraining,
    out: str | os.PathLike | None = None,
    val: DetectorSamples | None = None,
    backbone_weights: str | os.PathLike | None = None,
    device: torch.device | None = None,
    on_progress: Callable[[int, int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    metadata: dict[str, Any] | None = None,
    init: str | os.PathLike | None = None,
    sync_bn: bool = False,
) -> tuple[FasterRCNN, dict[str, float]]:
    """Train a detector; saves a checkpoint to `out` at every evaluation and at the end.

    `init` continues from the weights of a detector checkpoint of the same config (a new
    schedule: more training for a detector that needs it). Returns the model and its last
    held-out box quality (empty without `val`).

    In a process group of several ranks (`torchrun`; `device` is the rank's), `train` and
    `val` are this rank's shares: the model is wrapped in DistributedDataParallel, each rank
    draws its batches from its own share, and `schedule` is scaled by the rule of
    `engine.model.distributed` (steps, warm-up and evaluation interval / world, lr x
    sqrt(world)); the held-out sums are all-reduced, rank 0 alone reports and writes `out`,
    and a barrier at the end lets every rank read it. `sync_bn` synchronizes the BatchNorm
    layers that train (CUDA only).
    """
    from engine.model.device import needs_grad_scaler, pick_device
    from engine.model.distributed import any_rank, barrier, check_sync_bn, group_ranks, scaled_lr, scaled_steps

    device = device or pick_device()
    rank, world = group_ranks()
    if world > 1:
        schedule = dataclasses.replace(
            schedule, steps=scaled_steps(schedule.steps, world), warmup=scaled_steps(schedule.warmup, world),
            eval_every=scaled_steps(schedule.eval_every, world), lr=scaled_lr(schedule.lr, world))
        if rank == 0:
            log.info("detector on %d processes: %d steps of %d x %d images, peak lr %.3g", world, schedule.steps,
                     schedule.batch_size, world, schedule.lr)
    torch.manual_seed(schedule.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    rng = np.random.default_rng((schedule.seed, rank) if world > 1 else schedule.seed)
    model = build_detector(config, backbone_weights)
    if init is not None:
        start, start_config, _ = load_detector(init)
        if start_config != config:
            raise ValueError(f"{init}: its detector config {start_config} differs from {config}")
        model.load_state_dict(start.state_dict())
    if check_sync_bn(sync_bn, world, device):
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    net = model
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    params = [p for p in model.parameters() if p.requires_grad]
    # AdamW converges far faster than the usual SGD schedule when starting from scratch.
    opt = torch.optim.AdamW(params, lr=schedule.lr, weight_decay=schedule.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, schedule.warmup, schedule.steps))
    # fp16 autocast (CUDA without bf16) needs loss scaling; bf16 and the CPU do not.
    scaler = torch.amp.GradScaler("cuda") if needs_grad_scaler(device) else None
    quality: dict[str, float] = {}
    t0 = time.monotonic()
    running = None
    for step in range(1, schedule.steps + 1):
        idx = rng.choice(len(train), size=min(schedule.batch_size, len(train)), replace=False)
        images, targets = train.augmented_batch(idx, rng)
        loss = detector_step(model, opt, images, targets, device, scaler, step)
        sched.step()
        running = loss if running is None else 0.95 * running + 0.05 * loss
        # Every rank must agree to stop, or the others wait in the next step's all-reduce.
        last = step == schedule.steps or (should_stop is not None and any_rank(should_stop()))
        if step % schedule.eval_every == 0 or last:
            if val is not None:
                quality = evaluate_detector_shared(net, val)
            if rank == 0:
                log.info(
                    "detector step %d/%d loss %.3f %s (%.0f s)", step, schedule.steps, running,
                    " ".join(f"{k} {v:.3f}" for k, v in quality.items()), time.monotonic() - t0,
                )
                if out is not None:
                    save_detector(out, net, config, {**(metadata or {}), "step": step, "val": quality})
        if on_progress is not None and rank == 0:
            on_progress(step, schedule.steps, {"loss": running, **quality})
        if last:
            break
    barrier()  # rank 0's checkpoint is complete before any rank reads it
    net.eval()
    return net, quality


def detector_step(model: FasterRCNN, optimizer: torch.optim.Optimizer, images: list[torch.Tensor],
                  targets: list[dict[str, torch.Tensor]], device: torch.device,
                  scaler: torch.amp.GradScaler | None = None, step: int = 0) -> float:
    """One update of a detector in training mode on one batch; returns the summed loss.

    Raises `FloatingPointError` when the loss is not finite (the weights are left as they were);
    in a process group on every rank when on any (else the others wait in the gradients' all-reduce)."""
    from engine.model.device import autocast_for
    from engine.model.distributed import any_rank

    model.train()
    images = [im.to(device) for im in images]
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    with autocast_for(device):
        losses = model(images, targets)
    loss = sum(losses.values())
    if any_rank(not bool(torch.isfinite(loss))):
        raise FloatingPointError(f"detector loss became {loss.item()} at step {step}; lower the learning rate")
    params = [p for g in optimizer.param_groups for p in g["params"]]
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
    return loss.item()


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup)))) * 0.98 + 0.02


def _jitter(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Brightness/contrast jitter: cheap, and keeps the detector from keying on exact colours."""
    gain = float(rng.uniform(0.75, 1.25))
    bias = float(rng.uniform(-0.08, 0.08))
    return (image * gain + bias).clamp_(0, 1)
