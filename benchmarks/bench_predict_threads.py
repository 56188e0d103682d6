"""Prediction throughput by CPU thread count, idle and beside one busy process (issue 29, item 13).

The demo model (`resources/models/demo`) predicts synthetic 512 x 512 images (`engine.synth`) as
`fkp predict` and the studio's predict job do (`predict_within_memory`, batches of 8, the next
batch decoded on a thread pool), with torch on 1 thread, 2 threads and the engine's choice
(`engine.model.device.predict_threads`). Each measurement runs in a fresh process, so OpenMP
reads its settings as the studio and `fkp` would: the engine's passive waiting
(`OMP_WAIT_POLICY=PASSIVE`, set when `engine` is imported) and, for comparison, OpenMP's
default (waiting threads spin a while before they sleep). "Busy" is one CPU-burning process
this script starts before the measurement and stops after it.

    python benchmarks/bench_predict_threads.py [--images 24] [--repeats 3]

Prints a line per measurement, the ratios measured in this run, and last one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO_MODEL = REPO / "resources" / "models" / "demo"
BURN = "while True:\n    pass\n"  # one core's worth of work, as a build or a test run beside the studio


def _measure(root: str, images: int, threads: int, wait: str) -> dict[str, float]:
    """In this (fresh) process: images/s of predicting `images` images of `root` on `threads`."""
    import engine  # noqa: F401  (sets the engine's OpenMP wait policy before torch loads)

    if wait == "default":
        os.environ.pop("OMP_WAIT_POLICY", None)  # OpenMP's own default: spin, then sleep
    else:
        os.environ["OMP_WAIT_POLICY"] = wait
    import torch

    from engine.io.annotations import load_annotations
    from engine.model.device import torch_threads
    from engine.model.package import load_model
    from engine.model.pipeline import Pipeline, predict_within_memory

    ann = load_annotations(Path(root) / "Annotations" / "train.csv")
    ids, cats = list(ann.image_ids)[:images], [int(c) for c in ann.categories[:images]]
    pipeline = Pipeline(load_model(DEMO_MODEL), device="cpu", batch_size=8)
    with torch_threads(threads):  # as `fkp predict` and the studio's predict job set it
        for _ in predict_within_memory(pipeline, root, ids[:8], cats[:8]):  # warm-up: first-call costs
            pass
        cpu0, t0 = time.process_time(), time.perf_counter()
        for _ in predict_within_memory(pipeline, root, ids, cats):
            pass
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        used = torch.get_num_threads()
    return {"images_per_s": len(ids) / wall, "wall_s": wall, "cpu_s": cpu, "torch_threads": used}


def _run_child(root: str, images: int, threads: int, wait: str) -> dict[str, float]:
    """`_measure` in a new Python process (OpenMP reads its environment once, at load)."""
    out = subprocess.run([sys.executable, __file__, "--child", root, "--images", str(images),
                          "--threads", str(threads), "--wait", wait],
                         capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _with_load(busy: bool, fn):
    """`fn()` alone, or beside one CPU-burning process started for it and stopped after it."""
    burner = subprocess.Popen([sys.executable, "-c", BURN]) if busy else None
    try:
        if burner is not None:
            time.sleep(0.5)  # let it take its core
        return fn()
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()


def _machine() -> str:
    """CPU model, logical CPUs usable here and the widest vector extension."""
    model, flags = platform.processor() or "unknown CPU", ""
    try:
        info = Path("/proc/cpuinfo").read_text()
        model = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
        flags = next(line for line in info.splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    isa = "AVX-512" if " avx512f" in flags else "AVX2" if " avx2" in flags else "SSE"
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cpus} CPUs, {isa}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=24, help="images per measurement (default 24)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="measurements per thread count (waiting passively); the best is kept (default 3)")
    ap.add_argument("--seed", type=int, default=29)
    ap.add_argument("--child", metavar="ROOT", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--wait", default="PASSIVE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_measure(args.child, args.images, args.threads, args.wait)))
        return

    from engine.model.device import predict_threads
    from engine.synth import generate_dataset

    chosen = predict_threads()
    settings = [(t, "PASSIVE") for t in dict.fromkeys((1, 2, chosen))] + [(2, "default")]
    with tempfile.TemporaryDirectory(prefix="fkp-bench-threads-") as tmp:
        generate_dataset(tmp, args.images, seed=args.seed, size=512)
        print(f"machine: {_machine()}; load average before: {os.getloadavg()[0]:.2f}; "
              f"{args.images} images of 512 px; chosen threads: {chosen}", flush=True)
        runs: dict[str, list[dict[str, float]]] = {}
        for busy in (False, True):
            # Rounds interleave the thread counts, so a neighbour's burst costs each of them alike;
            # spinning is measured in the first round only: it is the comparison, and takes minutes.
            for round_ in range(args.repeats):
                for threads, wait in settings:
                    if wait != "PASSIVE" and round_:
                        continue
                    key = f"{'busy' if busy else 'idle'}/{threads}t/{wait.lower()}"
                    run = _with_load(busy, lambda: _run_child(tmp, args.images, threads, wait))
                    runs.setdefault(key, []).append(run)
                    print(f"{key:<22} {run['images_per_s']:6.2f} images/s  ({run['wall_s']:.2f} s wall, "
                          f"{run['cpu_s']:.2f} s CPU)", flush=True)
    # The best of each: the run least disturbed by other processes.
    figures = {key: {k: round(v, 3) for k, v in max(r, key=lambda x: x["images_per_s"]).items()}
               for key, r in runs.items()}

    def ratio(a: str, b: str) -> float:
        return round(figures[a]["images_per_s"] / figures[b]["images_per_s"], 3)

    ratios = {
        "idle 2t / 1t": ratio("idle/2t/passive", "idle/1t/passive"),
        "busy 2t / 1t": ratio("busy/2t/passive", "busy/1t/passive"),
        f"idle {chosen}t / 1t": ratio(f"idle/{chosen}t/passive", "idle/1t/passive"),
        f"busy {chosen}t / 1t": ratio(f"busy/{chosen}t/passive", "busy/1t/passive"),
        f"idle {chosen}t / 2t": ratio(f"idle/{chosen}t/passive", "idle/2t/passive"),
        f"busy {chosen}t / 2t": ratio(f"busy/{chosen}t/passive", "busy/2t/passive"),
        "busy 2t passive / spinning default": ratio("busy/2t/passive", "busy/2t/default"),
        "idle 2t passive / spinning default": ratio("idle/2t/passive", "idle/2t/default"),
        "busy / idle at chosen": ratio(f"busy/{chosen}t/passive", f"idle/{chosen}t/passive"),
    }
    for name, value in ratios.items():
        print(f"ratio {name}: {value}")
    print(json.dumps({"machine": _machine(), "images": args.images, "size": 512, "chosen_threads": chosen,
                      "load_average_after": round(os.getloadavg()[0], 2), "figures": figures, "ratios": ratios}))


if __name__ == "__main__":
    main()
