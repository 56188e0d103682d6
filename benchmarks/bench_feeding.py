"""CPU cost of feeding the keypoint net: per `fast` training crop and per predicted image, now
and before the device-side batch work (issue 17, item A), measured in the same run.

Training: the previous `KeypointCropDataset` (colour jitter, normalization and targets per crop
on the CPU) is loaded from git (`--baseline`, the last commit with the per-sample path) and
timed against the current one over the same crops: decode + uint8 warp + collate is the CPU
part now; `device_batch` (jitter, normalization, targets for the whole batch) is timed apart,
run here on the CPU: on a GPU it is a few kernels per batch, off the data loader's CPU.
Prediction: the previous `Pipeline` (from git) against the current one, same model, same images.

    python benchmarks/bench_feeding.py [--crops 96] [--images 16] [--threads 1]

CPU time is `time.process_time` (all threads of the process), torch and OpenCV on `--threads`.
Goals: <= 3.5 ms CPU per `fast` training crop; `fast` prediction images/s not lower than before.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import default_collate

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "f60378f09167e113dc5d259dd5c702f2644c1768"


def load_from_git(commit: str, path: str, name: str):
    """Module `path` as it was at `commit`, imported under `name`."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{path}"], check=True,
                            capture_output=True, text=True).stdout
    tmp = Path(tempfile.mkdtemp()) / f"{name}.py"
    tmp.write_text(source)
    spec = importlib.util.spec_from_file_location(name, tmp)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def cpu_time(fn) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of fn()."""
    c, w = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c, time.perf_counter() - w


def training_crops(root: Path, preset, n: int, batch: int, old_module) -> dict[str, float]:
    from engine.training.dataset import Augmentation, KeypointCropDataset, device_batch

    csv = root / "Annotations" / "train.csv"
    new = KeypointCropDataset(root, csv, preset, augment=Augmentation(), seed=0)
    old = old_module.KeypointCropDataset(root, csv, preset, augment=old_module.Augmentation(), seed=0)
    idx = [i % len(new) for i in range(n)]
    chunks = [idx[i:i + batch] for i in range(0, n, batch)]

    def run(ds, out):
        for chunk in chunks:
            out.append(default_collate([ds[i] for i in chunk]))

    for ds in (old, new):           # warm-up: first decodes, allocator, imports
        default_collate([ds[i] for i in idx[:4]])
    old_batches, new_batches = [], []
    old_cpu, old_wall = cpu_time(lambda: run(old, old_batches))
    new_cpu, new_wall = cpu_time(lambda: run(new, new_batches))
    dev = torch.device("cpu")
    device_batch(new_batches[0], preset, dev)
    dev_cpu, _ = cpu_time(lambda: [device_batch(b, preset, dev) for b in new_batches])
    return {"crops": n, "batch": batch,
            "before_ms_per_crop": 1000 * old_cpu / n, "after_ms_per_crop": 1000 * new_cpu / n,
            "after_device_part_on_cpu_ms_per_crop": 1000 * dev_cpu / n,
            "before_crops_per_s_wall": n / old_wall, "after_crops_per_s_wall": n / new_wall}


def prediction(root: Path, preset_name: str, n: int, batch: int, old_module, rounds: int) -> dict[str, float]:
    from engine.io.annotations import load_annotations
    from engine.model.detector import DetectorConfig, build_detector
    from engine.model.hourglass import KeypointNet
    from engine.model.package import TwoStageModel
    from engine.model.pipeline import Pipeline
    from engine.model.presets import get_preset

    preset = get_preset(preset_name)
    torch.manual_seed(0)
    config = DetectorConfig.from_preset(preset)
    model = TwoStageModel(preset, build_detector(config).eval(), config, KeypointNet(preset.net).eval())
    ann = load_annotations(root / "Annotations" / "train.csv")
    ids, cats = list(ann.image_ids)[:n], [int(c) for c in ann.categories[:n]]
    pipes = {"before": old_module.Pipeline(model, torch.device("cpu"), batch_size=batch),
             "after": Pipeline(model, torch.device("cpu"), batch_size=batch)}
    for pipe in pipes.values():
        list(pipe.iter_predict(root, ids[:2], cats[:2]))   # warm-up
    # Alternating rounds, the best of each: the machine is shared, other load only adds time.
    best = {name: (np.inf, np.inf) for name in pipes}
    coords = {}
    for r in range(rounds):
        # ABBA order: neither pipeline always runs right after the other.
        for name in (("before", "after") if r % 2 == 0 else ("after", "before")):
            pipe = pipes[name]
            out = []
            c, w = cpu_time(lambda: out.extend(pipe.iter_predict(root, ids, cats)))
            best[name] = (min(best[name][0], c), min(best[name][1], w))
            coords[name] = np.concatenate([b.coords for b in out])
    (bc, bw), (ac, aw) = best["before"], best["after"]
    valid = (coords["before"] >= 0) & (coords["after"] >= 0)
    diff = np.abs(coords["before"] - coords["after"])[valid]
    return {"preset": preset_name, "images": n, "batch": batch, "rounds": rounds,
            "before_ms_cpu_per_image": 1000 * bc / n, "after_ms_cpu_per_image": 1000 * ac / n,
            "before_images_per_s_wall": n / bw, "after_images_per_s_wall": n / aw,
            "coordinates_identical_share": float((diff < 1e-3).mean()) if len(diff) else 1.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=96)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--predict-batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2, help="alternating prediction rounds (best of each kept)")
    ap.add_argument("--baseline", default=BASELINE, help="commit with the per-sample CPU path")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)

    from engine.model.presets import get_preset
    from engine.synth import generate_dataset

    old_dataset = load_from_git(args.baseline, "engine/training/dataset.py", "previous_dataset")
    old_pipeline = load_from_git(args.baseline, "engine/model/pipeline.py", "previous_pipeline")
    preset = get_preset("fast")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_dataset(root, max(args.images, 24), seed=0, split="train", size=512)
        train = training_crops(root, preset, args.crops, args.batch, old_dataset)
        print(f"fast training crop, CPU ms (decode + warp + ... + collate): before {train['before_ms_per_crop']:.2f}, "
              f"after {train['after_ms_per_crop']:.2f} (x{train['before_ms_per_crop'] / train['after_ms_per_crop']:.2f}); "
              f"the device part (jitter, normalize, targets per batch) run on this CPU: "
              f"{train['after_device_part_on_cpu_ms_per_crop']:.2f} ms per crop")
        pred = prediction(root, "fast", args.images, args.predict_batch, old_pipeline, args.rounds)
        print(f"fast prediction, CPU ms per image: before {pred['before_ms_cpu_per_image']:.1f}, "
              f"after {pred['after_ms_cpu_per_image']:.1f} "
              f"(images/s wall {pred['before_images_per_s_wall']:.2f} -> {pred['after_images_per_s_wall']:.2f}); "
              f"share of keypoints identical to before {pred['coordinates_identical_share']:.3f}")
    goals = {"crop_cpu_ms_at_most_3_5": train["after_ms_per_crop"] <= 3.5,
             "prediction_not_slower": pred["after_ms_cpu_per_image"] <= pred["before_ms_cpu_per_image"] * 1.03}
    print(f"goals: {goals}")
    print(json.dumps({"threads": args.threads, "baseline": args.baseline, "training": train, "prediction": pred,
                      "goals": goals}))


if __name__ == "__main__":
    main()
