"""Retraining on hard samples: fine-tune a model package's keypoint network, then its detector,
on a curated hard set.

Every batch mixes augmented crops of the hard set (oversampled: a fixed share of each batch,
however small the set) with a replay of the other training images, so the network learns the
hard cases without forgetting the ordinary ones; the loss is the batch-level OHEM loss of
`engine.training.keypoints`, and the replayed crops' targets are the starting model's own outputs
(distillation). The detector is then fine-tuned on the same hard set and replay
(`RetrainConfig.detector_steps`; 0 keeps it). Both networks fine-tune with their BatchNorm
statistics frozen (`RetrainConfig.freeze_batchnorm`). A held-out validation subset,
carved deterministically out of the non-hard images and never trained on, measures what the
retrain did to ordinary images; the hard set measures what it did where it was aimed. Both are
scored with the whole two-stage pipeline (or the annotated boxes, `RetrainConfig.boxes`)
before and after. An adapt retrain (`RetrainConfig.adapt()`, training on reviewed images) run
through `retrain_and_save` also holds out a share of the reviewed images themselves
(`choose_reviewed_holdout`): their NE and a simulated reviewer's seconds before and after say
whether the model learnt the new domain, on images it never trained on.

The model passed in is never modified; a failure (NaN loss, out of memory, unreadable image)
raises `RetrainError` with a clear message and nothing is written.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader

from engine.io.annotations import Annotations, concat_annotations
from engine.training.dataset import Augmentation, KeypointCropDataset, device_batch, device_images
from engine.training.detector import DetectorSamples, detector_samples, detector_step
from engine.model.device import (autocast_for, needs_grad_scaler, out_of_memory_message, pick_device, prepare_input,
                                 prepare_model)
from engine.io.images import ImageError
from engine.analysis.ne import evaluate
from engine.model.package import TwoStageModel
from engine.training.retrain_config import RetrainConfig
from engine.training.keypoints import batch_loss, make_optimizer, set_lr, train_step


class RetrainError(Exception):
    """A retrain could not finish (NaN loss, out of memory, unreadable image, nothing to train on)."""


class RetrainCancelled(Exception):
    """`should_stop()` said stop: the retrain ended early and nothing was made of it."""


@dataclass
class NESummary:
    """NE (fractions) of one model: on the held-out images (overall and per category) and on the hard set."""

    overall: float
    per_category: dict[str, float]
    hard: float
    hard_per_image: dict[str, float] = field(default_factory=dict)
    # The reviewed images held out of an adapt retrain (NaN without any): their NE, and the seconds
    # a simulated reviewer spends correcting the predictions (`review_effort.prelabelled`, summed).
    reviewed_holdout: float = math.nan
    reviewed_holdout_seconds: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """Its fields; the reviewed hold-out's only where there was one."""
        out = asdict(self)
        if math.isnan(self.reviewed_holdout) and math.isnan(self.reviewed_holdout_seconds):
            del out["reviewed_holdout"], out["reviewed_holdout_seconds"]
        return out


@dataclass
class RetrainResult:
    """The retrained model (not yet saved) and what it did."""

    model: TwoStageModel
    losses: list[float]              # keypoint network, per step
    detector_losses: list[float]     # detector, per step (empty: the detector was kept)
    before: NESummary
    after: NESummary
    holdout_ids: list[str]
    hard_ids: list[str]          # the hard images trained on
    replay_images: int
    seconds: float
    reviewed_holdout_ids: list[str] = field(default_factory=list)  # reviewed images held out, never trained on
    reviewed_holdout_note: str = ""  # why fewer were held out than the rule asks (too few reviewed images)

    def report(self) -> dict[str, Any]:
        """Plain numbers for metadata, JSON and the studio's before/after table."""
        return {"before": self.before.to_dict(), "after": self.after.to_dict(), "steps": len(self.losses),
                "final_loss": float(np.mean(self.losses[-10:])) if self.losses else float("nan"),
                "detector_steps": len(self.detector_losses),
                "detector_final_loss": (float(np.mean(self.detector_losses[-10:])) if self.detector_losses
                                        else float("nan")),
                "holdout_images": len(self.holdout_ids), "hard_images": len(self.hard_ids),
                "replay_images": self.replay_images, "seconds": self.seconds,
                "reviewed_holdout_images": len(self.reviewed_holdout_ids),
                "reviewed_holdout_note": self.reviewed_holdout_note}


# --- which images do what --------------------------------------------------------------------


