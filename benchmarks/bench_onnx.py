"""The two-stage pipeline with its networks on ONNX Runtime vs on PyTorch, on the CPU, in one run.

Goal (issue 18): on a fresh synthetic test set (a seed the model never saw) the ONNX pipeline's
keypoints are within 0.5 px (mean) of the PyTorch pipeline's and its NE within 0.05 percentage
points. Both backends run the same `Pipeline` (crops, test-time options and decoding are shared
code); only the two networks differ. The model is exported here (`engine.model.onnx_export`)
unless `--onnx DIR` names an existing export.

    python benchmarks/bench_onnx.py [--model resources/models/demo] [--images 60] [--threads 1]

Speed: each backend predicts the whole set twice (interleaved with the other backend, so both
see the same machine load); the faster pass counts. Also the networks alone: the detector per
image and the keypoint net per batch of crops. Prints a line per figure and, last, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def _best_time(fn, rounds: int) -> float:
    """The fastest of `rounds` calls of `fn()`, seconds."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resources/models/demo", help="model package (default: the demo model)")
    parser.add_argument("--onnx", help="an existing `fkp export-onnx` folder of the same model (default: export now)")
    parser.add_argument("--images", type=int, default=60, help="synthetic test images (default 60)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256, as the demo data)")
    parser.add_argument("--seed", type=int, default=918_273, help="synthetic data seed (the demo model saw 1 and 2)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for both backends (default 1)")
    parser.add_argument("--batch-size", type=int, default=8, help="pipeline batch size (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="timed passes per backend, the best counts (default 2)")
    args = parser.parse_args()

    from engine.analysis.ne import evaluate
    from engine.io.annotations import load_annotations
    from engine.model.onnx_export import export_onnx
    from engine.model.onnx_runtime import load_onnx_model
    from engine.model.package import load_model
    from engine.model.pipeline import Pipeline
    from engine.synth import generate_dataset

    torch.set_num_threads(args.threads)
    cpu = _cpu_name()
    print(f"CPU: {cpu}, {args.threads} thread(s) for both backends", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        package = load_model(args.model)
        onnx_dir = Path(args.onnx) if args.onnx else tmp / "onnx"
        if not args.onnx:
            t0 = time.perf_counter()
            export_onnx(load_model(args.model), onnx_dir, source=str(args.model))
            print(f"export: {time.perf_counter() - t0:.1f} s", flush=True)
        ort_model = load_onnx_model(onnx_dir, threads=args.threads, providers=["CPUExecutionProvider"])
        gt = load_annotations(generate_dataset(tmp / "data", args.images, seed=args.seed, split="test",
                                               size=args.size, workers=1))
        root = tmp / "data"
        pipes = {name: Pipeline(m, device="cpu", batch_size=args.batch_size)
                 for name, m in (("pytorch", package), ("onnxruntime", ort_model))}
        warm = gt.subset(np.arange(min(2, len(gt))))
        for pipe in pipes.values():
            pipe.predict(root, warm)

        preds: dict[str, object] = {}
        seconds = {name: float("inf") for name in pipes}
        for _ in range(args.rounds):
            for name, pipe in pipes.items():
                t0 = time.perf_counter()
                preds[name], _, errors = pipe.predict(root, gt)
                seconds[name] = min(seconds[name], time.perf_counter() - t0)
                assert not errors, errors
        figures: dict[str, object] = {"cpu": cpu, "threads": args.threads, "images": len(gt), "size": args.size,
                                      "seed": args.seed, "model": str(args.model), "preset": package.preset.name}
        for name in pipes:
            figures[f"{name}_images_per_s"] = len(gt) / seconds[name]
            figures[f"{name}_ms_per_image"] = 1000 * seconds[name] / len(gt)
            print(f"{name:<12} pipeline {len(gt) / seconds[name]:7.2f} images/s  "
                  f"{1000 * seconds[name] / len(gt):7.1f} ms/image", flush=True)
        ratio = figures["onnxruntime_images_per_s"] / figures["pytorch_images_per_s"]
        figures["speed_ratio_onnxruntime_vs_pytorch"] = ratio
        print(f"ONNX Runtime / PyTorch speed: {ratio:.2f}x", flush=True)

        # The networks alone (the pipeline also crops, decodes and averages in numpy/torch).
        size = package.preset.input_size
        crops = torch.randn(args.batch_size, 3, size, size)
        image = torch.rand(3, package.detector_config.min_size, package.detector_config.min_size)
        with torch.no_grad():
            for name, m in (("pytorch", package), ("onnxruntime", ort_model)):
                m.keypoint_net(crops), m.detector([image])
                kp = _best_time(lambda: m.keypoint_net(crops), 5) / args.batch_size
                det = _best_time(lambda: m.detector([image]), 5)
                figures[f"{name}_keypoint_net_ms_per_crop"] = 1000 * kp
                figures[f"{name}_detector_ms_per_image"] = 1000 * det
                print(f"{name:<12} keypoint net {1000 * kp:6.2f} ms/crop (batch {args.batch_size}), "
                      f"detector {1000 * det:6.1f} ms/image ({image.shape[1]} px)", flush=True)

        ref, got = preds["pytorch"], preds["onnxruntime"]
        shown = ref.visibility == 1
        diff = np.linalg.norm(got.coords - ref.coords, axis=-1)[shown]
        ne = {name: 100 * evaluate(gt, p).ne for name, p in preds.items()}
        figures.update({
            "keypoint_mean_diff_px": float(diff.mean()), "keypoint_max_diff_px": float(diff.max()),
            "categories_equal": bool((got.categories == ref.categories).all()),
            "pytorch_ne_percent": ne["pytorch"], "onnxruntime_ne_percent": ne["onnxruntime"],
            "ne_diff_points": abs(ne["onnxruntime"] - ne["pytorch"]),
        })
        print(f"keypoints: mean {diff.mean():.4f} px, max {diff.max():.3f} px apart; NE PyTorch {ne['pytorch']:.3f} %, "
              f"ONNX Runtime {ne['onnxruntime']:.3f} % ({figures['ne_diff_points']:.4f} points)", flush=True)
        met = diff.mean() <= 0.5 and figures["ne_diff_points"] <= 0.05
        figures["accuracy_goal_met"] = bool(met)
        print(f"goal keypoints within 0.5 px (mean) and NE within 0.05 points: {'met' if met else 'NOT met'}")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
