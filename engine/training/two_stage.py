"""Training the whole two-stage model from a data set root: the detector stage, the keypoint
stage (or checkpoints of either, reused), then one model package scored by the whole pipeline
on the validation split. `fkp train` and `fkp train-detector` are these functions with options.
"""

from __future__ import annotations

import dataclasses
import json
import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.analysis.ne import normalized_errors, pooled_ne
from engine.io.annotations import load_annotations
from engine.model.checkpoints import load_keypoint_net
from engine.model.detector import DetectorConfig, load_detector
from engine.model.package import TwoStageModel, save_model
from engine.model.pipeline import Pipeline
from engine.model.presets import Preset
from engine.training.detector import DetectorSamples, DetectorTraining, load_detector_samples, train_detector
from engine.training.keypoints import train_keypoints


@dataclass(frozen=True)
class DetectorStage:
    """How the detector stage trains (`fkp train-detector`'s options)."""

    split: str = "train"
    val_split: str = "val"            # when absent, 10 % of the training images are held out
    steps: int = 3000
    batch_size: int = 8
    lr: float = 1e-3
    eval_every: int = 250
    backbone_weights: str | None = None  # local ImageNet weights of the backbone
    init: str | None = None           # continue from this detector checkpoint
    size: int | None = None           # input size (shorter side); None: the preset's
    limit: int | None = None          # at most this many training images
    max_images: int | None = 4000     # the samples are held in memory, scaled
    seed: int = 0
    device: str | None = None
    sync_bn: bool = False             # SyncBatchNorm across the GPUs of a torchrun launch


@dataclass(frozen=True)
class KeypointStage:
    """How the keypoint stage trains, and what the package predicts with by default."""

    epochs: int | None = None          # None: the preset's
    batch_size: int | None = None
    keypoints: str | None = None       # reuse this keypoint checkpoint (and its preset)
    detector: str | None = None        # reuse this detector checkpoint
    half: bool = False                 # store the weights in float16
    workers: int = 0                   # data loader worker processes of the keypoint net
    sync_bn: bool = False              # SyncBatchNorm across the GPUs of a torchrun launch
    # Test-time defaults of the package (None: the preset's); they change how it predicts, not its weights.
    flip_tta: bool | None = None
    crops: int | None = None
    rotation_search: bool | None = None
    box_search: bool | None = None


def detector_config(preset: Preset, size: int | None = None) -> DetectorConfig:
    """The detector of `preset`, at input size `size` (shorter side) when given."""
    config = DetectorConfig.from_preset(preset)
    if size:
        config = dataclasses.replace(config, min_size=size, max_size=max(size, round(size * 1.5)))
    return config


def detector_data(root: str | os.PathLike, config: DetectorConfig,
                  stage: DetectorStage) -> tuple[DetectorSamples, DetectorSamples]:
    """Training and held-out detector samples of a data set root: in a process group of
    several ranks, this rank's shares (each holds only its own images in memory)."""
    from engine.model.distributed import group_ranks

    shard = group_ranks()
    limits = [n for n in (stage.limit, stage.max_images) if n]
    train = load_detector_samples(root, stage.split, config, limit=min(limits) if limits else None, shard=shard)
    if (Path(root) / "Annotations" / f"{stage.val_split}.csv").exists():
        return train, load_detector_samples(root, stage.val_split, config, limit=100, shard=shard)
    return train.hold_out(0.1, seed=stage.seed)


