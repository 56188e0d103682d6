"""The DDP part of the GPU device check: `torchrun` on every GPU of the machine, on synthetic data.

1. `fkp train` (keypoint net then detector, both DDP, `--sync-bn`, loader workers) over two
   keypoint epochs and a detector run longer than one pass over its images: steps/s and
   images/s of each stage, and one package written;
2. `fkp train-keypoints --time-budget` that runs out mid-run: every rank stops at the same
   step (the collective that decides it lives on the rank's GPU under NCCL);
3. `fkp predict` sharded across the ranks against one process: whether the CSV and scores
   files are identical (else how many rows differ and by how many pixels at most).

On fewer than two GPUs it says so in one line and exits 0. `--cpu-gloo` runs the same on the
CPU with two gloo processes and a tiny model (the check of the check). The last line printed
is one JSON object.

    python benchmarks/gpu_check_ddp.py              # 2+ GPUs
    python benchmarks/gpu_check_ddp.py --cpu-gloo   # anywhere, ~1-2 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# A model of a few thousand weights on 96 px images: the CPU check exercises the code, not speed.
TINY_PRESET = {
    "input_size": 64, "radius": 8.0, "crop_margin": 0.12, "detector_min_size": 96, "detector_max_size": 96,
    "batch_size": 8, "lr": 1e-2,
    "net": {"blocks": [1, 1, 1, 1], "widths": [[16, 8], [24, 8], [32, 12], [32, 12]], "stem_channels": 16,
            "decoder_channels": 24, "num_stages": 1},
}


def run(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    """Run a command, return it and its wall seconds; a failure prints its stderr's tail and exits."""
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        print(f"FAILED ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-3000:]}", file=sys.stderr)
        print(json.dumps({"ok": False, "failed": cmd[:8], "rc": r.returncode}))
        sys.exit(1)
    return r, wall


def torchrun(world: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}"]


