"""Speed of FashionAI annotation files and of the NE metric at FashionAI scale.

Builds a random valid 100,000-row annotation file (numpy only), then times:
- `load_annotations` and `save_annotations` (goal <= 0.5 s each on a 2-core CPU), against a
  straightforward pandas baseline timed in the same run: `read_csv` plus splitting each
  keypoint cell with `.str.split("_")`, and building each cell with string concatenation
  plus `to_csv`;
- NE of 100,000 images: `normalized_errors` on arrays, and `evaluate` on two Annotations,
  once matching 100,000 shuffled prediction rows by image id and once with the rows already
  in ground-truth order (as our own prediction files are); goal <= 50 ms.

Each figure is the median of `--repeats` runs. The last line printed is one JSON object.

    python benchmarks/bench_annotations.py [--rows 100000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from engine.io.annotations import Annotations, load_annotations, save_annotations
from engine.analysis.ne import evaluate, normalized_errors
from engine.schema import CATEGORIES, CATEGORY_MASK, CSV_HEADER, KEYPOINTS, NUM_KEYPOINTS


def random_annotations(n: int, seed: int = 0) -> Annotations:
    """Valid random rows: FashionAI-like ids, category keypoints present, others -1_-1_-1."""
    rng = np.random.default_rng(seed)
    cats = rng.integers(0, len(CATEGORIES), size=n)
    hexes = rng.integers(0, 16, size=(n, 32)).astype(np.uint8)
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[hexes]
    names = digits.view("S32").ravel().astype(str)
    ids = [f"Images/{CATEGORIES[c]}/{h}.jpg" for c, h in zip(cats, names)]
    vis = np.where(rng.random((n, NUM_KEYPOINTS)) < 0.8, 1, 0).astype(np.int8)
    vis[~CATEGORY_MASK[cats]] = -1
    coords = rng.integers(0, 513, size=(n, NUM_KEYPOINTS, 2)).astype(np.float32)
    coords[vis == -1] = -1
    return Annotations.from_arrays(ids, cats, coords, vis)


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall time of `repeats` calls, and the last result.

    `timed.last_cpu` is then the median CPU time of this process: on a machine shared with
    other work the wall time grows, the CPU time much less.
    """
    times, cpu = [], []
    result = None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        result = fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    timed.last_cpu = statistics.median(cpu)
    return statistics.median(times), result


def pandas_load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The straightforward baseline: read_csv, then split every keypoint cell."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    parts = [df[k].str.split("_", expand=True).astype(np.int64).to_numpy() for k in KEYPOINTS]
    cells = np.stack(parts, axis=1)  # (N, 24, 3)
    return cells[:, :, :2].astype(np.float32), cells[:, :, 2].astype(np.int8)


