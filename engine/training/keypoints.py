"""Training the keypoint network: a reusable step, fine-tuning, validation NE, the full loop.

`train_step` does one OHEM-weighted update of all stages; `fine_tune` runs N such steps on
given samples (the retrain loop uses it); `validate` measures the Normalized Error on
ground-truth crops; `train_keypoints` is the epoch loop behind `fkp train-keypoints`, on the
CPU or CUDA (bf16/fp16 autocast, channels-last), single process or DistributedDataParallel
when started by `torchrun` (gloo on the CPU, NCCL on GPUs).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from engine.model.checkpoints import KEYPOINT_FORMAT, keypoint_checkpoint, load_checkpoint
from engine.model.crops import apply_affine, invert_affine
from engine.training.dataset import Augmentation, CropSubset, KeypointCropDataset, device_batch
from engine.model.device_crops import network_input
from engine.model.distributed import (all_sum, any_rank, barrier, check_sync_bn, join_process_group, scaled_lr,
                                      scaled_steps)
from engine.training.loader import EpochItems, EpochSampler, RandomOrder, epoch_loader
from engine.model.device import autocast_for, needs_grad_scaler, prepare_model
from engine.model.hourglass import KeypointNet, load_encoder_weights
from engine.training.ohem import grouped_ohem_loss
from engine.model.presets import Preset
from engine.schema import CATEGORY_MASK
from engine.model.targets import decode, instance_losses

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]


# --- model ---------------------------------------------------------------------------------


def build_model(preset: Preset, encoder_weights: str | os.PathLike | None = None) -> KeypointNet:
    """A fresh keypoint net for the preset; ImageNet encoder weights only from a local file."""
    model = KeypointNet(preset.net)
    if encoder_weights:
        names = load_encoder_weights(model, encoder_weights)
        log.info("encoder initialized from %s (%d tensors)", encoder_weights, len(names))
    else:
        log.info("no encoder weights given: training the keypoint net from scratch (random init)")
    return model


# --- one step ------------------------------------------------------------------------------


def batch_loss(outputs: list[torch.Tensor], batch: dict[str, torch.Tensor], preset: Preset,
               ohem_fraction: float | None = None) -> tuple[torch.Tensor, float]:
    """Sum over stages of the OHEM loss (intermediate supervision) -> (loss, last stage's plain mean loss).

    A batch with a "group" entry (B,) gets OHEM within each group (`grouped_ohem_loss`); a
    "weight" entry (B,) scales each image's instance losses."""
    frac = preset.ohem_fraction if ohem_fraction is None else ohem_fraction
    heat, offsets, valid = batch["heat"], batch["offsets"], batch["valid"]
    groups = batch.get("group")
    weight = batch.get("weight")  # (B,) per image, e.g. pseudo-labelled images below reviewed ones
    total = outputs[0].new_zeros((), dtype=torch.float32)
    for out in outputs:
        per = instance_losses(out, heat, offsets, preset.radius, preset.stride, preset.offset_weight)
        if weight is not None:
            per = per * weight.to(device=per.device, dtype=per.dtype)[:, None]
        total = total + grouped_ohem_loss(per, valid, frac, groups)
    # A tensor, not a float: reading it here would make the host wait for the GPU before backward.
    plain = (per.detach() * valid).sum() / valid.sum().clamp(min=1)
    return total, plain


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
               preset: Preset, device: torch.device, scaler: torch.amp.GradScaler | None = None,
               ohem_fraction: float | None = None) -> float:
    """One update on one batch (OHEM over the batch, all stages supervised); returns the plain loss."""
    model.train()
    batch = device_batch(batch, preset, device)
    with autocast_for(device):
        outputs = model(batch["image"])
    loss, plain = batch_loss(outputs, batch, preset, ohem_fraction)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
    return float(plain)  # after the update: the only host sync of the step


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    # No weight decay on BatchNorm parameters and biases (standard practice for conv nets).
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    # The fused kernel (one launch for all parameters) where every parameter is on CUDA.
    fused = all(p.is_cuda for p in decay + no_decay) and bool(decay + no_decay)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, **({"fused": True} if fused else {}))


def lr_factor(step: int, warmup_steps: int, progress: float) -> float:
    """Linear warm-up over the first steps, times a cosine decay to 2 % as `progress` goes 0 -> 1."""
    warm = min(1.0, (step + 1) / max(1, warmup_steps))
    t = min(1.0, max(0.0, progress))
    return warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _cycle(loader: DataLoader) -> Iterator[dict[str, torch.Tensor]]:
    epoch = 0
    while True:
        ds = loader.dataset
        if hasattr(ds, "set_epoch"):
            ds.set_epoch(epoch)
        yield from loader
        epoch += 1