def train_detector_stage(root: str | os.PathLike, preset: Preset, out: str | os.PathLike, stage: DetectorStage,
                         on_data: Callable[[DetectorConfig, int, int], None] | None = None,
                         on_progress: Callable[[int, int, dict[str, float]], None] | None = None,
                         ) -> tuple[Any, dict[str, float], DetectorConfig]:
    """Train the detector of `preset` on `root` into the checkpoint `out` -> (detector, its
    held-out box quality, its config). `on_data(config, n_train, n_val)` once the samples are read.

    Under `torchrun` every rank trains on its share of the images on its own device (DDP, see
    `train_detector`); rank 0 writes `out`; every rank returns once it is written."""
    from engine.model.distributed import all_sum, join_process_group

    ranks = join_process_group(stage.device)
    config = detector_config(preset, stage.size)
    train, val = detector_data(root, config, stage)
    n_train, n_val = (int(n) for n in all_sum([len(train), len(val)]))
    if on_data is not None and ranks.main:
        on_data(config, n_train, n_val)
    schedule = DetectorTraining(steps=stage.steps, batch_size=stage.batch_size, lr=stage.lr,
                                warmup=min(200, max(1, stage.steps // 10)), eval_every=stage.eval_every,
                                seed=stage.seed)
    meta = {"data": str(root), "split": stage.split, "images": n_train}
    model, quality = train_detector(train, config, schedule, out=out, val=val,
                                    backbone_weights=stage.backbone_weights, device=ranks.device, metadata=meta,
                                    init=stage.init, on_progress=on_progress, sync_bn=stage.sync_bn)
    return model, quality, config


def two_stage_val_ne(model: TwoStageModel, root: str | os.PathLike, split: str = "train", val_split: str = "val",
                     device: str | None = None, limit: int = 200) -> tuple[float, int]:
    """NE of the whole pipeline on the first `limit` images of the validation split (or of the
    last 5 % of the training split) -> (NE, images). In a process group the ranks share the
    images (each on its own device) and the error sums are all-reduced."""
    from engine.model.distributed import all_sum, group_ranks, shard_bounds

    val_path = Path(root) / "Annotations" / f"{val_split}.csv"
    if val_path.exists():
        ann = load_annotations(val_path)
    else:
        ann = load_annotations(Path(root) / "Annotations" / f"{split}.csv")
        ann = ann.subset(np.arange(len(ann))[-max(1, len(ann) // 20):])
    ann = ann.subset(np.arange(min(len(ann), limit)))
    rank, world = group_ranks()
    bounds = shard_bounds(len(ann), world)
    share = ann.subset(np.arange(bounds[rank], bounds[rank + 1]))
    pred, _, _ = Pipeline(model, device=device).predict(root, share)
    errors = normalized_errors(share.coords, share.visibility, share.categories, pred.coords, pred.visibility).errors
    scored = ~np.isnan(errors)
    total, points = all_sum([np.where(scored, errors, 0.0).sum(), scored.sum()])
    # pooled_ne of all the ranks' errors: their sum over their count.
    return (float(total / points) if points else pooled_ne(errors[:0])), len(ann)


def preset_with_overrides(preset: Preset, overrides_json: str | os.PathLike | None) -> Preset:
    """`preset` with the fields of a JSON file (`"net": {...}` for the network) replaced."""
    if not overrides_json:
        return preset
    return preset.with_(**json.loads(Path(overrides_json).read_text(encoding="utf-8")))


def train_two_stage(root: str | os.PathLike, preset: Preset, out: str | os.PathLike, work: str | os.PathLike,
                    detector_stage: DetectorStage = DetectorStage(), keypoint_stage: KeypointStage = KeypointStage(),
                    on_detector_data: Callable[[DetectorConfig, int, int], None] | None = None,
                    on_detector_progress: Callable[[int, int, dict[str, float]], None] | None = None,
                    ) -> tuple[Path, float, int]:
    """Train (or reuse) both stages on `root` and write one model package to `out`, the stage
    checkpoints to `work` -> (the package file, its two-stage validation NE, images scored).

    Under `torchrun` both stages train with DDP on every rank's device (the rule of
    `engine.model.distributed`), the validation images are shared by the ranks, rank 0 alone
    writes the checkpoints and the package, and a barrier follows each write that the other
    ranks read; every rank returns the same figures."""
    from engine.model.distributed import barrier, join_process_group

    train_csv = Path(root) / "Annotations" / f"{detector_stage.split}.csv"
    if not train_csv.is_file():  # before anything is created or trained
        raise FileNotFoundError(errno.ENOENT, "training annotation file not found", str(train_csv))
    d, k = detector_stage, keypoint_stage
    ranks = join_process_group(d.device)
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    if k.keypoints:
        net, preset, kp_ckpt = load_keypoint_net(k.keypoints)
    else:
        kp_path = work / "keypoints.pt"
        train_keypoints(root, preset, kp_path, epochs=k.epochs, train_split=d.split, val_split=d.val_split,
                        device=d.device, batch_size=k.batch_size, max_train_images=d.limit, seed=d.seed,
                        workers=k.workers, sync_bn=k.sync_bn)
        best = kp_path.with_name(kp_path.stem + ".best" + kp_path.suffix)
        net, preset, kp_ckpt = load_keypoint_net(best if best.exists() else kp_path)
    if k.detector:
        detector, det_config, det_meta = load_detector(k.detector)
    else:
        detector, _, det_config = train_detector_stage(root, preset, work / "detector.pt", d, on_detector_data,
                                                       on_detector_progress)
        _, _, det_meta = load_detector(work / "detector.pt")
    test_time = {"flip_tta": k.flip_tta, "num_crops": k.crops, "rotation_search": k.rotation_search,
                 "box_search": k.box_search}
    preset = preset.with_(**{name: v for name, v in test_time.items() if v is not None})
    model = TwoStageModel(preset, detector, det_config, net)
    val_ne, val_images = two_stage_val_ne(model, root, d.split, d.val_split, ranks.device)
    meta = {
        "data": str(Path(root).resolve()), "split": d.split, "preset": preset.name,
        "val_ne": val_ne, "val_images": val_images,
        "keypoint_val_ne": (kp_ckpt.get("metrics") or {}).get("val_ne"),
        "detector_val": det_meta.get("val", {}),
    }
    written = save_model(out, preset, detector, det_config, net, meta, half=k.half) if ranks.main else None
    barrier()  # the package is complete before any rank returns (and a caller reads it)
    if written is None:
        from engine.io.model_files import package_file

        written = package_file(out)
    return Path(written), val_ne, val_images

