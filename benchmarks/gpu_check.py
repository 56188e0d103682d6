"""The device check (issue 17): is the GPU fed, in the right precision, and do the studio's jobs
survive running out of its memory? One command, at most ~5 minutes on one GPU, synthetic data.

Sections (each prints a line; the last line printed is one JSON object with everything):
  device        name, compute capability, AMP dtype (bf16 only where native), GradScaler or not
  keypoints     `fast` and `accurate` train steps/s on batches already on the device, and through
                the real loader (KeypointCropDataset + DataLoader workers + device_batch):
                loader-bound when the loader path reaches < 90 % of the device-batch rate
  fp16          a few train steps in fp16 with a GradScaler (the path of pre-Ampere GPUs)
  detector      training steps/s, and the share of box coordinates > 256 px on a 2 px grid
                under the device's autocast (bf16 snapped them all to it; ~0 expected now)
  predict       images/s of each preset at batch 8 and 32, CPU seconds vs wall seconds per image
                (untrained weights: every crop is "unsure", so box and rotation search always
                run; trained models run them less)
  oom_job       the studio's predict job (engine.jobs) with the keypoint net raising an out-of-
                memory error once: what the job did (batch halved, finished, errors)
  ddp           with 2+ GPUs, benchmarks/gpu_check_ddp.py as a subprocess, its JSON included

    python benchmarks/gpu_check.py          # on a CUDA machine; elsewhere says so and exits 0
    python benchmarks/gpu_check.py --cpu    # the same sections on the CPU, tiny sizes (checks the script)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BUDGET_S = 270.0            # sections after this much time are skipped (the check must end within 5 min)
CPU_BUDGET_S = 1200.0       # --cpu checks the script, on a small shared CPU: no 5-minute promise there


class Check:
    """Sizes of the run: full on a GPU, tiny with --cpu."""

    def __init__(self, cpu: bool):
        self.cpu = cpu
        self.device = torch.device("cpu") if cpu else torch.device("cuda")
        self.images = 8 if cpu else 160
        self.image_size = 256 if cpu else 512
        self.train_steps = 1 if cpu else 20
        self.warmup = 1 if cpu else 3
        self.fp16_steps = 2 if cpu else 6
        self.detector_steps = 1 if cpu else 10
        self.budget = CPU_BUDGET_S if cpu else BUDGET_S
        self.predict_images = 4 if cpu else 64
        self.predict_batches = (2, 4) if cpu else (8, 32)
        self.workers = 0 if cpu else max(1, min(8, (os.cpu_count() or 2) - 1))
        self.started = time.monotonic()

    def preset(self, name: str):
        from engine.model.presets import get_preset

        p = get_preset(name)
        if self.cpu:  # tiny: a small crop, a small detector input, batches of 2
            p = p.with_(input_size=64, batch_size=2, detector_min_size=288, detector_max_size=384)
        return p

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.started)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def timed(check: Check, fn) -> float:
    """Wall seconds of fn(), the device's queue drained before and after."""
    check.sync()
    t = time.perf_counter()
    fn()
    check.sync()
    return time.perf_counter() - t


def section_device(check: Check) -> dict:
    from engine.model.device import amp_dtype, describe_device, native_bf16, needs_grad_scaler

    dev = check.device
    out = {"device": describe_device(dev), "amp_dtype": str(amp_dtype(dev)).replace("torch.", ""),
           "grad_scaler": needs_grad_scaler(dev), "native_bf16": native_bf16(dev), "torch": torch.__version__}
    if dev.type == "cuda":
        out["capability"] = ".".join(map(str, torch.cuda.get_device_capability(dev)))
        out["name"] = torch.cuda.get_device_name(dev)
        out["gpus"] = torch.cuda.device_count()
        out["memory_gib"] = round(torch.cuda.get_device_properties(dev).total_memory / 2**30, 1)
    return out