def compare_csv(a: Path, b: Path) -> dict:
    """Identical bytes, else the rows that differ and the largest coordinate difference."""
    import numpy as np

    from engine.io.annotations import load_annotations

    same = a.read_bytes() == b.read_bytes()
    scores_same = a.with_suffix(".scores.csv").read_bytes() == b.with_suffix(".scores.csv").read_bytes()
    x, y = load_annotations(a), load_annotations(b)
    if list(x.image_ids) != list(y.image_ids):
        return {"identical": False, "scores_identical": scores_same, "same_ids_in_order": False}
    diff = np.abs(x.coords - y.coords).max(axis=(1, 2)) if len(x) else np.zeros(0)
    return {"identical": same, "scores_identical": scores_same, "same_ids_in_order": True,
            "rows_differing": int((diff > 0).sum()), "max_pixel_diff": float(diff.max()) if len(diff) else 0.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu-gloo", action="store_true", help="two gloo processes on the CPU, tiny model")
    ap.add_argument("--world", type=int, help="processes (default: every GPU; 2 with --cpu-gloo)")
    ap.add_argument("--timeout", type=float, default=420, help="seconds allowed per launch")
    args = ap.parse_args()

    import torch

    gpus = torch.cuda.device_count()
    if not args.cpu_gloo and gpus < 2:
        print(f"gpu_check_ddp: {gpus} CUDA GPU(s): DDP needs at least 2, nothing to check (--cpu-gloo runs it on the CPU)")
        return 0
    world = args.world or (2 if args.cpu_gloo else gpus)
    cpu = args.cpu_gloo
    env = {**os.environ, "OMP_NUM_THREADS": "1" if cpu else os.environ.get("OMP_NUM_THREADS", "4")}
    dev = ["--device", "cpu", "--threads", "1"] if cpu else ["--device", "cuda"]

    from engine.synth import generate_dataset

    tmp = Path(tempfile.mkdtemp(prefix="gpu_check_ddp_"))
    data = tmp / "data"
    size, n_train, n_val, n_test = (96, 16, 4, 7) if cpu else (256, 512, 64, 96)
    t0 = time.monotonic()
    for split, n, seed in (("train", n_train, 1), ("val", n_val, 2), ("test", n_test, 3)):
        generate_dataset(data, n, seed=seed, split=split, size=size, hard_fraction=0.1, workers=2 if cpu else 8)
    print(f"data: {n_train} train / {n_val} val / {n_test} test images of {size} px in {time.monotonic() - t0:.0f} s "
          f"({tmp})")
    preset_args = ["--preset", "lite"]
    if cpu:
        (tmp / "tiny.json").write_text(json.dumps(TINY_PRESET))
        preset_args += ["--preset-json", str(tmp / "tiny.json")]

    # 1. Both stages. Detector: single-process steps x batch = 2 passes over the training images.
    det_batch = 2 if cpu else 8
    det_steps = max(2 * world, 2 * n_train // det_batch)
    kp_batch = 4 if cpu else 32
    model = tmp / "m.fkpmodel"
    train_cmd = [*torchrun(world), "-m", "engine.cli", "train", "--data", str(data), *preset_args, "--out", str(model),
                 "--epochs", "2", "--batch-size", str(kp_batch), "--workers", "1" if cpu else "4",
                 "--detector-steps", str(det_steps), "--detector-batch", str(det_batch),
                 "--eval-every", str(det_steps // 2), "--detector-size", str(size), *dev]
    if not cpu:
        train_cmd.append("--sync-bn")
    r, train_wall = run(train_cmd, env, args.timeout)
    writes = r.stdout.count(f"wrote {model}")
    from engine.model.checkpoints import KEYPOINT_FORMAT, load_checkpoint
    from engine.model.detector import load_detector

    hist = load_checkpoint(tmp / "m.work" / "keypoints.pt", KEYPOINT_FORMAT)["history"]
    last = hist[-1]  # the second epoch: workers and kernels already warm
    kp_steps_per_epoch = (last["steps"] - hist[0]["steps"]) if len(hist) > 1 else last["steps"]
    kp = {"epochs": len(hist), "steps_per_s": kp_steps_per_epoch / max(last["seconds"], 1e-9),
          "images_per_s": last["images_per_s"], "val_ne": last["val_ne"], "val_images": last["val_images"]}
    _, _, det_meta = load_detector(tmp / "m.work" / "detector.pt")
    times = [int(m.group(1)) for m in re.finditer(r"detector step \d+/\d+ .*\((\d+) s\)", r.stderr)]
    det_seconds = max(times[-1], 1) if times else float("nan")
    det = {"steps": det_meta["step"], "steps_per_s": det_meta["step"] / det_seconds,
           "images_per_s": det_meta["step"] * det_batch * world / det_seconds,
           "passes_over_images": det_meta["step"] * det_batch * world / n_train, "val": det_meta.get("val", {})}
    print(f"fkp train x{world}: keypoints {kp['steps_per_s']:.2f} steps/s ({kp['images_per_s']:.0f} images/s, "
          f"epoch 2), detector {det['steps_per_s']:.2f} steps/s ({det['images_per_s']:.0f} images/s, "
          f"{det['passes_over_images']:.1f} passes), package written {writes}x, {train_wall:.0f} s wall")

    # 2. A time budget that runs out: every rank must stop at the same step, without a hang.
    budget_min = 0.15 if cpu else 0.25
    r, budget_wall = run([*torchrun(world), "-m", "engine.cli", "train-keypoints", "--data", str(data), *preset_args[:2],
                          "--out", str(tmp / "budget.pt"), "--epochs", "1000", "--batch-size", str(kp_batch),
                          "--time-budget", str(budget_min), *dev], env, args.timeout)
    budget_stopped = "time budget of" in r.stderr
    print(f"train-keypoints --time-budget {budget_min} x{world}: stopped by the budget {budget_stopped}, "
          f"{budget_wall:.0f} s wall")

    # 3. Sharded prediction against one process (batches of 4: shares of whole batches).
    predict = ["-m", "engine.cli", "predict", "--model", str(model), "--data", str(data), "--split", "test",
               "--batch-size", "4", *dev]
    sharded, single = tmp / "sharded.csv", tmp / "single.csv"
    _, sharded_wall = run([*torchrun(world), *predict, "--out", str(sharded)], env, args.timeout)
    _, single_wall = run([sys.executable, *predict, "--out", str(single)], env, args.timeout)
    same = compare_csv(single, sharded)
    print(f"predict x{world}: {sharded_wall:.0f} s wall, one process {single_wall:.0f} s (both with start-up); "
          f"CSV identical {same['identical']}, scores identical {same['scores_identical']}"
          + ("" if same["identical"] else f", {same.get('rows_differing')} rows differ by up to "
                                          f"{same.get('max_pixel_diff')} px"))

    device = "CPU (gloo)" if cpu else f"{gpus} x {torch.cuda.get_device_name(0)} (NCCL)"
    ok = writes == 1 and budget_stopped and same["same_ids_in_order"] and len(hist) == 2
    print(json.dumps({"ok": ok, "device": device, "world": world, "keypoints": kp, "detector": det,
                      "package_writes": writes, "train_wall_s": train_wall, "time_budget_stopped": budget_stopped,
                      "predict": {**same, "sharded_wall_s": sharded_wall, "single_wall_s": single_wall}}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
