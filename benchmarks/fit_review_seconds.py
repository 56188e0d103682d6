"""Fit the review queue's expected-seconds models (`engine.analysis.review_queue`) for a model.

On ordinary synthetic images (the demo model's kind of data; seeds none of
`bench_annotation_effort.py`'s batches use: `--seed`, `--seed + 1`, ...): the model predicts
them with its uncertainty signals (`engine.model.uncertainty.SignalPipeline`), the simulated
reviewer's seconds per image are the target (`review_effort.prelabelled`), and both models,
from the confidences alone and from the signals, are fitted by ridge least squares. Prints their
cost capture on the fitting images (in-sample) and the two `SecondsModel(...)` lines to paste
into `engine/analysis/review_queue.py`; the last line is one JSON object.

    python benchmarks/fit_review_seconds.py [--model resources/models/demo] [--n 100] [--batches 6]
        [--seed 3101] [--size 256] [--ridge 1e-3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from engine.analysis.ne import align_predictions
from engine.analysis.review_effort import prelabelled
from engine.analysis.review_queue import (SIGNAL_FEATURES, SecondsModel, cost_capture, fit_seconds_model, most_first,
                                          normalized_gain, oracle_capture)
from engine.io.annotations import concat_annotations, load_annotations
from engine.model.package import load_model
from engine.model.uncertainty import SignalPipeline
from engine.synth import generate_dataset

REPO = Path(__file__).resolve().parents[1]


def signals_used(model: SecondsModel) -> bool:
    """Whether the model reads the uncertainty signals."""
    return model.features == SIGNAL_FEATURES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(REPO / "resources" / "models" / "demo"))
    p.add_argument("--n", type=int, default=100, help="images per seed")
    p.add_argument("--batches", type=int, default=6, help="seeds: seed, seed + 1, ...")
    p.add_argument("--seed", type=int, default=3101)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--ridge", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model = load_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        truth = concat_annotations(*(load_annotations(generate_dataset(root, args.n, seed=args.seed + k,
                                                                       split=f"fit{k}", size=args.size))
                                     for k in range(args.batches)))
        pipeline = SignalPipeline(model)
        pred, scores, errors = pipeline.predict(root, truth)
        if errors:
            raise RuntimeError(f"unreadable images: {sorted(errors)[:3]}")
        coords, vis, _ = align_predictions(truth, pred)
        signals = np.stack([pipeline.signals[str(i)] for i in truth.image_ids])
    seconds = prelabelled(truth, coords, vis).seconds
    scores = np.asarray(scores, np.float64)
    models = {"CONFIDENCE_MODEL": fit_seconds_model(seconds, scores, vis, None, args.ridge),
              "SIGNAL_MODEL": fit_seconds_model(seconds, scores, vis, signals, args.ridge)}
    oracle = oracle_capture(seconds)
    figures = {}
    for name, m in models.items():
        capture = cost_capture(seconds, most_first(m.expected_seconds(scores, vis, signals)))
        figures[name] = {"weights": m.weights, "capture": round(capture, 4),
                         "gain": round(normalized_gain(capture, oracle), 4)}
        features = "SIGNAL_FEATURES" if signals_used(m) else "CONFIDENCE_FEATURES"
        print(f"{name}: in-sample capture {capture:.3f} (oracle {oracle:.3f}, gain "
              f"{figures[name]['gain']:.2f})\n{name} = SecondsModel({features}, {m.weights!r})")
    print(json.dumps({"images": len(truth), "seeds": [args.seed + k for k in range(args.batches)],
                      "oracle": round(oracle, 4), "models": figures, "ridge": args.ridge,
                      "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