def section_keypoints(check: Check, root: Path, name: str) -> dict:
    from torch.utils.data import DataLoader

    from engine.model.device import needs_grad_scaler, prepare_model
    from engine.model.hourglass import KeypointNet
    from engine.training.dataset import Augmentation, KeypointCropDataset, device_batch
    from engine.training.keypoints import make_optimizer, train_step

    preset = check.preset(name)
    dev = check.device
    ds = KeypointCropDataset(root, root / "Annotations" / "train.csv", preset, augment=Augmentation(), seed=0)
    bs = min(preset.batch_size, len(ds))
    torch.manual_seed(0)
    model = prepare_model(KeypointNet(preset.net), dev)
    optimizer = make_optimizer(model, preset.lr, preset.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if needs_grad_scaler(dev) else None
    loader = DataLoader(ds, batch_size=bs, shuffle=True, drop_last=True, num_workers=check.workers,
                        pin_memory=dev.type == "cuda", persistent_workers=check.workers > 0,
                        prefetch_factor=4 if check.workers else None)

    def batches():
        while True:
            yield from loader

    it = batches()
    resident = device_batch(next(it), preset, dev)          # one batch kept on the device
    steps, warm = check.train_steps, check.warmup
    for _ in range(warm):
        train_step(model, optimizer, resident, preset, dev, scaler)
    t_dev = timed(check, lambda: [train_step(model, optimizer, resident, preset, dev, scaler) for _ in range(steps)])
    for _ in range(warm):
        next(it)
    t_load = timed(check, lambda: [next(it) for _ in range(steps)])
    losses = []
    t_real = timed(check, lambda: [losses.append(train_step(model, optimizer, next(it), preset, dev, scaler))
                                   for _ in range(steps)])
    dev_rate, real_rate, load_rate = steps / t_dev, steps / t_real, steps / t_load
    return {"preset": name, "batch": bs, "input": preset.input_size, "workers": check.workers,
            "steps_per_s_device_batches": dev_rate, "crops_per_s_device_batches": dev_rate * bs,
            "steps_per_s_real_loader": real_rate, "crops_per_s_real_loader": real_rate * bs,
            "loader_alone_crops_per_s": load_rate * bs, "loader_bound": real_rate < 0.9 * dev_rate,
            "loss_finite": bool(np.isfinite(losses).all())}


def section_fp16(check: Check, root: Path) -> dict:
    """train_step under fp16 autocast with a GradScaler, as on a GPU without native bf16."""
    import engine.model.device as device_module
    from engine.model.device import prepare_model
    from engine.model.hourglass import KeypointNet
    from engine.training.dataset import Augmentation, KeypointCropDataset
    from engine.training.keypoints import make_optimizer, train_step
    from torch.utils.data import DataLoader

    preset = check.preset("fast")
    dev = check.device
    ds = KeypointCropDataset(root, root / "Annotations" / "train.csv", preset, augment=Augmentation(), seed=1)
    batch = next(iter(DataLoader(ds, batch_size=min(preset.batch_size, len(ds)))))
    torch.manual_seed(0)
    model = prepare_model(KeypointNet(preset.net), dev)
    optimizer = make_optimizer(model, preset.lr, preset.weight_decay)
    scaler = torch.amp.GradScaler(dev.type)
    saved = device_module.amp_dtype
    device_module.amp_dtype = lambda d: torch.float16          # what a V100 or T4 gets
    losses, skipped = [], 0

    def step() -> None:
        nonlocal skipped
        scale = scaler.get_scale()
        losses.append(train_step(model, optimizer, batch, preset, dev, scaler))
        skipped += scaler.get_scale() < scale       # inf/NaN gradients: update skipped, scale halved

    try:
        seconds = timed(check, lambda: [step() for _ in range(check.fp16_steps)])
    finally:
        device_module.amp_dtype = saved
    weights_finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    return {"steps": len(losses), "steps_per_s": len(losses) / seconds, "losses": [round(x, 4) for x in losses],
            "updates_skipped": int(skipped), "loss_scale": float(scaler.get_scale()), "weights_finite": weights_finite}


def section_detector(check: Check, root: Path) -> dict:
    from engine.model.detector import DetectorConfig, build_detector
    from engine.model.device import autocast_for, needs_grad_scaler
    from engine.training.detector import detector_step, load_detector_samples

    preset = check.preset("fast")
    config = DetectorConfig.from_preset(preset)
    dev = check.device
    samples = load_detector_samples(root, "train", config, limit=check.images)
    torch.manual_seed(0)
    model = build_detector(config).to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    scaler = torch.amp.GradScaler("cuda") if needs_grad_scaler(dev) else None
    bs = 2 if check.cpu else 8
    rng = np.random.default_rng(0)
    idx = lambda i: [(i * bs + j) % len(samples) for j in range(bs)]  # noqa: E731
    detector_step(model, optimizer, *samples.augmented_batch(idx(0), rng), dev, scaler, 0)
    losses = []
    seconds = timed(check, lambda: [losses.append(detector_step(model, optimizer, *samples.augmented_batch(idx(i), rng),
                                                               dev, scaler, i)) for i in range(check.detector_steps)])
    # Box precision under the device's autocast (on the CPU, bf16 autocast stands in for it).
    model.eval()
    images, _ = samples.batch(list(range(min(8, len(samples)))))
    ctx = autocast_for(dev) if dev.type == "cuda" else torch.autocast("cpu", dtype=torch.bfloat16)
    with torch.no_grad(), ctx:
        outputs = model([im.to(dev) for im in images])
    # Coordinates clipped to the image's edge are whole numbers in any precision: left out.
    kept = []
    for o, im in zip(outputs, images):
        b = o["boxes"].float().cpu()
        h, w = im.shape[1:]
        edge = torch.tensor([w, h, w, h], dtype=torch.float32)
        kept.append(b[(b > 0) & (b < edge)])
    coords = torch.cat(kept)
    big = coords[coords > 256]
    share = float((torch.remainder(big, 2) == 0).float().mean()) if len(big) else float("nan")
    return {"batch": bs, "steps_per_s": check.detector_steps / seconds, "images_per_s": check.detector_steps * bs / seconds,
            "loss_finite": bool(np.isfinite(losses).all()), "box_dtype": str(outputs[0]["boxes"].dtype).replace("torch.", ""),
            "coordinates_over_256": int(len(big)), "share_on_2px_grid": share}


def _model(check: Check, name: str):
    from engine.model.detector import DetectorConfig, build_detector
    from engine.model.hourglass import KeypointNet
    from engine.model.package import TwoStageModel

    preset = check.preset(name)
    torch.manual_seed(0)
    config = DetectorConfig.from_preset(preset)
    return TwoStageModel(preset, build_detector(config).eval(), config, KeypointNet(preset.net).eval())


def section_predict(check: Check, root: Path, name: str, batch: int) -> dict:
    from engine.io.annotations import load_annotations
    from engine.model.pipeline import Pipeline

    ann = load_annotations(root / "Annotations" / "train.csv")
    n = min(check.predict_images, len(ann))
    ids, cats = list(ann.image_ids)[:n], [int(c) for c in ann.categories[:n]]
    pipe = Pipeline(_model(check, name), check.device, batch_size=batch)
    if check.cpu:
        pipe.grid_crops = True          # the accelerator's crop path, checked on the CPU
    list(pipe.iter_predict(root, ids[:batch], cats[:batch]))   # warm-up (cuDNN, allocator)
    cpu0 = time.process_time()
    wall = timed(check, lambda: list(pipe.iter_predict(root, ids, cats)))
    cpu = time.process_time() - cpu0
    return {"preset": name, "batch": batch, "images": n, "images_per_s": n / wall,
            "wall_ms_per_image": 1000 * wall / n, "cpu_ms_per_image": 1000 * cpu / n,
            "cpu_share_of_wall": cpu / wall}


def section_oom_job(check: Check, root: Path) -> dict:
    """The predict job with the keypoint net running out of GPU memory once."""
    from engine.io.annotations import load_annotations
    from engine.io.workspace import Workspace
    from engine.jobs.model_jobs import predict_job
    from engine.jobs.runner import JobRunner
    from engine.model.hourglass import KeypointNet
    from engine.model.package import save_model

    m = _model(check, "fast")
    package = root / "check.fkpmodel"
    save_model(package, m.preset, m.detector, m.detector_config, m.keypoint_net, {"data": "synthetic"})
    workspace = Workspace(root, state_dir=root / ".fkp-check")
    version = workspace.import_model(package)
    csv = root / "Annotations" / "train.csv"
    ann = load_annotations(csv)
    rows = np.arange(min(len(ann), 8 if check.cpu else 32))
    events = []
    raised = {"n": 0}
    forward = KeypointNet.forward

    def failing_forward(self, x):
        if raised["n"] == 0:
            raised["n"] += 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (forced by gpu_check)")
        return forward(self, x)

    KeypointNet.forward = failing_forward
    runner = JobRunner(on_event=events.append)
    try:
        handle = runner.submit("predict", predict_job(workspace, version, csv, ann, rows=rows,
                                                      device=str(check.device), batch_size=8))
        handle.wait(timeout=max(30.0, check.left()))
    finally:
        KeypointNet.forward = forward
        runner.shutdown(wait=True, timeout=30)
    result = handle.result if isinstance(handle.result, dict) else {}
    return {"state": handle.state.value, "error": handle.error, "oom_raised": raised["n"],
            "predicted": result.get("predicted"), "rows": int(len(rows)),
            "batch_size_at_end": result.get("batch_size"), "image_errors": len(result.get("errors") or {}),
            "partials": sum(e.kind == "partial" for e in events)}


def section_ddp(check: Check) -> dict:
    n = torch.cuda.device_count() if not check.cpu else 0
    if n < 2:
        return {"skipped": f"{n} GPU(s): the DDP check needs 2 or more"}
    script = ROOT / "benchmarks" / "gpu_check_ddp.py"
    if not script.is_file():
        return {"skipped": f"{script} not found"}
    try:
        proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True,
                              timeout=max(60.0, check.left()))
    except subprocess.TimeoutExpired:
        return {"error": "gpu_check_ddp.py ran out of time"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    try:
        return {"returncode": proc.returncode, **json.loads(lines[-1])}
    except (IndexError, json.JSONDecodeError):
        return {"returncode": proc.returncode, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", action="store_true", help="run the sections on the CPU with tiny sizes")
    ap.add_argument("--sections", help="comma-separated section names to run (default: all), e.g. oom_job,ddp")
    args = ap.parse_args()
    wanted = set(args.sections.split(",")) if args.sections else None
    if not args.cpu and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (run with --cpu to check the script on the CPU)")
        return 0
    check = Check(args.cpu)
    if args.cpu:
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    report: dict = {"mode": "cpu" if args.cpu else "cuda"}

    def run(key: str, fn, *a) -> None:
        if wanted is not None and not any(key == w or key.startswith(w + "_") for w in wanted):
            return
        if check.left() <= 0:
            report[key] = {"skipped": "time budget spent"}
        else:
            t = time.monotonic()
            try:
                report[key] = fn(*a)
            except Exception as e:  # noqa: BLE001 - a failing section is reported, the others still run
                report[key] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            if isinstance(report[key], dict):
                report[key]["seconds"] = round(time.monotonic() - t, 1)
        print(f"{key}: {json.dumps(report[key])}", flush=True)

    run("device", section_device, check)
    with tempfile.TemporaryDirectory(prefix="fkp-gpu-check-") as tmp:
        from engine.synth import generate_dataset

        root = Path(tmp)
        t = time.monotonic()
        generate_dataset(root, check.images, seed=0, split="train", size=check.image_size,
                         workers=min(8, os.cpu_count() or 1))
        print(f"data: {check.images} synthetic images of {check.image_size} px in {time.monotonic() - t:.1f} s", flush=True)
        for name in ("fast", "accurate"):
            run(f"keypoints_{name}", section_keypoints, check, root, name)
        run("fp16", section_fp16, check, root)
        run("detector", section_detector, check, root)
        for name in ("lite", "fast", "accurate"):
            for batch in check.predict_batches:
                run(f"predict_{name}_{batch}", section_predict, check, root, name, batch)
        run("oom_job", section_oom_job, check, root)
    run("ddp", section_ddp, check)
    report["seconds"] = round(time.monotonic() - check.started, 1)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