def fine_tune(model: torch.nn.Module, samples: Dataset, preset: Preset, steps: int, lr: float = 5e-4,
              device: torch.device | None = None, batch_size: int | None = None,
              ohem_fraction: float | None = None, progress: Progress | None = None,
              should_stop: Callable[[], bool] | None = None) -> list[float]:
    """Fine-tune `model` in place on `samples` (items as KeypointCropDataset's) for `steps` OHEM steps.

    Returns the per-step losses. `should_stop()` is polled between steps (cancellation).
    """
    device = device or next(model.parameters()).device
    prepare_model(model, device)
    bs = min(batch_size or preset.batch_size, len(samples))
    loader = DataLoader(samples, batch_size=bs, shuffle=True, drop_last=len(samples) >= bs * 2)
    optimizer = make_optimizer(model, lr, preset.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if needs_grad_scaler(device) else None
    losses = []
    for step, batch in zip(range(steps), _cycle(loader)):
        if should_stop is not None and should_stop():
            break
        set_lr(optimizer, lr * lr_factor(step, max(1, steps // 10), step / max(1, steps)))
        losses.append(train_step(model, optimizer, batch, preset, device, scaler, ohem_fraction))
        if progress is not None:
            progress({"step": step + 1, "steps": steps, "loss": losses[-1]})
    return losses


# --- prediction and validation -------------------------------------------------------------


@torch.no_grad()
def predict_crops(model: torch.nn.Module, images: torch.Tensor, preset: Preset,
                  device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints of a batch of crops (B, 3, S, S), uint8 or normalized -> coords (B, 24, 2) crop pixels, confidence (B, 24)."""
    device = device or next(model.parameters()).device
    model.eval()
    with autocast_for(device):
        outputs = model(network_input(images, device))
    return decode(outputs[-1].float(), preset.radius, preset.stride)


@torch.no_grad()
def predict_dataset(model: torch.nn.Module, dataset: Dataset, preset: Preset, device: torch.device | None = None,
                    batch_size: int = 32, decoder: Callable | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predict every crop of a dataset -> (dataset indices, coords (N, 24, 2) in image pixels, confidence (N, 24)).

    `decoder(last_stage_output) -> (coords, confidence)` in crop pixels; default: Hough voting.
    """
    device = device or next(model.parameters()).device
    decoder = decoder or (lambda out: decode(out, preset.radius, preset.stride))
    model.eval()
    index, pred, conf = [], [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        with autocast_for(device):
            outputs = model(network_input(batch["image"], device))
        coords, c = decoder(outputs[-1].float())
        pred.append(apply_affine(coords.cpu().numpy(), invert_affine(batch["affine"].numpy())).astype(np.float32))
        conf.append(c.cpu().numpy())
        index.append(batch["index"].numpy())
    return np.concatenate(index), np.concatenate(pred), np.concatenate(conf)


def validate(model: torch.nn.Module, dataset: KeypointCropDataset, preset: Preset,
             device: torch.device | None = None, batch_size: int = 32, decoder: Callable | None = None) -> dict[str, float]:
    """NE (fraction, not percent) on ground-truth crops of `dataset` (built without augmentation)."""
    from engine.analysis.ne import normalized_errors, pooled_ne

    idx, pred_coords, _ = predict_dataset(model, dataset, preset, device, batch_size, decoder)
    cats = dataset.categories[idx]
    pred_vis = np.where(CATEGORY_MASK[cats], 1, -1).astype(np.int8)
    errors = normalized_errors(dataset.coords[idx], dataset.visibility[idx], cats, pred_coords, pred_vis).errors
    return {"ne": pooled_ne(errors), "points": int(np.isfinite(errors).sum()), "images": int(len(idx))}


# --- the training loop ---------------------------------------------------------------------


def _split_path(root: Path, split: str) -> Path:
    return root / "Annotations" / f"{split}.csv"


def train_keypoints(
    data_root: str | os.PathLike,
    preset: Preset,
    out: str | os.PathLike,
    epochs: int | None = None,
    resume: str | os.PathLike | None = None,
    init: str | os.PathLike | None = None,
    train_split: str = "train",
    val_split: str = "val",
    val_root: str | os.PathLike | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    workers: int = 0,
    encoder_weights: str | os.PathLike | None = None,
    max_train_images: int | None = None,
    max_val_images: int | None = None,
    augment: Augmentation | None = Augmentation(),
    seed: int = 0,
    max_steps: int | None = None,
    time_budget_s: float | None = None,
    progress: Progress | None = None,
    sync_bn: bool = False,
) -> list[dict[str, Any]]:
    """Train (or resume) the keypoint net; writes `out` after every epoch (and `<out>.best.pt`).

    The learning rate warms up, then decays along a cosine over the run's progress: the larger
    of steps done / all steps and, with `time_budget_s`, training time used / budget. With a
    budget the run stops when it is spent (validating and saving the partial epoch), so a
    shared CPU of unknown speed still gets a fully annealed model on time.

    Validation uses `<val_root or data_root>/Annotations/<val_split>.csv`; without that file,
    5 % of the training images are held out. `resume` continues a run (weights, optimizer,
    schedule, history); `init` starts a new run (new schedule) from a checkpoint's weights and
    preset, e.g. a second, shorter cosine cycle. Returns the per-epoch history.

    Under `torchrun` every process trains on its shard of the images (DDP) on its own device,
    by the rule of `engine.model.distributed`: `batch_size` per process, steps per epoch and
    warm-up divided by the world size, peak `lr` x sqrt(world); every rank validates its
    share of the held-out images (sums all-reduced); rank 0 writes the checkpoints. `sync_bn`
    synchronizes BatchNorm statistics across the GPUs (CUDA only). With `workers` > 0 the
    loader's worker processes come from a fork server and live across epochs
    (`engine.training.loader`).
    """
    ranks = join_process_group(device)
    distributed, rank, world, dev = ranks.distributed, ranks.rank, ranks.world, ranks.device
    main_process = ranks.main
    torch.manual_seed(seed + rank)

    start_epoch, history, state = 0, [], None
    if resume:
        state = load_checkpoint(resume, KEYPOINT_FORMAT)
        preset = Preset.from_dict(state["preset"])
        start_epoch = int(state.get("epoch", 0))
        history = list(state.get("history", []))
        log.info("resuming from %s at epoch %d", resume, start_epoch)
    elif init:
        init_state = load_checkpoint(init, KEYPOINT_FORMAT)
        preset = Preset.from_dict(init_state["preset"])
        log.info("starting from the weights of %s (new schedule)", init)
    epochs = preset.epochs if epochs is None else epochs
    batch_size = batch_size or preset.batch_size
    lr = scaled_lr(lr or preset.lr, world)

    root = Path(data_root)
    train_ds = KeypointCropDataset(root, _split_path(root, train_split), preset, augment=augment, seed=seed)
    vroot = Path(val_root) if val_root else root
    if _split_path(vroot, val_split).is_file():
        val_ds = KeypointCropDataset(vroot, _split_path(vroot, val_split), preset, augment=None)
        val_idx = np.arange(len(val_ds))
        train_idx = np.arange(len(train_ds))
    else:
        log.info("%s not found: holding out 5 %% of the training images for validation", _split_path(vroot, val_split))
        val_ds = KeypointCropDataset(root, _split_path(root, train_split), preset, augment=None)
        perm = np.random.default_rng(seed).permutation(len(train_ds))
        n_val = max(1, len(perm) // 20)
        val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    if max_train_images is not None:
        train_idx = train_idx[:max_train_images]
    if max_val_images is not None:
        val_idx = val_idx[:max_val_images]
    train_set = EpochItems(train_ds, train_idx)
    val_set = CropSubset(val_ds, val_idx)
    # Every rank validates its share; the sums are all-reduced (`_validate_shared`).
    val_share = CropSubset(val_ds, val_idx[rank::world])

    model = KeypointNet(preset.net) if (state or init) else build_model(preset, encoder_weights)
    if state:
        model.load_state_dict(state["state_dict"])
    elif init:
        model.load_state_dict(init_state["state_dict"])
    if check_sync_bn(sync_bn, ranks.world, ranks.device):
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = prepare_model(model, dev)
    net = model
    if distributed:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)

    order = (DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
             if distributed else RandomOrder(len(train_set), seed))
    sampler = EpochSampler(order)
    loader = epoch_loader(train_set, sampler, batch_size, workers, pin_memory=dev.type == "cuda")
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError(f"{root}: {len(train_set)} training images is fewer than one batch of {batch_size}")
    optimizer = make_optimizer(model, lr, preset.weight_decay)
    if state and "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    total_steps = epochs * steps_per_epoch
    warmup = min(scaled_steps(300, world), max(1, total_steps // 10))
    scaler = torch.amp.GradScaler("cuda") if needs_grad_scaler(dev) else None

    if main_process:
        log.info("training %s on %s: %d train / %d val images, %d steps/epoch x %d epochs, batch %d x %d process(es), "
                 "peak lr %.3g", preset.name, dev, len(train_set), len(val_set), steps_per_epoch, epochs, batch_size,
                 world, lr)
    out = Path(out)
    best = min((h["val_ne"] for h in history if h.get("val_ne") == h.get("val_ne")), default=math.inf)
    images_seen = int(history[-1]["images_seen"]) if history else 0
    step = int(state.get("step", 0)) if state else 0
    train_seconds = float(state.get("train_seconds", 0.0)) if state else 0.0
    steps_done, out_of_time = 0, False
    for epoch in range(start_epoch, epochs):
        train_ds.set_epoch(epoch)
        sampler.set_epoch(epoch)
        t0 = time.monotonic()
        losses = []
        for i, batch in enumerate(loader):
            used = train_seconds + time.monotonic() - t0
            progress_frac = max(step / total_steps, used / time_budget_s if time_budget_s else 0.0)
            set_lr(optimizer, lr * lr_factor(step, warmup, progress_frac))
            losses.append(train_step(model, optimizer, batch, preset, dev, scaler))
            step += 1
            steps_done += 1
            if time_budget_s is not None:
                out_of_time = any_rank(train_seconds + time.monotonic() - t0 >= time_budget_s)
            if progress is not None and main_process:
                rate = (i + 1) * batch_size * world / max(1e-9, time.monotonic() - t0)
                progress({"epoch": epoch + 1, "epochs": epochs, "step": i + 1, "steps": steps_per_epoch,
                          "loss": float(np.mean(losses[-20:])), "images_per_s": rate})
            if (max_steps is not None and steps_done >= max_steps) or out_of_time:
                break
        seconds = time.monotonic() - t0
        train_seconds += seconds
        images_seen += len(losses) * batch_size * world
        record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "seconds": seconds,
                  "images_per_s": len(losses) * batch_size * world / max(seconds, 1e-9),
                  "lr": float(optimizer.param_groups[0]["lr"]), "images_seen": images_seen,
                  "steps": step, "train_seconds": train_seconds}
        t1 = time.monotonic()
        record.update({f"val_{k}": v for k, v in _validate_shared(net, val_share, preset, dev).items()})
        record["val_seconds"] = time.monotonic() - t1
        if main_process:
            history.append(record)
            log.info("epoch %d/%d: loss %.4f, val NE %.2f %% (%d points), %.1f images/s, %.0f s",
                     epoch + 1, epochs, record["train_loss"], 100 * record["val_ne"], record["val_points"],
                     record["images_per_s"], seconds)
            ckpt = keypoint_checkpoint(net, preset, epoch=epoch + 1, history=history,
                                       metrics={"val_ne": record["val_ne"]}, step=step,
                                       train_seconds=train_seconds, optimizer=optimizer.state_dict())
            from engine.model.checkpoints import save_checkpoint

            save_checkpoint(out, ckpt)
            if record["val_ne"] < best:
                best = record["val_ne"]
                save_checkpoint(out.with_name(out.stem + ".best" + out.suffix), ckpt)
            if progress is not None:
                progress({"epoch_done": epoch + 1, **record})
        barrier()  # the checkpoint is written before any rank reads it
        if (max_steps is not None and steps_done >= max_steps) or out_of_time:
            if out_of_time and main_process:
                log.info("time budget of %.0f s spent after %d steps", time_budget_s, step)
            break
    return history


def _validate_shared(net: torch.nn.Module, share: Dataset, preset: Preset, device: torch.device) -> dict[str, float]:
    """`validate` of this rank's share of the held-out crops, pooled over the ranks (an
    all-reduce of the error sums; alone, `validate` itself)."""
    r = validate(net, share, preset, device) if len(share) else {"ne": float("nan"), "points": 0, "images": 0}
    points = r["points"]
    total, points, images = all_sum([r["ne"] * points if points else 0.0, points, r["images"]])
    return {"ne": float(total / points) if points else float("nan"), "points": int(points), "images": int(images)}
