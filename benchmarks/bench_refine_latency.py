"""How long one refinement after a correction takes on one CPU thread (issue 32: <= 50 ms, `lite`).

Fresh synthetic images are predicted by the model; the simulated reviewer
(`engine.analysis.review_effort.corrected`) fixes the worst point first and the model refines
after each fix, every call timed. Two costs: per correction (`refine_points`: numpy, the shape
model and the stored peaks) and, once per image at its first correction, the vote peaks
(`candidate_peaks`: one keypoint-net run on the image's crop), with their sum for that first
correction (a caller that makes the peaks when the image is shown spares the reviewer that wait).
Refinement (b) (`engine.model.hint_refine.HintRefiner`, the hint-taking net of `--hint-model`):
one keypoint-net run per correction (two crops with the preset's flip TTA) on the garment crop
with the set points as hints, plus the visibility stage; nothing to prepare per image. Timed per
correction the same way, in a second reviewer pass with (b) refining.
The studio's path (`engine.jobs.model_jobs.refine_job`, what its model thread runs after a drag:
the image read from disk, `CorrectionRefiner` with `--model`, the refined row rounded as saved),
timed per correction in a third pass; its threads are the engine's prediction threads
(`predict_threads`: run with OMP_NUM_THREADS=1 for the one-thread figure).
Prints milliseconds; the last line is one JSON object.

    python benchmarks/bench_refine_latency.py [--model resources/models/demo] [--n 100] [--seed 20261230]
        [--size 256] [--threads 1] [--hint-model resources/models/demo-hints | none]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from engine.analysis.ne import align_predictions
from engine.analysis.review_effort import corrected
from engine.io.annotations import load_annotations
from engine.io.images import read_image
from engine.model.hint_refine import HintRefiner
from engine.model.package import load_model
from engine.model.pipeline import Pipeline
from engine.model.refine import ImagePrediction, candidate_peaks, refine_points
from engine.model.shape_model import synthetic_shape_model
from engine.synth import generate_dataset

REPO = Path(__file__).resolve().parents[1]


def _ms(values: list[float]) -> dict[str, float]:
    """Median and 95th percentile of durations in seconds, as milliseconds."""
    a = 1000 * np.asarray(values)
    return {"median_ms": round(float(np.median(a)), 3), "p95_ms": round(float(np.percentile(a, 95)), 3),
            "max_ms": round(float(a.max()), 3), "count": len(a)}


def _studio_pass(model_path: str, root: Path, state: Path, truth, pred, scores, coords, vis) -> dict:
    """Per-correction times of `refine_job` as the studio's model thread runs it."""
    from engine.io.predictions import Predictions
    from engine.io.workspace import Workspace
    from engine.jobs.model_jobs import RefinerHolder, ensure_active_model, refine_job
    from engine.model.device import predict_threads

    workspace = Workspace(root, state_dir=state)
    version = ensure_active_model(workspace, model_path)
    predicted = Predictions.from_annotations(pred, scores, f"model {version}")
    order = pred.id_index()
    holder, times = RefinerHolder(), []

    def refine(row: int, fixed: np.ndarray, xy: np.ndarray) -> np.ndarray:
        image_id = str(truth.image_ids[row])
        t0 = time.perf_counter()
        out = refine_job(holder, workspace, version, image_id, int(truth.categories[row]),
                         predicted.take([order[image_id]]), fixed, xy)(None)["prediction"]
        times.append(time.perf_counter() - t0)
        return np.where(fixed[:, None], xy, out.coords[0])

    refine(0, np.zeros(24, bool), coords[0])  # the model's load and the shape model: once per session
    times.clear()
    corrected(truth, coords, vis, refine)
    return {**_ms(times), "threads": predict_threads(),
            "route": "hints" if holder.refiner.uses_hints else "shape model and peaks"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(REPO / "resources" / "models" / "demo"))
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--seed", type=int, default=20261230)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--hint-model", default=str(REPO / "resources" / "models" / "demo-hints"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    pipeline = Pipeline(model)
    shapes = synthetic_shape_model(size=args.size)
    tmp = tempfile.TemporaryDirectory()  # the studio pass reads the images from disk
    root = Path(tmp.name) / "data"
    truth = load_annotations(generate_dataset(root, args.n, seed=args.seed, split="latency", size=args.size))
    pred, scores, _ = pipeline.predict(root, truth)
    coords, vis, _ = align_predictions(truth, pred)
    cats = truth.categories.astype(np.int64)
    images = [read_image(root / i, root) for i in truth.image_ids]
    candidate_pipeline = Pipeline(model, batch_size=1)
    peak_times, predictions = [], []
    for i in range(len(truth)):
        t0 = time.perf_counter()
        peaks, mass = candidate_peaks(candidate_pipeline, images[i:i + 1], coords[i:i + 1], cats[i:i + 1])
        peak_times.append(time.perf_counter() - t0)
        predictions.append(ImagePrediction(int(cats[i]), coords[i], np.asarray(scores[i]), peaks[0], mass[0]))
    refine_times: list[float] = []
    first_correction: dict[int, float] = {}   # image -> its peaks and its first refinement

    def refine(row: int, fixed: np.ndarray, xy: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = refine_points(shapes, predictions[row], fixed, xy)
        refine_times.append(time.perf_counter() - t0)
        first_correction.setdefault(row, peak_times[row] + refine_times[-1])
        return out

    corrected(truth, coords, vis, refine)
    hinted: dict = {}
    if args.hint_model != "none":
        refiner = HintRefiner(load_model(args.hint_model))
        hint_times: list[float] = []

        def refine_b(row: int, fixed: np.ndarray, xy: np.ndarray) -> np.ndarray:
            t0 = time.perf_counter()
            out = refiner.refine(images[row], int(cats[row]), xy, fixed, vis[row]).coords
            hint_times.append(time.perf_counter() - t0)
            return out

        corrected(truth, coords, vis, refine_b)
        hinted = {**_ms(hint_times), "flip_tta": refiner.flip_tta,
                  "visibility_stage": refiner.visibility is not None}
        print(f"(b) the hint-taking net, per correction (HintRefiner.refine, {1 + refiner.flip_tta} crop(s), "
              f"visibility stage {'on' if hinted['visibility_stage'] else 'off'}): median {hinted['median_ms']:.1f} ms, "
              f"p95 {hinted['p95_ms']:.1f} ms over {hinted['count']} corrections; goal <= 50 ms")
    studio = _studio_pass(args.model, root, Path(tmp.name) / "state", truth, pred, scores, coords, vis)
    tmp.cleanup()
    print(f"the studio's path (refine_job: image read, CorrectionRefiner, {studio['route']}, "
          f"{studio['threads']} thread(s)): median {studio['median_ms']:.1f} ms, p95 {studio['p95_ms']:.1f} ms over "
          f"{studio['count']} corrections (an image's first correction also makes its peaks); goal <= 50 ms")
    per_correction, per_image = _ms(refine_times), _ms(peak_times)
    first = _ms(list(first_correction.values()))
    print(f"{model.preset.name} model, {args.threads} thread(s), "
          f"{len(truth)} images: per correction (refine_points) median {per_correction['median_ms']:.2f} ms, "
          f"p95 {per_correction['p95_ms']:.2f} ms over {per_correction['count']} corrections; once per image "
          f"(candidate_peaks) median {per_image['median_ms']:.1f} ms, p95 {per_image['p95_ms']:.1f} ms; "
          f"a first correction with the peaks not made beforehand (both) p95 {first['p95_ms']:.1f} ms; "
          f"goal <= 50 ms per correction")
    print(json.dumps({"preset": model.preset.name, "threads": args.threads, "images": len(truth),
                      "per_correction": per_correction, "candidate_peaks_per_image": per_image,
                      "first_correction": first, "b_per_correction": hinted, "studio_per_correction": studio,
                      **({"b_goal_met": hinted["p95_ms"] <= 50} if hinted else {}),
                      "goal_ms": 50, "goal_met_per_correction": per_correction["p95_ms"] <= 50,
                      "goal_met_first_correction_unprepared": first["p95_ms"] <= 50,
                      "load_average": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
