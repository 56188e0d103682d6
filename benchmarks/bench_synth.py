"""Speed of the synthetic data generator (goal: >= 50 images/s at 512x512 using all cores).

Times, in one run:
- `generate_dataset` rendering `--n` images at `--size` (JPEG files + CSV) with all cores,
  against the baseline of the same call with one worker process (the ratio is the parallel
  speed-up);
- the render step alone (`render_sample`, no JPEG, no disk) in this process;
- `--annotations-only` for `--rows` rows (goal: 100,000 rows in a few seconds).

The machine is shared: the 1-minute load average before and after is printed, since other
processes on the same cores lower the figures. The last line printed is one JSON object.

    python benchmarks/bench_synth.py [--n 600] [--size 512] [--rows 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.synth import generate_dataset, render_sample


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def _time_generate(n: int, size: int, workers: int, seed: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        generate_dataset(Path(tmp) / "d", n, seed=seed, size=size, workers=workers)
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600, help="images per timed generation (default 600)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--rows", type=int, default=100_000, help="rows for --annotations-only (default 100000)")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    load_before = _load()

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    m = max(50, args.n // 4)
    for i in range(m):
        render_sample(rng, i % 5, (args.size, args.size))
    render_ms = 1000 * (time.perf_counter() - t0) / m

    t_one = _time_generate(args.n, args.size, 1, seed=1)
    t_all = _time_generate(args.n, args.size, cores, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        generate_dataset(tmp, args.rows, seed=0, size=args.size, annotations_only=True)
        t_rows = time.perf_counter() - t0
    load_after = _load()

    ips_all, ips_one = args.n / t_all, args.n / t_one
    print(f"machine: {cores} cores; 1-min load average {load_before:.2f} before, {load_after:.2f} after")
    print(f"render only (1 process, no JPEG):  {render_ms:.1f} ms/image at {args.size}x{args.size}")
    print(f"generate_dataset, 1 worker (baseline): {ips_one:.0f} images/s")
    print(f"generate_dataset, {cores} workers:        {ips_all:.0f} images/s  "
          f"(x{ips_all / ips_one:.2f} vs baseline; goal >= 50 images/s)")
    print(f"annotations only: {args.rows} rows in {t_rows:.2f} s ({args.rows / t_rows:.0f} rows/s)")
    print(json.dumps({
        "cores": cores, "size": args.size, "n": args.n,
        "images_per_s": round(ips_all, 1), "images_per_s_one_worker": round(ips_one, 1),
        "speedup_vs_one_worker": round(ips_all / ips_one, 2), "render_ms_per_image": round(render_ms, 2),
        "annotations_only_rows": args.rows, "annotations_only_s": round(t_rows, 3),
        "load_before": round(load_before, 2), "load_after": round(load_after, 2),
    }))


if __name__ == "__main__":
    main()