def pandas_save(ann: Annotations, path: Path) -> None:
    """The straightforward baseline: build each x_y_v cell as strings, then to_csv."""
    xy = np.rint(ann.coords).astype(np.int64)
    columns = {"image_id": ann.image_ids, "image_category": np.asarray(CATEGORIES)[ann.categories]}
    for k, name in enumerate(KEYPOINTS):
        columns[name] = (pd.Series(xy[:, k, 0]).astype(str) + "_" + pd.Series(xy[:, k, 1]).astype(str)
                         + "_" + pd.Series(ann.visibility[:, k]).astype(str))
    pd.DataFrame(columns, columns=list(CSV_HEADER)).to_csv(path, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n, r = args.rows, args.repeats

    ann = random_annotations(n)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.csv"
        load_avg = os.getloadavg()[0]
        save_s, _ = timed(lambda: save_annotations(ann, path), r)
        save_cpu = timed.last_cpu
        data = path.read_bytes()
        load_s, loaded = timed(lambda: load_annotations(path), r)
        load_cpu = timed.last_cpu
        assert not loaded.problems and len(loaded) == n
        assert np.array_equal(loaded.coords, ann.coords) and np.array_equal(loaded.visibility, ann.visibility)
        again = Path(tmp) / "again.csv"
        save_annotations(loaded, again)
        assert again.read_bytes() == data, "round trip is not byte-exact"

        base_load_s, (bc, bv) = timed(lambda: pandas_load(path), r)
        assert np.array_equal(bc, ann.coords) and np.array_equal(bv, ann.visibility)
        base_path = Path(tmp) / "baseline.csv"
        base_save_s, _ = timed(lambda: pandas_save(ann, base_path), r)
        assert base_path.read_bytes() == data, "baseline writes a different file"

    # Predictions: ground truth plus noise, rows shuffled so evaluate must match by id.
    rng = np.random.default_rng(1)
    noisy = ann.coords + rng.normal(0, 6, ann.coords.shape).astype(np.float32)
    noisy[ann.visibility == -1] = -1
    order = rng.permutation(n)
    pred = Annotations.from_arrays(ann.image_ids[order], ann.categories[order], noisy[order],
                                   ann.visibility[order])
    ne_arrays_s, point_errors = timed(
        lambda: normalized_errors(ann.coords, ann.visibility, ann.categories, noisy, ann.visibility), r)
    ne_arrays_cpu = timed.last_cpu
    ne_eval_s, result = timed(lambda: evaluate(ann, pred), r)
    ne_eval_cpu = timed.last_cpu
    in_order = Annotations.from_arrays(ann.image_ids, ann.categories, noisy, ann.visibility)
    ne_aligned_s, aligned = timed(lambda: evaluate(ann, in_order), r)
    ne_aligned_cpu = timed.last_cpu
    assert aligned.ne == result.ne
    assert np.allclose(np.nanmean(point_errors.errors[ann.visibility == 1]), result.ne, rtol=1e-6)

    print(f"{n} rows, {len(data) / 1e6:.1f} MB, median of {r} runs; load average {load_avg:.2f} "
          f"on {os.cpu_count()} CPUs at the start (wall times grow when the machine is shared)")
    print(f"load  {load_s * 1000:7.1f} ms (CPU {load_cpu * 1000:.0f} ms)   pandas read_csv + split {base_load_s * 1000:7.1f} ms   "
          f"speed-up x{base_load_s / load_s:.1f}   (goal <= 500 ms)")
    print(f"save  {save_s * 1000:7.1f} ms (CPU {save_cpu * 1000:.0f} ms)   pandas concat + to_csv  {base_save_s * 1000:7.1f} ms   "
          f"speed-up x{base_save_s / save_s:.1f}   (goal <= 500 ms)")
    print(f"NE    {ne_arrays_s * 1000:7.1f} ms (CPU {ne_arrays_cpu * 1000:.0f} ms) on arrays (normalized_errors), "
          f"{ne_eval_s * 1000:.1f} ms (CPU {ne_eval_cpu * 1000:.0f} ms) by evaluate matching shuffled ids, "
          f"{ne_aligned_s * 1000:.1f} ms (CPU {ne_aligned_cpu * 1000:.0f} ms) by evaluate with rows in GT order   "
          f"(goal <= 50 ms); NE {100 * result.ne:.3f} %")
    print(json.dumps({
        "rows": n, "megabytes": round(len(data) / 1e6, 2), "repeats": r,
        "load_average": round(load_avg, 2),
        "load_s": round(load_s, 4), "save_s": round(save_s, 4),
        "load_cpu_s": round(load_cpu, 4), "save_cpu_s": round(save_cpu, 4),
        "baseline_load_s": round(base_load_s, 4), "baseline_save_s": round(base_save_s, 4),
        "load_speedup": round(base_load_s / load_s, 2), "save_speedup": round(base_save_s / save_s, 2),
        "ne_arrays_s": round(ne_arrays_s, 4), "ne_evaluate_s": round(ne_eval_s, 4),
        "ne_arrays_cpu_s": round(ne_arrays_cpu, 4), "ne_evaluate_cpu_s": round(ne_eval_cpu, 4),
        "ne_evaluate_in_order_s": round(ne_aligned_s, 4), "ne_evaluate_in_order_cpu_s": round(ne_aligned_cpu, 4),
    }))


if __name__ == "__main__":
    main()
