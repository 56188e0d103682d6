"""Speed of the error analysis and of COCO export/import at FashionAI scale.

Builds a 100,000-row annotation file from the real layouts of `tests/data/fashionai/val.csv`
(repeated, with new image ids) and a prediction of it (3 px of noise, 3 % of points 100 px
off, 1 % of images with a swapped left/right pair), then times:

- `analyze_errors` (error types of every point, counts, what-if) and
  `suspected_label_errors`, against `evaluate` (NE alone) on the same files as the baseline:
  the analysis should cost a small multiple of scoring (goal: <= 4x);
- `to_coco` + JSON encoding and JSON decoding + `from_coco`, against `save_annotations` and
  `load_annotations` of the same rows (the CSV round trip) as the baseline.

Each figure is the median of `--repeats` runs. The last line printed is one JSON object.

    python benchmarks/bench_error_analysis.py [--rows 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.io.annotations import Annotations, load_annotations, save_annotations
from engine.io.coco import from_coco, to_coco
from engine.analysis.label_errors import suspected_label_errors
from engine.analysis.error_types import analyze_errors
from engine.analysis.ne import evaluate
from engine.schema import FLIP_PAIRS

VAL_CSV = Path(__file__).resolve().parents[1] / "tests" / "data" / "fashionai" / "val.csv"


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall time of `repeats` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def real_layouts(n: int) -> Annotations:
    """n rows: val.csv's rows repeated, each copy with its own image ids."""
    val = load_annotations(VAL_CSV)
    take = np.arange(n) % len(val)
    ids = [f"{val.image_ids[t]}#{i // len(val)}" for i, t in enumerate(take)]
    return Annotations.from_arrays(ids, val.categories[take], val.coords[take], val.visibility[take])


def noisy_prediction(gt: Annotations, seed: int = 1) -> Annotations:
    """GT + 3 px noise, 3 % of points 100 px off, one pair swapped in 1 % of images."""
    rng = np.random.default_rng(seed)
    coords = gt.coords + rng.normal(0, 3, gt.coords.shape).astype(np.float32)
    far = rng.random(gt.visibility.shape) < 0.03
    coords[far] += 100
    swap = np.flatnonzero(rng.random(len(gt)) < 0.01)
    left, right = FLIP_PAIRS[0]
    coords[swap, left], coords[swap, right] = coords[swap, right].copy(), coords[swap, left].copy()
    vis = np.where(gt.visibility >= 0, 1, -1)
    coords = np.clip(np.rint(coords), 0, 512)
    coords[vis == -1] = -1
    return Annotations.from_arrays(gt.image_ids, gt.categories, coords, vis)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    gt = real_layouts(args.rows)
    pred = noisy_prediction(gt)
    ne_s, result = timed(lambda: evaluate(gt, pred), args.repeats)
    analysis_s, analysis = timed(lambda: analyze_errors(gt, pred), args.repeats)
    suspects_s, suspects = timed(lambda: suspected_label_errors(gt, analysis.types), args.repeats)
    print(f"{args.rows} images, NE {100 * result.ne:.2f} %, types {analysis.counts()}, "
          f"{len(suspects)} suspected label errors")
    print(f"evaluate (baseline)        {ne_s * 1e3:8.1f} ms")
    print(f"analyze_errors             {analysis_s * 1e3:8.1f} ms  ({analysis_s / ne_s:.1f}x evaluate)")
    print(f"suspected_label_errors     {suspects_s * 1e3:8.1f} ms  ({suspects_s / ne_s:.1f}x evaluate)")

    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "gt.csv"
        save_s, _ = timed(lambda: save_annotations(gt, csv), args.repeats)
        load_s, _ = timed(lambda: load_annotations(csv), args.repeats)
    export_s, text = timed(lambda: json.dumps(to_coco(gt), separators=(",", ":")), args.repeats)
    import_s, back = timed(lambda: from_coco(json.loads(text))[0], args.repeats)
    assert np.array_equal(back.coords, gt.coords) and np.array_equal(back.visibility, gt.visibility)
    print(f"CSV save / load (baseline) {save_s * 1e3:8.1f} / {load_s * 1e3:.1f} ms")
    print(f"COCO export (to JSON text) {export_s * 1e3:8.1f} ms  ({export_s / save_s:.1f}x CSV save), "
          f"{len(text) / 1e6:.1f} MB")
    print(f"COCO import (from text)    {import_s * 1e3:8.1f} ms  ({import_s / load_s:.1f}x CSV load)")
    print(json.dumps({
        "rows": args.rows, "evaluate_s": ne_s, "analyze_errors_s": analysis_s,
        "analysis_vs_evaluate": analysis_s / ne_s, "suspects_s": suspects_s,
        "csv_save_s": save_s, "csv_load_s": load_s, "coco_export_s": export_s, "coco_import_s": import_s,
        "coco_export_vs_csv_save": export_s / save_s, "coco_import_vs_csv_load": import_s / load_s,
        "coco_mb": len(text) / 1e6,
    }))


if __name__ == "__main__":
    main()