def choose_holdout(image_ids: Sequence[str], hard_ids: Sequence[str], fraction: float, max_images: int) -> list[str]:
    """A deterministic validation subset of the non-hard images: those whose id hashes lowest.

    Hash order does not depend on file order or on the other images, so the same images are
    chosen again and a growing data set keeps its earlier choices where it can.
    """
    hard = set(hard_ids)
    candidates = [str(i) for i in image_ids if str(i) not in hard]
    n = min(max_images, int(round(fraction * len(candidates))))
    if fraction > 0 and len(candidates) > 1:
        n = max(n, 1)
    keys = np.array([int.from_bytes(hashlib.sha1(i.encode("utf-8")).digest()[:8], "big") for i in candidates],
                    dtype=np.uint64)
    return sorted(candidates[j] for j in np.argsort(keys, kind="stable")[:n])


# An adapt retrain holds out at least this share of the reviewed images, and at least this many
# while as many are left to train on.
REVIEWED_HOLDOUT_SHARE = 0.2
REVIEWED_HOLDOUT_MIN = 10


def choose_reviewed_holdout(reviewed_ids: Sequence[str], seed: int) -> tuple[list[str], str]:
    """(the reviewed images an adapt retrain holds out, a note when fewer than the rule asks).

    The rule: at least 1 in 5 (`REVIEWED_HOLDOUT_SHARE`) and at least 10 (`REVIEWED_HOLDOUT_MIN`)
    while 10 are left to train on, never all of them: of N reviewed images max(ceil(N / 5),
    min(10, N - 10)); fewer than 10 reviewed images, none (one or two images would measure
    nothing, and would be taken from very few to train on). The images whose id hashes lowest
    with `seed` are chosen, so the same seed chooses the same images whatever their order.
    """
    ids = sorted(dict.fromkeys(str(i) for i in reviewed_ids))
    n = len(ids)
    k = max(math.ceil(REVIEWED_HOLDOUT_SHARE * n), min(REVIEWED_HOLDOUT_MIN, n - REVIEWED_HOLDOUT_MIN))
    k = k if n >= REVIEWED_HOLDOUT_MIN else 0
    note = ""
    if k == 0:
        note = (f"only {n} reviewed image(s), fewer than {REVIEWED_HOLDOUT_MIN}: none held out, so nothing "
                "measures the new domain on images the retrain did not train on")
    elif k < REVIEWED_HOLDOUT_MIN:
        note = (f"only {n} reviewed images: {k} held out (the rule asks for {REVIEWED_HOLDOUT_MIN} with "
                f"{REVIEWED_HOLDOUT_MIN} left to train on), so their NE is a rough measure")
    keys = np.array([int.from_bytes(hashlib.sha1(f"{seed}:{i}".encode("utf-8")).digest()[:8], "big") for i in ids],
                    dtype=np.uint64)
    return sorted(ids[j] for j in np.argsort(keys, kind="stable")[:k]), note


def _hard_per_batch(batch_size: int, hard_share: float) -> int:
    """Hard images in a mixed batch: round(hard_share * batch_size), at least one."""
    return min(batch_size, max(1, round(hard_share * batch_size)))


