"""Throughput of the full two-stage pipeline per preset vs torchvision's keypoint R-CNN.

Goal (issue 5): the `fast` pipeline at least 2x the images/s of `keypointrcnn_resnet50_fpn`
on a 2-core CPU. Both run on the same synthetic 512 x 512 images (the size of FashionAI
photos), in eval mode, with untrained weights (speed does not depend on the weights: the
detector always keeps its top boxes, keypoint R-CNN its top 100 proposals' keypoints).
The keypoint R-CNN is built exactly as a user would get it off the shelf, only without the
download: `weights=None, weights_backbone=None, num_keypoints=24`, default input scaling.

    python benchmarks/bench_inference.py [--images 4] [--threads 2] [--presets lite,fast,accurate]

Prints a line per measurement and, last, one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def _images(n: int, size: int, seed: int) -> tuple[list[np.ndarray], list[int]]:
    from engine.synth import render_sample

    rng = np.random.default_rng(seed)
    samples = [render_sample(rng, i % 5, size) for i in range(n)]
    return [s.image for s in samples], [s.category for s in samples]


def _pipeline(preset_name: str, device: torch.device):
    from engine.model.detector import DetectorConfig, build_detector
    from engine.model.hourglass import KeypointNet
    from engine.model.package import TwoStageModel
    from engine.model.pipeline import Pipeline
    from engine.model.presets import get_preset

    preset = get_preset(preset_name)
    config = DetectorConfig.from_preset(preset)
    model = TwoStageModel(preset, build_detector(config).eval(), config, KeypointNet(preset.net).eval())
    return Pipeline(model, device=device, batch_size=1)


def _time(fn, n: int, device: torch.device) -> float:
    """Images per second of `fn(i)` over images 0..n-1 (after one warm-up call)."""
    fn(0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def bench(device: torch.device, images: list[np.ndarray], cats: list[int], presets: list[str]) -> dict[str, float]:
    from torchvision.models.detection import keypointrcnn_resnet50_fpn

    from engine.model.device import autocast_for

    figures: dict[str, float] = {}
    for name in presets:
        pipe = _pipeline(name, device)
        rate = _time(lambda i: pipe.predict_images([images[i]], [cats[i]]), len(images), device)
        figures[f"{name}_images_per_s"] = rate
        print(f"{device.type}: {name:<9} pipeline  {rate:7.3f} images/s  "
              f"(flip TTA {pipe.flip_tta}, crops {pipe.num_crops})", flush=True)

    krcnn = keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_keypoints=24).eval().to(device)
    tensors = [torch.from_numpy(im).permute(2, 0, 1).float().div(255).to(device) for im in images]

    @torch.no_grad()
    def run_krcnn(i: int) -> None:
        with autocast_for(device):
            krcnn([tensors[i]])

    rate = _time(run_krcnn, len(images), device)
    figures["keypointrcnn_images_per_s"] = rate
    print(f"{device.type}: keypointrcnn_resnet50_fpn {rate:7.3f} images/s (baseline)", flush=True)
    for name in presets:
        ratio = figures[f"{name}_images_per_s"] / rate
        figures[f"{name}_vs_keypointrcnn"] = ratio
        print(f"{device.type}: {name} / keypoint R-CNN = {ratio:.2f}x", flush=True)
    return {f"{device.type}_{k}": v for k, v in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4, help="images timed per model (default 4)")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--presets", default="lite,fast,accurate")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    images, cats = _images(args.images, args.size, args.seed)
    presets = [p for p in args.presets.split(",") if p]
    figures = {"images": args.images, "size": args.size, "threads": args.threads}
    figures.update(bench(torch.device("cpu"), images, cats, presets))
    if torch.cuda.is_available():
        figures.update(bench(torch.device("cuda"), images, cats, presets))
    goal = figures.get("cpu_fast_vs_keypointrcnn")
    if goal is not None:
        print(f"goal fast >= 2x keypoint R-CNN on the CPU: {'met' if goal >= 2 else 'NOT met'} ({goal:.2f}x)")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