def mixed_batches(n_hard: int, n_replay: int, batch_size: int, hard_share: float, steps: int,
                  seed: int, n_pseudo: int = 0, pseudo_share: float = 0.0) -> np.ndarray:
    """(steps, batch_size) indices into [hard images..., replay images..., pseudo-labelled images...]:
    every batch has round(hard_share * batch_size) hard images (at least one), drawn from
    successive shuffles so each hard image comes back equally often; with pseudo-labelled images,
    round(pseudo_share * batch_size) of them (at least one) likewise; the rest replays the other images."""
    if n_hard < 1:
        raise RetrainError("the hard set has no usable image (each needs at least two annotated keypoints)")
    rng = np.random.default_rng(seed)
    k_pseudo = min(batch_size - 1, max(1, round(pseudo_share * batch_size))) if n_pseudo and pseudo_share > 0 else 0
    k_hard = (batch_size - k_pseudo if n_replay == 0
              else min(batch_size - k_pseudo, _hard_per_batch(batch_size, hard_share)))
    k_replay = batch_size - k_hard - k_pseudo

    def stream(n: int, count: int) -> np.ndarray:
        reps = -(-count // n)
        return np.concatenate([rng.permutation(n) for _ in range(reps)])[:count]

    parts = [stream(n_hard, steps * k_hard).reshape(steps, k_hard)]
    if k_replay:
        parts.append(n_hard + stream(n_replay, steps * k_replay).reshape(steps, k_replay))
    if k_pseudo:
        parts.append(n_hard + n_replay + stream(n_pseudo, steps * k_pseudo).reshape(steps, k_pseudo))
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def retrain_lr_factor(step: int, steps: int, warmup_share: float) -> float:
    """The learning rate of step `step` (0-based) of `steps`, as a share of the peak: a linear
    warm-up over round(warmup_share * steps) steps (at least one) that starts below the peak
    ((step + 1) / (warm-up + 1)), times a cosine from the peak down to 2 % taken at the middle of
    each step. A one-step retrain runs at a quarter of the peak, never at the whole of it."""
    warmup = max(1, round(warmup_share * steps))
    warm = min(1.0, (step + 1) / (warmup + 1))
    t = min(1.0, max(0.0, (step + 0.5) / max(1, steps)))
    return warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


# --- evaluation ------------------------------------------------------------------------------


def device_copy(model: TwoStageModel, device: torch.device) -> TwoStageModel:
    """`model` with copies of its networks on `device` (the keypoint net in the device's memory
    format; eval mode): whatever runs or trains there, the caller's networks stay as they are."""
    return TwoStageModel(preset=model.preset, detector=copy.deepcopy(model.detector).to(device).eval(),
                         detector_config=model.detector_config,
                         keypoint_net=prepare_model(copy.deepcopy(model.keypoint_net), device).eval(),
                         metadata=dict(model.metadata),
                         visibility=None if model.visibility is None else copy.deepcopy(model.visibility).to(device).eval())


def summarize(model: TwoStageModel, root, holdout: Annotations, hard: Annotations, device: torch.device,
              boxes: str, batch_size: int, should_stop: Callable[[], bool] | None,
              reviewed_holdout: Annotations | None = None) -> NESummary:
    """NE on the held-out images (overall, per category) and on the hard set, and on the reviewed
    images held out (with the simulated reviewer's seconds) when given; `boxes` as in
    RetrainConfig. The model's networks must be on `device` already (the Pipeline takes them as they are)."""
    both = concat_annotations(holdout, hard)
    if reviewed_holdout is not None and len(reviewed_holdout):
        both = concat_annotations(both, reviewed_holdout)
    if boxes == "detector":
        from engine.model.pipeline import Pipeline

        pred, _, errors = Pipeline(model, device=device, batch_size=batch_size).predict(root, both,
                                                                                         should_stop=should_stop)
        if errors:
            image_id, message = next(iter(errors.items()))
            raise RetrainError(f"cannot evaluate: image {image_id}: {message}")
    else:
        pred = predict_annotated_boxes(model.keypoint_net, model.preset, root, both, device, batch_size)
    if should_stop is not None and should_stop():
        raise RetrainCancelled()
    n = len(holdout)
    held = evaluate(holdout, _rows_for(pred, holdout), intersect=True) if n else None
    hard_eval = evaluate(hard, _rows_for(pred, hard), intersect=True) if len(hard) else None
    reviewed_ne = reviewed_seconds = math.nan
    if reviewed_holdout is not None and len(reviewed_holdout):
        reviewed_ne = evaluate(reviewed_holdout, _rows_for(pred, reviewed_holdout), intersect=True).ne
        reviewed_seconds = _review_seconds(reviewed_holdout, pred)
    return NESummary(
        overall=held.ne if held else math.nan,
        per_category={k: v["ne"] for k, v in held.per_category.items()} if held else {},
        hard=hard_eval.ne if hard_eval else math.nan,
        hard_per_image=({str(i): float(e) for i, e in zip(hard.image_ids, hard_eval.per_image) if np.isfinite(e)}
                        if hard_eval is not None else {}),
        reviewed_holdout=reviewed_ne,
        reviewed_holdout_seconds=reviewed_seconds,
    )


def _review_seconds(truth: Annotations, pred: Annotations) -> float:
    """Seconds a simulated reviewer spends turning the predictions into `truth` (summed over its
    images; an image without a prediction row is annotated from scratch)."""
    from engine.analysis.review_effort import prelabelled

    index = pred.id_index()
    coords = np.full(truth.coords.shape, -1.0, np.float64)
    visibility = np.full(truth.visibility.shape, -1, np.int8)
    for r, image_id in enumerate(truth.image_ids):
        j = index.get(str(image_id))
        if j is not None:
            coords[r], visibility[r] = pred.coords[j], pred.visibility[j]
    return prelabelled(truth, coords, visibility).total


@torch.no_grad()
def predict_annotated_boxes(net: torch.nn.Module, preset, root, annotations: Annotations, device: torch.device,
                            batch_size: int) -> Annotations:
    """Keypoint-network predictions on crops at the annotated garment boxes (no detector), with a
    network already on `device` (used as it is). Images with fewer than two annotated keypoints
    have no box and get no prediction row."""
    from engine.model.crops import apply_affine, invert_affine
    from engine.schema import CATEGORY_MASK
    from engine.training.keypoints import predict_crops

    ds = KeypointCropDataset(root, annotations, preset, augment=None)
    coords = []
    for batch in DataLoader(ds, batch_size=batch_size, shuffle=False):
        pts, _ = predict_crops(net, batch["image"], preset, device)
        coords.append(apply_affine(pts.cpu().numpy(), invert_affine(batch["affine"].numpy())).astype(np.float32))
    cats = ds.categories
    mask = CATEGORY_MASK[cats]
    pts = np.concatenate(coords) if coords else np.zeros((0, mask.shape[1], 2), np.float32)
    return Annotations.from_arrays(list(map(str, ds.image_ids)), cats, np.where(mask[..., None], pts, -1.0),
                                   np.where(mask, 1, -1).astype(np.int8))


def _rows_for(pred: Annotations, gt: Annotations) -> Annotations:
    """The prediction rows of `gt`'s images (by id; the same id twice maps to its first row)."""
    index = pred.id_index()
    rows = [index[str(i)] for i in gt.image_ids if str(i) in index]
    return pred.subset(np.asarray(rows, np.int64))


# --- the retrain -----------------------------------------------------------------------------


def retrain(
    model: TwoStageModel,
    root,
    annotations: Annotations,
    hard_ids: Sequence[str],
    config: RetrainConfig = RetrainConfig(),
    holdout_ids: Sequence[str] | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
    on_progress: Callable[[float, float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    reviewed_holdout_ids: Sequence[str] = (),
    reviewed_holdout_note: str = "",
    unreviewed: Annotations | None = None,
) -> RetrainResult:
    """Fine-tune a copy of `model`'s keypoint network on `hard_ids` (+ replay of the other images).

    `annotations` is the snapshot trained on (ids relative to `root`); `holdout_ids` default to
    `choose_holdout(...)`. `reviewed_holdout_ids` (hard / reviewed images, `choose_reviewed_holdout`)
    are never trained on either and measured apart (`NESummary.reviewed_holdout`; the hard-set
    figures are of the images trained on). `unreviewed`: the batch's images nobody reviewed yet
    (ids and categories; their points are not read), for self-training (`config.self_training`) and
    BatchNorm statistics (`config.batchnorm_images` "unreviewed" / "new"); they are predicted once
    with the starting model. `on_step(step, steps, loss)` after each step; `should_stop()` polled
    between steps raises `RetrainCancelled`. Raises `RetrainError` on NaN loss, out of memory or an
    unreadable image.
    """
    config.check()
    started = time.monotonic()
    device = pick_device(config.device)
    preset = model.preset
    progress = on_progress or (lambda done, total, message: None)
    stop = should_stop or (lambda: False)

    ids = np.asarray([str(i) for i in annotations.image_ids])
    hard_set = set(map(str, hard_ids))
    unknown = sorted(hard_set - set(ids.tolist()))
    if unknown:
        raise RetrainError(f"{len(unknown)} hard-set image(s) are not in the annotations, e.g. {unknown[0]}")
    if holdout_ids is None:
        holdout_ids = choose_holdout(ids, sorted(hard_set), config.holdout_fraction, config.max_holdout)
    held = set(map(str, holdout_ids))
    reviewed_held = set(map(str, reviewed_holdout_ids))
    if reviewed_held - hard_set:
        raise RetrainError(f"{len(reviewed_held - hard_set)} reviewed held-out image(s) are not in the hard set, "
                           f"e.g. {sorted(reviewed_held - hard_set)[0]}")
    is_held = np.isin(ids, list(held))
    is_reviewed_held = np.isin(ids, list(reviewed_held))
    is_hard = np.isin(ids, list(hard_set))
    # A held-out image (of either hold-out) is never trained on.
    hard_rows = np.flatnonzero(is_hard & ~is_held & ~is_reviewed_held)
    # The batch's unreviewed images (when they are rows of the annotations too) are no truth to replay.
    is_unreviewed = np.isin(ids, [str(i) for i in unreviewed.image_ids] if unreviewed is not None else [])
    replay_rows = np.flatnonzero(~is_hard & ~is_held & ~is_unreviewed)
    holdout = annotations.subset(np.flatnonzero(is_held))
    hard_all = annotations.subset(np.flatnonzero(is_hard & ~is_reviewed_held))
    reviewed_holdout = annotations.subset(np.flatnonzero(is_reviewed_held & ~is_held))

    progress(0, 1, "measuring the current model")
    # Everything below runs on copies of the networks on the device: the caller's model is never
    # moved (a GPU retrain would otherwise leave it on the GPU) nor changed.
    work = _guarded(lambda: device_copy(model, device), "moving the model to the device")
    before = _guarded(lambda: summarize(work, root, holdout, hard_all, device, config.boxes, 8, stop,
                                              reviewed_holdout),
                      "measuring the current model")

    augment = Augmentation() if config.augment else None
    hard_ds = KeypointCropDataset(root, annotations.subset(hard_rows), preset, augment=augment, seed=config.seed,
                                  cache_images=True)
    replay_ds = KeypointCropDataset(root, annotations.subset(replay_rows), preset, augment=augment,
                                    seed=config.seed + 1)
    bs = config.batch_size or preset.batch_size
    steps = config.steps_for(len(hard_ds))  # more reviewed images, more steps (steps_per_image)
    needs_unreviewed = config.self_training or (config.reestimate_batchnorm
                                                and config.batchnorm_images in ("unreviewed", "new"))
    pseudo_ds = None
    if needs_unreviewed and unreviewed is not None and len(unreviewed):
        progress(0, 1, "predicting the unreviewed images")
        pseudo_ds = _guarded(lambda: pseudo_labels(work, root, unreviewed, config, device, augment, stop),
                             "predicting the unreviewed images")
    use_pseudo = config.self_training and pseudo_ds is not None and len(pseudo_ds) > 0
    batches = mixed_batches(len(hard_ds), len(replay_ds), bs, config.hard_share, steps, config.seed,
                            n_pseudo=len(pseudo_ds) if use_pseudo else 0, pseudo_share=config.pseudo_share)
    if use_pseudo:  # every item then carries a loss weight (collated together)
        g = (0, 1, 2) if config.ohem_per_group else (0, 0, 0)
        parts = [_Grouped(hard_ds, g[0], 1.0), _Grouped(replay_ds, g[1], 1.0),
                 _Grouped(pseudo_ds, g[2], config.pseudo_weight)]
    else:
        parts = [_Grouped(hard_ds, 0), _Grouped(replay_ds, 1)] if config.ohem_per_group else [hard_ds, replay_ds]
    loader = DataLoader(ConcatDataset(parts), batch_sampler=batches.tolist(), num_workers=0)

    net = _guarded(lambda: copy.deepcopy(work.keypoint_net), "copying the keypoint network")
    teacher = work.keypoint_net if config.distill_replay else None  # the starting network, never trained
    if config.train_layers == "after_encoder":
        for p in net.encoder.parameters():
            p.requires_grad_(False)
    trained = _FrozenBatchNorm(net) if config.freeze_batchnorm else net
    optimizer = make_optimizer(net, config.lr, preset.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if needs_grad_scaler(device) else None
    total_steps = steps + config.detector_steps
    losses: list[float] = []
    batch_iter = iter(loader)
    for step in range(steps):
        if stop():
            raise RetrainCancelled()
        at = f"step {step + 1} of {steps}"
        batch = _guarded(lambda: device_batch(next(batch_iter), preset, device), f"loading the training images ({at})")
        if teacher is not None:
            replay = torch.from_numpy((batches[step] >= len(hard_ds)) & (batches[step] < len(hard_ds) + len(replay_ds)))
            batch = _guarded(lambda: distill_targets(batch, teacher, replay, device),
                             f"distilling the replay targets ({at})")
        set_lr(optimizer, config.lr * retrain_lr_factor(step, steps, config.warmup_share))
        loss = _guarded(lambda: train_step(trained, optimizer, batch, preset, device, scaler, config.ohem_fraction),
                        f"keypoint-network training ({at})")
        if not math.isfinite(loss):
            raise RetrainError(f"the loss became {loss} at step {step + 1} of {steps}; "
                               "try a lower learning rate (the model was left unchanged)")
        losses.append(loss)
        if on_step is not None:
            on_step(step + 1, steps, loss)
        progress(step + 1, total_steps, f"keypoint network: step {step + 1}/{steps}, loss {loss:.4f}")
    if config.keep_share > 0:
        mix_weights(net, work.keypoint_net, config.keep_share)
    if config.reestimate_batchnorm:
        progress(steps, total_steps, "keypoint network: BatchNorm statistics of the images trained on")
        bn_ds = {"hard": hard_ds, "mixed": ConcatDataset([hard_ds, replay_ds]),
                 "unreviewed": pseudo_ds if pseudo_ds is not None else hard_ds,
                 "new": ConcatDataset([hard_ds, pseudo_ds]) if pseudo_ds is not None else hard_ds,
                 }[config.batchnorm_images]
        _guarded(lambda: reestimate_batchnorm(net, bn_ds, device, bs, config.batchnorm_batches, config.seed),
                 "re-estimating the BatchNorm statistics")
    net.eval()

    detector, detector_losses = work.detector, []
    if config.detector_steps:
        hard_det, replay_det = _guarded(lambda: _detector_samples(root, annotations, model, hard_rows, replay_rows,
                                                                  config), "loading the detector's images")
        detector, detector_losses = fine_tune_detector(
            work.detector, hard_det, replay_det, config, device, should_stop=stop,
            on_step=lambda i, n, loss: progress(steps + i, total_steps,
                                                f"detector: step {i}/{n}, loss {loss:.4f}"))

    # Each loss above was computed before its update: the last update can still have broken the
    # network (NaN or inf weights, or outputs that overflow). Check the result before it is used.
    _check_finite(net, "keypoint network", config.lr)
    if steps:
        final = _guarded(lambda: _loss_without_update(net, batch, preset, device), "checking the retrained network")
        if not math.isfinite(final):
            raise RetrainError(f"the retrained keypoint network's loss is {final} at learning rate {config.lr:g}; "
                               "try a lower learning rate (nothing was written)")
    _check_finite(detector, "detector", config.detector_lr)
    new_model = TwoStageModel(preset=preset, detector=detector, detector_config=model.detector_config,
                              keypoint_net=net, metadata=dict(model.metadata), visibility=work.visibility)
    progress(total_steps, total_steps, "measuring the retrained model")
    after = _guarded(lambda: summarize(new_model, root, holdout, hard_all, device, config.boxes, 8, stop,
                                             reviewed_holdout),
                     "measuring the retrained model")
    return RetrainResult(new_model, losses, detector_losses, before, after, sorted(held), [str(i) for i in ids[hard_rows]],
                         len(replay_ds), time.monotonic() - started,
                         reviewed_holdout_ids=sorted(map(str, reviewed_holdout.image_ids)),
                         reviewed_holdout_note=reviewed_holdout_note)


@torch.no_grad()
def mix_weights(net: torch.nn.Module, start: torch.nn.Module, keep: float) -> None:
    """Mix `start`'s floating-point weights and buffers into `net`'s, in place:
    (1 - keep) * net + keep * start (the two share one architecture)."""
    start_state = start.state_dict()
    for key, value in net.state_dict().items():
        if value.is_floating_point():
            value.mul_(1 - keep).add_(start_state[key].to(value.dtype), alpha=keep)


class _PseudoLabelled(KeypointCropDataset):
    """Crops of unreviewed images at the boxes of the starting model's predicted points, with only
    the sure points as targets (the others are not trained on)."""

    def __init__(self, root, predicted: Annotations, sure: np.ndarray, preset, augment, seed: int):
        super().__init__(root, predicted, preset, augment=augment, seed=seed, cache_images=True)
        self.visibility = np.where(sure[self.rows], self.visibility, -1).astype(np.int8)


def pseudo_labels(model: TwoStageModel, root, unreviewed: Annotations, config: RetrainConfig, device: torch.device,
                  augment: Augmentation | None, should_stop: Callable[[], bool] | None = None) -> _PseudoLabelled:
    """The unreviewed images as training crops with pseudo-labels: the model's predictions (the
    whole pipeline, the categories given) whose points are sure (`config.pseudo_min_confidence`,
    `pseudo_max_flip`, `pseudo_max_stacks`: `engine.model.uncertainty`'s signals). The crops sit at
    the box of every predicted point, sure or not. The model's networks must be on `device`."""
    from engine.model.uncertainty import SIGNALS, SignalPipeline
    from engine.schema import CATEGORY_MASK

    pipeline = SignalPipeline(model, device=device, batch_size=8)
    pred, scores, errors = pipeline.predict(root, unreviewed, should_stop=should_stop)
    if should_stop is not None and should_stop():
        raise RetrainCancelled()
    index = pred.id_index()
    rows = [index[str(i)] for i in unreviewed.image_ids if str(i) in index and str(i) in pipeline.signals]
    pred = pred.subset(np.asarray(rows, np.int64))
    scores = np.asarray(scores, np.float64)[rows] if len(rows) else np.zeros((0, 24))
    signals = (np.stack([pipeline.signals[str(i)] for i in pred.image_ids]) if len(rows)
               else np.zeros((0, 24, len(SIGNALS)), np.float32))
    flip, stacks = signals[..., SIGNALS.index("flip")], signals[..., SIGNALS.index("stacks")]
    predicted = (pred.visibility >= 0) & CATEGORY_MASK[pred.categories.astype(np.int64)]
    sure = (predicted & (scores >= config.pseudo_min_confidence) & (flip <= config.pseudo_max_flip)
            & (stacks <= config.pseudo_max_stacks))
    # Every predicted point marks the crop's box; an occluded prediction (v = 0) is a point too.
    boxed = pred.copy()
    boxed.visibility = np.where(predicted, 1, -1).astype(np.int8)
    return _PseudoLabelled(root, boxed, sure, model.preset, augment, config.seed + 2)


@torch.no_grad()
def reestimate_batchnorm(net: torch.nn.Module, dataset: torch.utils.data.Dataset, device: torch.device,
                         batch_size: int, max_batches: int, seed: int = 0) -> int:
    """Estimate every BatchNorm layer's running mean and variance again, as plain averages over
    up to `max_batches` batches of `dataset`'s crops (a seeded shuffle, augmented as in training)
    -> the number of crops seen. The weights are not touched; `net` is left in eval mode."""
    layers = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not layers or not len(dataset):
        return 0
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # None: a cumulative average over every batch, not an exponential one
    net.train()
    seen = 0
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    for i, batch in enumerate(DataLoader(torch.utils.data.Subset(dataset, order), batch_size=batch_size)):
        if i >= max_batches:
            break
        with autocast_for(device):
            net(device_images(batch, device))
        seen += len(batch["image"])
    for m, momentum in zip(layers, momenta):
        m.momentum = momentum
    net.eval()
    return seen


def _loss_without_update(net: torch.nn.Module, batch: dict[str, torch.Tensor], preset, device: torch.device) -> float:
    """The plain loss of `net` as it is now on one training batch (eval mode, no gradient)."""
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    with torch.no_grad(), autocast_for(device):
        outputs = net.eval()(prepare_input(batch["image"], device))
    return float(batch_loss(outputs, batch, preset)[1])


def _check_finite(module: torch.nn.Module, name: str, lr: float) -> None:
    """RetrainError when a weight or buffer of `module` is NaN or infinite."""
    for key, tensor in {**dict(module.named_parameters()), **dict(module.named_buffers())}.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise RetrainError(f"the {name}'s weights became non-finite ({key}) at learning rate {lr:g}; "
                               "try a lower learning rate (nothing was written)")


def fine_tune_detector(detector: torch.nn.Module, hard: DetectorSamples, replay: DetectorSamples | None,
                       config: RetrainConfig, device: torch.device,
                       on_step: Callable[[int, int, float], None] | None = None,
                       should_stop: Callable[[], bool] | None = None) -> tuple[torch.nn.Module, list[float]]:
    """Fine-tune a copy of `detector` for `config.detector_steps` steps on batches mixing the hard
    set (`config.hard_share` of each) with the replay, as the keypoint network's are
    -> (detector, losses). The detector passed in is never modified."""
    steps, bs = config.detector_steps, config.detector_batch_size
    samples = hard + replay if replay is not None else hard
    batches = mixed_batches(len(hard), len(samples) - len(hard), bs, config.hard_share, steps, config.seed)
    det = _guarded(lambda: copy.deepcopy(detector).to(device), "detector fine-tuning (copying it)")
    trained = _FrozenBatchNorm(det) if config.freeze_batchnorm else det
    params = [p for p in det.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.detector_lr, weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cuda") if needs_grad_scaler(device) else None
    rng = np.random.default_rng(config.seed)
    losses: list[float] = []
    # torchvision samples the RPN's and the box head's training proposals from torch's global
    # generator: seeding it, in a fork that leaves the caller's stream alone, makes the same
    # config give the same detector whatever ran before.
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(config.seed)
        for step in range(steps):
            if should_stop is not None and should_stop():
                raise RetrainCancelled()
            set_lr(optimizer, config.detector_lr * retrain_lr_factor(step, steps, config.warmup_share))
            images, targets = samples.augmented_batch(batches[step], rng)
            try:
                loss = _guarded(lambda: detector_step(trained, optimizer, images, targets, device, scaler, step + 1),
                                f"detector fine-tuning (step {step + 1} of {steps})")
            except FloatingPointError as e:
                raise RetrainError(f"{e} of {steps} (the model was left unchanged)") from None
            losses.append(loss)
            if on_step is not None:
                on_step(step + 1, steps, loss)
    return det.eval(), losses


def _detector_samples(root, annotations: Annotations, model: TwoStageModel, hard_rows: np.ndarray,
                      replay_rows: np.ndarray, config: RetrainConfig) -> tuple[DetectorSamples, DetectorSamples | None]:
    """Detector samples of the hard rows, and of as many replay rows (a seeded random choice) as
    the detector's steps can use: each image is decoded and kept in memory."""
    k_replay = config.detector_batch_size - _hard_per_batch(config.detector_batch_size, config.hard_share)
    n_replay = min(len(replay_rows), config.detector_steps * k_replay)
    chosen = np.sort(np.random.default_rng(config.seed).permutation(replay_rows)[:n_replay])
    hard = detector_samples(root, annotations.subset(hard_rows), model.detector_config, source="hard set",
                            skip_unreadable=False)
    replay = (detector_samples(root, annotations.subset(chosen), model.detector_config, source="replay",
                               skip_unreadable=False) if n_replay else None)
    return hard, replay


@torch.no_grad()
def distill_targets(batch: dict[str, torch.Tensor], teacher: torch.nn.Module, replay: torch.Tensor,
                    device: torch.device) -> dict[str, torch.Tensor]:
    """The batch with the `replay` rows' heatmap and offset targets replaced by the teacher's
    outputs on the same (augmented) crops: soft heatmaps, and its offsets."""
    if not bool(replay.any()):
        return batch
    with autocast_for(device):
        out = teacher(prepare_input(batch["image"][replay], device))[-1].float()
    k = batch["heat"].shape[1]
    heat, offsets = batch["heat"].to(device, copy=True), batch["offsets"].to(device, copy=True)
    rows = replay.to(device)
    heat[rows] = torch.sigmoid(out[:, :k])
    offsets[rows] = out[:, k:].reshape(offsets[rows].shape)
    return {**batch, "heat": heat, "offsets": offsets}


def save_retrained(result: RetrainResult, path, parent: str | None = None) -> Any:
    """Write the retrained model as a package (full precision) with the before/after figures."""
    from engine.model.package import save_package

    m = result.model
    meta = {k: v for k, v in m.metadata.items() if k not in ("date", "retrain")}
    meta.update({"retrain": {**result.report(), "parent": parent}, "val_ne": result.after.overall})
    return save_package(path, m, meta)


def holdout_for(saved: Sequence[str] | None, annotations: Annotations, hard_ids: Sequence[str],
                config: RetrainConfig) -> tuple[list[str], bool]:
    """(the held-out ids, whether they are a new choice): the saved choice's ids still in the
    annotations, else a new deterministic one (`choose_holdout`)."""
    ids = [str(i) for i in annotations.image_ids]
    if saved is None:
        return choose_holdout(ids, hard_ids, config.holdout_fraction, config.max_holdout), True
    present = set(ids)
    return [str(i) for i in saved if str(i) in present], False


def retrain_and_save(model: TwoStageModel, root, annotations: Annotations, hard_ids: Sequence[str],
                     config: RetrainConfig, saved_holdout: Sequence[str] | None,
                     save: Callable[[RetrainResult], Any],
                     keep_holdout: Callable[[list[str]], None] | None = None,
                     on_step: Callable[[int, int, float], None] | None = None,
                     on_progress: Callable[[float, float, str], None] | None = None,
                     should_stop: Callable[[], bool] | None = None,
                     hold_out_reviewed: bool | None = None,
                     unreviewed: Annotations | None = None) -> tuple[RetrainResult, Any]:
    """The retrain workflow of `fkp retrain` and the studio's retrain job: the hold-out
    (`holdout_for`), `retrain`, then `save(result)` (what it returns comes back); a new hold-out
    choice is kept (`keep_holdout`) only after the save, so a failed or cancelled run fixes nothing.
    `hold_out_reviewed` (None: in adapt mode) also holds out a share of the hard / reviewed images
    (`choose_reviewed_holdout` with the config's seed; chosen again each run), measured before and after.
    `unreviewed`: the batch's images nobody reviewed yet, as in `retrain`."""
    holdout, new_holdout = holdout_for(saved_holdout, annotations, hard_ids, config)
    reviewed, note = [], ""
    if config.mode == "adapt" if hold_out_reviewed is None else hold_out_reviewed:
        held = set(holdout)
        reviewed, note = choose_reviewed_holdout([i for i in map(str, hard_ids) if i not in held], config.seed)
    result = retrain(model, root, annotations, hard_ids, config, holdout_ids=holdout, on_step=on_step,
                     on_progress=on_progress, should_stop=should_stop, reviewed_holdout_ids=reviewed,
                     reviewed_holdout_note=note, unreviewed=unreviewed)
    written = save(result)
    if new_holdout and keep_holdout is not None:  # later retrains never train on these images
        keep_holdout(holdout)
    return result, written


class _Grouped(torch.utils.data.Dataset):
    """A dataset whose items carry a "group" number (hard set 0, replay 1, pseudo-labelled 2) for
    per-group OHEM, and a loss "weight" when given (then every part of the batch needs one)."""

    def __init__(self, base: KeypointCropDataset, group: int, weight: float | None = None):
        self.base, self.group = base, torch.tensor(group)
        self.weight = None if weight is None else torch.tensor(float(weight))

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {**self.base[i], "group": self.group}
        if self.weight is not None:
            item["weight"] = self.weight
        return item


class _FrozenBatchNorm(torch.nn.Module):
    """The network (keypoint net or detector) with its BatchNorm layers kept in eval mode while it trains.

    Fine-tuning on a few hundred hard-heavy batches must not move the normalization learned on
    the whole training set: BatchNorm then normalizes with the stored statistics in training
    exactly as at inference, so what the weights learn is what the model does on every image.
    (The detector, fine-tuned in batches of a few images with its BatchNorm training, lost box
    quality on the very hard set it was tuned on in half the seeds; frozen, it gains in all.)"""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def train(self, mode: bool = True) -> _FrozenBatchNorm:
        super().train(mode)
        for m in self.net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def forward(self, *args, **kwargs):
        return self.net(*args, **kwargs)


def _guarded(fn: Callable[[], Any], phase: str = "the retrain") -> Any:
    """Run `fn`, turning an unreadable image or running out of memory during `phase` (a few words:
    "distilling the replay targets (step 3 of 200)") into a RetrainError with a one-line message."""
    try:
        return fn()
    except ImageError as e:
        raise RetrainError(f"unreadable image: {e}") from None
    except (MemoryError, RuntimeError) as e:  # torch.OutOfMemoryError is a RuntimeError
        message = out_of_memory_message(e, phase)
        if message is None:
            raise
        raise RetrainError(message) from None

