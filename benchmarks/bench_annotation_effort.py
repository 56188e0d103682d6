"""Does the model save the reviewer work? A simulated reviewer (`engine.analysis.review_effort`)
with the demo model on two fresh batches, in one run:

(i)  ordinary synthetic images of seeds the model never saw: `--batches` batches of `--n` images,
     pooled (the spread of the share over the batches is printed: a batch of 100 images moves it
     by about a point either way);
(ii) a new domain: `fkp synth --layouts` with the real FashionAI `val.csv` (real garment geometry).

Figures, each batch: (a) seconds from scratch, (b) seconds pre-labelled by the model (goal:
b <= 20 % of a on (i), <= 40 % on (ii)); the review queue measured in seconds (issue 31, item 4,
`engine.analysis.review_queue`): cost capture, the share of the batch's correction seconds in the
queue's first 20 % (random order 0.20), beside the oracle's (images sorted by their true seconds)
and the normalized gain (ours - 0.2) / (oracle - 0.2), goal >= 0.5; the queue orders by expected
seconds from the uncertainty signals (`engine.model.uncertainty`, read off the same prediction),
and each signal alone and the old order (least mean confidence first) are printed beside it.
`--queue-only` runs (a), (b) and the queue alone. Then (c), the loop as a learning curve (issue 31):
the new domain is drawn with half of val.csv's rows as layouts; 100, 300 and 1,000 of those images
(`--curve`) are reviewed (they are the truth now) and join the training data (with an ordinary
replay set standing in for the model's own training data), the demo model is retrained each time
with the defaults of a retrain on reviewed images (`RetrainConfig.adapt()`; `--mode hard` for the
hard-set defaults), and `--n-relabel` other images of the new domain, drawn with the *other*
half's layouts, are pre-labelled again: their reviewer seconds as a share of before (goals
<= 85 % at 100, <= 70 % at 1,000) and their NE (goals <= 13 % at 100, <= 10 % at 1,000); batch
(i) is pre-labelled again too (what the adaptation costs the old domain, goal <= +5 %). Those
other images are the batch's unreviewed ones: self-training (`--self-training`) reads them,
unlabelled. `--plain-baseline` also fine-tunes the keypoint net plainly on the reviewed images
alone at each size (`fkp train-keypoints --init`: lr 3e-3, no replay, max(12, 6000 / n) epochs), the
strong baseline the adapt retrain is compared with. Beside it, the "home floor": (c) if the
retrained model did on the new domain as well as the demo model does on its own (batch (i)'s share
of the from-scratch seconds).

Predicted visibility: the model's visibility stage, when its package has one (the demo model's
does), marks points occluded; the toggles it saves are reported against predicting every point
visible, with how well it and the keypoint confidence separate occluded from visible points (AUC).
Refinement after a correction (issue 32 (a), `engine.model.refine`): on (i) and (ii), a reviewer
who fixes the worst point first, pre-labelled without refinement vs with the model re-decoding
the untouched points after each fix (shape model of 6,000 synthetic training-like layouts):
corrections per image (NoC) and seconds, against the goals (<= 14 % of from-scratch on (i),
<= 25 % on (ii), NoC down by a third on (ii)), and (a)'s bound: an oracle that knows the truth
moves each untouched point to the nearest of its candidates (its prediction, its vote peaks), the
best any re-decoding among the net's peaks can do. Beside (a), refinement (b)
(`engine.model.hint_refine`):
the keypoint net of `--hint-model` (a format-2 package whose net takes hints, made by
`fkp train-hints` from the demo model) re-predicts the untouched points on
the garment crop with the set points as hints after each fix; the pre-labels stay the demo
model's, so the three rows differ only in the refinement. `--refine-only` runs just that (no
retrain (c)), e.g. on smaller batches: `--refine-only --batches 2 --n-new 100 --threads 1`.

The last line printed is one JSON object of the figures.

    python benchmarks/bench_annotation_effort.py [--model resources/models/demo] [--n 100] [--batches 5]
        [--n-new 200] [--replay 200] [--size 256] [--seed 20261202] [--threads 2] [--mode adapt|hard]
        [--steps N] [--detector-steps N] [--curve 100,300,1000] [--plain-baseline] [--n-relabel 200] [--[no-]self-training]
        [--place 3 --drag 2 --toggle 0.5 --remove 0.5 --accept 0.5]
        [--refine-only] [--no-refine] [--queue-only] [--hint-model resources/models/demo-hints | --hint-model none]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from engine.analysis.ne import align_predictions, evaluate
from engine.analysis.review_effort import (ReviewCosts, corrected, from_scratch, image_confidence, occlusion_auc,
                                           prelabelled, queue_gain)
from engine.analysis.review_queue import (CONFIDENCE_MODEL, HEAD_SHARE, SIGNAL_MODEL, cost_capture, most_first,
                                          normalized_gain, oracle_capture)
from engine.io.annotations import Annotations, concat_annotations, load_annotations, save_annotations
from engine.io.images import read_image
from engine.model.checkpoints import keypoint_checkpoint, load_keypoint_net, save_checkpoint
from engine.model.package import TwoStageModel, load_model
from engine.model.pipeline import Pipeline
from engine.model.hint_refine import HintRefiner
from engine.model.refine import ImagePrediction, candidate_peaks, refine_points
from engine.model.uncertainty import SIGNALS, SignalPipeline
from engine.model.shape_model import ShapeModel, synthetic_shape_model
from engine.synth import generate_dataset
from engine.training.keypoints import train_keypoints
from engine.training.retrain import RetrainConfig, retrain
from engine.training.retrain_config import MODES

REPO = Path(__file__).resolve().parents[1]
VAL_CSV = REPO / "tests" / "data" / "fashionai" / "val.csv"


def _predict(model: TwoStageModel, root: Path, truth: Annotations) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coords, visibility, scores) aligned with `truth`'s rows, its categories given (a test split)."""
    pred, scores, errors = Pipeline(model).predict(root, truth)
    if errors:
        raise RuntimeError(f"unreadable images: {sorted(errors)[:3]}")
    coords, vis, matched = align_predictions(truth, pred)
    assert matched.all()
    return coords, vis, np.asarray(scores, np.float64)


def _predict_with_signals(model: TwoStageModel, root: Path,
                          truth: Annotations) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`_predict`'s (coords, visibility, scores), the same numbers, and the uncertainty signals (N, 24, S)."""
    pipeline = SignalPipeline(model)
    pred, scores, errors = pipeline.predict(root, truth)
    if errors:
        raise RuntimeError(f"unreadable images: {sorted(errors)[:3]}")
    coords, vis, matched = align_predictions(truth, pred)
    assert matched.all()
    signals = np.stack([pipeline.signals[str(i)] for i in truth.image_ids])
    return coords, vis, np.asarray(scores, np.float64), signals


def _queue(name: str, seconds: np.ndarray, scores: np.ndarray, vis: np.ndarray, signals: np.ndarray) -> dict:
    """Cost capture of the queue's first 20 % for each order tried, beside random order and the oracle."""
    predicted = vis >= 0
    keys = {"expected_s_signals": SIGNAL_MODEL.expected_seconds(scores, vis, signals),
            "expected_s_confidence": CONFIDENCE_MODEL.expected_seconds(scores, vis),
            "least_mean_confidence": -image_confidence(scores, vis),
            "predicted_points": predicted.sum(axis=1)}  # how much the point count alone earns
    # Each signal alone, summed over the image's predicted points (a sum counts the points too).
    keys.update({f"sum_{s}": np.where(predicted, signals[..., k], 0).sum(axis=1) for k, s in enumerate(SIGNALS)})
    oracle = oracle_capture(seconds)
    captures = {k: cost_capture(seconds, most_first(v)) for k, v in keys.items()}
    orders = {k: {"capture": round(c, 4), "gain": round(normalized_gain(c, oracle), 4)} for k, c in captures.items()}
    ours = orders["expected_s_signals"]
    head = max(1, int(round(HEAD_SHARE * len(seconds))))
    print(f"{name}, the queue's first 20 % ({head} of {len(seconds)} images), share of the "
          f"{seconds.sum():.0f} correction seconds: ours (expected seconds) {ours['capture']:.3f}, "
          f"oracle {oracle:.3f}, random {HEAD_SHARE:.2f}; normalized gain {ours['gain']:.2f} (goal >= 0.5: "
          f"{'met' if ours['gain'] >= 0.5 else 'NOT met'})")
    print("    orders tried (capture / gain): " + ", ".join(f"{k} {v['capture']:.3f} / {v['gain']:.2f}"
                                                            for k, v in orders.items()))
    return {"images": int(len(seconds)), "head_images": head, "seconds": round(float(seconds.sum()), 1),
            "random": HEAD_SHARE, "oracle": round(oracle, 4), "ours": ours["capture"], "gain": ours["gain"],
            "orders": orders}


def _batch(name: str, model, root: Path, truth: Annotations, costs: ReviewCosts, parts: int = 1) -> dict:
    """The figures of one batch; `parts` > 1: it is that many batches of equal size pooled, and the
    share of each is reported too."""
    coords, vis, scores, signals = _predict_with_signals(model, root, truth)
    all_visible = prelabelled(truth, coords, np.where(vis >= 0, 1, -1), costs)
    scratch, pre = from_scratch(truth, costs), prelabelled(truth, coords, vis, costs)
    confidence = image_confidence(scores, vis)
    figures = {
        "confidence_occlusion_auc": round(occlusion_auc(truth, scores, vis), 3),
        "toggles_all_visible": all_visible.counts()["toggle"], "toggles": pre.counts()["toggle"],
        "prelabelled_all_visible_s": round(all_visible.total, 1),
        "images": len(truth), "scratch_s": round(scratch.total, 1), "prelabelled_s": round(pre.total, 1),
        "prelabelled_share": round(pre.total / scratch.total, 4),
        "need_fix_share": round(float(pre.needs_fix.mean()), 4),
        "need_moving_share": round(float(pre.needs_moving.mean()), 4), "actions": pre.counts(),
    }
    if parts > 1:
        rows = np.array_split(np.arange(len(truth)), parts)
        figures["prelabelled_share_per_batch"] = [round(pre.subset(r).total / scratch.subset(r).total, 4)
                                                  for r in rows]
    print(f"{name}: {len(truth)} images, from scratch {scratch.total:.0f} s, pre-labelled {pre.total:.0f} s "
          f"({100 * figures['prelabelled_share']:.1f} %); {100 * figures['need_fix_share']:.0f} % need a fix, "
          f"{100 * figures['need_moving_share']:.0f} % a point moved; actions {pre.counts()}; "
          f"visibility toggles "
          f"{figures['toggles_all_visible']} if every point were visible (pre-labelled {all_visible.total:.0f} s); "
          f"confidence vs occlusion AUC {figures['confidence_occlusion_auc']:.3f}")
    if parts > 1:
        shares = figures["prelabelled_share_per_batch"]
        print(f"    per batch of {len(truth) // parts}: " + ", ".join(f"{100 * x:.1f} %" for x in shares)
              + f" (range {100 * min(shares):.1f}-{100 * max(shares):.1f} %)")
    figures["queue"] = _queue(name, pre.seconds, scores, vis, signals)
    return {**figures, "_confidence": confidence, "_effort": pre, "_coords": coords, "_vis": vis, "_scores": scores}


def _refinement(name: str, model: TwoStageModel, root: Path, truth: Annotations, batch: dict, shapes: ShapeModel,
                costs: ReviewCosts, goal_share: float, hint_model: TwoStageModel | None = None) -> dict:
    """Worst point first, without and with refinement after each fix ((a); (b) with `hint_model`):
    NoC and seconds."""
    pipeline = Pipeline(model)
    coords, vis, scores = batch["_coords"], batch["_vis"], batch["_scores"]
    cats = truth.categories.astype(np.int64)
    peaks, mass = [], []
    for s in range(0, len(truth), 16):
        images = [read_image(root / i, root) for i in truth.image_ids[s:s + 16]]
        p, m = candidate_peaks(pipeline, images, coords[s:s + 16], cats[s:s + 16])
        peaks.append(p)
        mass.append(m)
    peaks, mass = np.concatenate(peaks), np.concatenate(mass)
    predictions = [ImagePrediction(int(cats[i]), coords[i], scores[i], peaks[i], mass[i]) for i in range(len(truth))]
    timings: list[float] = []

    def refine(row: int, fixed: np.ndarray, xy: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        new = refine_points(shapes, predictions[row], fixed, xy)
        timings.append(time.perf_counter() - t0)
        return new

    def best_peak(row: int, fixed: np.ndarray, xy: np.ndarray) -> np.ndarray:
        # (a)'s bound: an oracle that knows the truth takes each untouched point's nearest candidate.
        return _nearest_candidates(predictions[row], truth.coords[row], fixed, xy)

    scratch = from_scratch(truth, costs).total
    without, with_ = corrected(truth, coords, vis, None, costs), corrected(truth, coords, vis, refine, costs)
    bound = corrected(truth, coords, vis, best_peak, costs)
    figures = {"images": len(truth), "scratch_s": round(scratch, 1),
               "without_s": round(without.total, 1), "without_share": round(without.total / scratch, 4),
               "without_noc": round(float(without.corrections.mean()), 3),
               "with_s": round(with_.total, 1), "with_share": round(with_.total / scratch, 4),
               "with_noc": round(float(with_.corrections.mean()), 3),
               "noc_change": round(float(with_.corrections.mean() / max(without.corrections.mean(), 1e-9) - 1), 4),
               "with_actions": with_.counts(), "goal_share": goal_share,
               "refine_ms_median": round(1000 * float(np.median(timings)), 2) if timings else None,
               "best_peak_share": round(bound.total / scratch, 4), "best_peak_noc": round(float(bound.corrections.mean()), 3),
               "best_peak_noc_change": round(float(bound.corrections.mean() / max(without.corrections.mean(), 1e-9) - 1), 4)}
    print(f"{name}, refinement after each fix ({len(truth)} images): without {without.total:.0f} s "
          f"({100 * figures['without_share']:.1f} % of from scratch; goal <= {100 * goal_share:.0f} %), "
          f"NoC {figures['without_noc']:.2f}; with (a) {with_.total:.0f} s ({100 * figures['with_share']:.1f} %), "
          f"NoC {figures['with_noc']:.2f} ({100 * figures['noc_change']:+.1f} %; goal on (ii) -33 %); "
          f"{len(timings)} refinements, median {figures['refine_ms_median']} ms; (a)'s bound, the nearest of each "
          f"point's candidates to the truth (an oracle): {bound.total:.0f} s ({100 * figures['best_peak_share']:.1f} %), "
          f"NoC {figures['best_peak_noc']:.2f} ({100 * figures['best_peak_noc_change']:+.1f} %)")
    if hint_model is not None:
        figures["b"] = _hinted(name, hint_model, root, truth, coords, vis, costs, scratch, without)
    return figures


def _nearest_candidates(pred: ImagePrediction, truth: np.ndarray, fixed: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """`xy` with every point not `fixed` moved to the candidate (its prediction or one of its vote
    peaks) nearest to `truth`: the best that choosing among the net's peaks can do."""
    cands = np.concatenate([pred.coords[:, None], pred.peaks], axis=1)                 # (24, 1 + P, 2)
    have = np.concatenate([np.ones((len(cands), 1), bool), pred.peak_mass > 0], axis=1)
    gap = np.where(have, np.hypot(*(cands - truth[:, None]).transpose(2, 0, 1)), np.inf)
    nearest = cands[np.arange(len(cands)), gap.argmin(axis=1)]
    return np.where(fixed[:, None], xy, nearest)


def _hinted(name: str, hint_model: TwoStageModel, root: Path, truth: Annotations, coords: np.ndarray,
            vis: np.ndarray, costs: ReviewCosts, scratch: float, without) -> dict:
    """Refinement (b): the hint-taking net re-predicts the untouched points after each fix."""
    refiner = HintRefiner(hint_model)
    cats = truth.categories.astype(np.int64)
    images = [read_image(root / i, root) for i in truth.image_ids]
    timings: list[float] = []

    def refine(row: int, fixed: np.ndarray, xy: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = refiner.refine(images[row], int(cats[row]), xy, fixed, vis[row]).coords
        timings.append(time.perf_counter() - t0)
        return out

    b = corrected(truth, coords, vis, refine, costs)
    figures = {"with_s": round(b.total, 1), "with_share": round(b.total / scratch, 4),
               "with_noc": round(float(b.corrections.mean()), 3),
               "noc_change": round(float(b.corrections.mean() / max(without.corrections.mean(), 1e-9) - 1), 4),
               "with_actions": b.counts(), "refinements": len(timings),
               "refine_ms_median": round(1000 * float(np.median(timings)), 2) if timings else None}
    print(f"{name}, refinement (b) after each fix (the hint-taking net): {b.total:.0f} s "
          f"({100 * figures['with_share']:.1f} % of from scratch), NoC {figures['with_noc']:.2f} "
          f"({100 * figures['noc_change']:+.1f} % against no refinement); {len(timings)} refinements, "
          f"median {figures['refine_ms_median']} ms")
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(REPO / "resources" / "models" / "demo"))
    p.add_argument("--n", type=int, default=100, help="images of each batch of (i)")
    p.add_argument("--batches", type=int, default=5, help="batches of (i), pooled (seeds seed, seed + 100, ...)")
    p.add_argument("--n-new", type=int, default=200, help="images of batch (ii), the new domain")
    p.add_argument("--replay", type=int, default=200, help="ordinary images standing in for the training data")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seed", type=int, default=20261202)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mode", choices=MODES, default="adapt",
                   help="the retrain's defaults: adapt (a retrain on reviewed images, the default) or hard")
    p.add_argument("--steps", type=int, help="retrain steps (default: the mode's)")
    p.add_argument("--detector-steps", type=int, help="detector retrain steps (default: the mode's)")
    p.add_argument("--curve", default="100,300,1000", help="reviewed images of the learning curve (c)")
    p.add_argument("--plain-baseline", action="store_true",
                   help="(c) also fine-tunes plainly at each size (the strong baseline, `fkp train-keypoints --init`: "
                        "the reviewed images alone, lr 3e-3, max(12, 6000 / n) epochs)")
    p.add_argument("--n-relabel", type=int, default=200, help="other images of the new domain pre-labelled again (c)")
    p.add_argument("--self-training", action=argparse.BooleanOptionalAction,
                   help="self-training on the other images in (c) (default: the mode's)")
    p.add_argument("--detector-check", action="store_true",
                   help="(c) also retrains at the first size with the mode's detector steps (when --detector-steps differs)")
    p.add_argument("--no-loop", action="store_true", help="only (a), (b) and the queue: no retrain (c)")
    p.add_argument("--refine-only", action="store_true",
                   help="(b) and the refinement comparison only: no retrain (c); for smaller batches")
    p.add_argument("--no-refine", action="store_true", help="leave out the refinement comparison")
    p.add_argument("--hint-model", default=str(REPO / "resources" / "models" / "demo-hints"),
                   help="a package whose keypoint net takes hints, for refinement (b) ('none': leave (b) out)")
    p.add_argument("--queue-only", action="store_true",
                   help="(a), (b) and the review queue's cost capture only: no refinement, no retrain (c)")
    for field in dataclasses.fields(ReviewCosts):
        p.add_argument(f"--{field.name}", type=float, default=field.default, help=f"seconds (default {field.default})")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    costs = ReviewCosts(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ReviewCosts)})
    model = load_model(args.model)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # One root, three splits: their ids never collide (they depend on seed and split).
        ordinary = concat_annotations(*(
            load_annotations(generate_dataset(root, args.n, seed=args.seed + 100 * k, split=f"ordinary{k or ''}",
                                              size=args.size)) for k in range(args.batches)))
        new = load_annotations(generate_dataset(root, args.n_new, seed=args.seed + 1, split="new", size=args.size,
                                                layouts=VAL_CSV))
        replay = load_annotations(generate_dataset(root, 0 if args.refine_only or args.queue_only else args.replay,
                                                   seed=args.seed + 2,
                                                   split="replay",
                                                   size=args.size))
        print(f"data: {args.batches} x {args.n} ordinary, {args.n_new} new-domain, {len(replay)} replay images at "
              f"{args.size} px ({time.perf_counter() - started:.0f} s); costs {dataclasses.asdict(costs)}")
        visibility = {"stage": model.visibility is not None, **model.metadata.get("visibility", {})}
        print("predicted visibility: " + ("the model's visibility stage" if visibility["stage"] else
                                          "none (the package has no visibility stage): every point visible"))
        i = _batch("(i) ordinary", model, root, ordinary, costs, args.batches)
        ii = _batch("(ii) new domain", model, root, new, costs)
        refined = {}
        if not (args.no_refine or args.queue_only):
            shapes = synthetic_shape_model(size=args.size)
            hint_model = None if args.hint_model == "none" else load_model(args.hint_model)
            refined = {"ordinary": _refinement("(i) ordinary", model, root, ordinary, i, shapes, costs, 0.14,
                                               hint_model),
                       "new": _refinement("(ii) new domain", model, root, new, ii, shapes, costs, 0.25, hint_model)}
            for key, label, goal in (("ordinary", "(i)", 14), ("new", "(ii)", 25)):
                r = refined[key]
                rows = [("without refinement", r["without_share"], r["without_noc"]), ("(a)", r["with_share"], r["with_noc"])]
                rows += [("(b)", r["b"]["with_share"], r["b"]["with_noc"])] if "b" in r else []
                rows += [("(a)'s bound (oracle among the peaks)", r["best_peak_share"], r["best_peak_noc"])]
                print(f"{label} % of from-scratch time / NoC: " + "; ".join(f"{n} {100 * sh:.1f} % / {noc:.2f}"
                                                                           for n, sh, noc in rows)
                      + f" (goal <= {goal} %" + (", NoC -33 %)" if key == "new" else ")"))
        loop = _loop(args, model, root, replay, costs, ordinary, i) if not (args.no_loop or
                                                                                   args.refine_only or
                                                                                   args.queue_only) else {}
    goals = {"i_prelabelled_le_20pct": i["prelabelled_share"] <= 0.20,
             "ii_prelabelled_le_40pct": ii["prelabelled_share"] <= 0.40,
             "queue_gain_ge_half_i": i["queue"]["gain"] >= 0.5, "queue_gain_ge_half_ii": ii["queue"]["gain"] >= 0.5,
             **({f"loop_{p['reviewed_images']}_share_le_{round(100 * p['goal_share'])}pct":
                 p["after_share"] <= p["goal_share"] for p in loop["curve"] if p["goal_share"]} if loop else {}),
             **({f"loop_{p['reviewed_images']}_ne_le_{round(100 * p['goal_ne'])}pct": p["ne_after"] <= p["goal_ne"]
                 for p in loop["curve"] if p["goal_ne"]} if loop else {}),
             **({f"loop_{p['reviewed_images']}_ordinary_le_plus5pct": p["ordinary_change"] <= 0.05
                 for p in loop["curve"]} if loop else {}),
             **({"i_refined_le_14pct": refined["ordinary"]["with_share"] <= 0.14,
                 "ii_refined_le_25pct": refined["new"]["with_share"] <= 0.25,
                 "ii_noc_down_a_third": refined["new"]["noc_change"] <= -1 / 3} if refined else {}),
             **({"i_b_le_14pct": refined["ordinary"]["b"]["with_share"] <= 0.14,
                 "ii_b_le_25pct": refined["new"]["b"]["with_share"] <= 0.25,
                 "ii_b_noc_down_a_third": refined["new"]["b"]["noc_change"] <= -1 / 3}
                if refined and "b" in refined["new"] else {})}
    print("goals: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in goals.items()))
    clean = {k: {kk: vv for kk, vv in d.items() if not kk.startswith("_")} for k, d in (("ordinary", i), ("new", ii))}
    print(json.dumps({**clean, "loop": loop, "refinement": refined, "visibility": visibility, "goals": goals,
                      "costs": dataclasses.asdict(costs),
                      "threads": args.threads, "load_average": round(os.getloadavg()[0], 2),
                      "seconds": round(time.perf_counter() - started, 1)}))


def _layout_halves(root: Path) -> tuple[Path, Path]:
    """val.csv's rows split in two (alternate rows; the header on each): the reviewed images' layouts
    and the re-labelled images' never meet."""
    lines = VAL_CSV.read_text(encoding="utf-8").splitlines(keepends=True)
    paths = root / "layouts_reviewed.csv", root / "layouts_other.csv"
    for k, path in enumerate(paths):
        path.write_text(lines[0] + "".join(lines[1 + k::2]), encoding="utf-8")
    return paths


def _loop(args, model, root: Path, replay: Annotations, costs: ReviewCosts, ordinary: Annotations, i: dict) -> dict:
    """(c), the loop as a learning curve: the new domain drawn with half of val.csv's layouts is
    reviewed (it is the truth now) and trained on, 100, 300, 1,000 images (`--curve`), each time from
    the demo model; then the other images of the new domain (`--n-relabel`, drawn with the other
    half's layouts; the batch's unreviewed images, which self-training and BatchNorm statistics may
    read unlabelled) are pre-labelled again, and batch (i) too (what the adaptation costs the old domain)."""
    sizes = sorted(int(x) for x in args.curve.split(","))
    reviewed_layouts, other_layouts = _layout_halves(root)
    pool = load_annotations(generate_dataset(root, max(sizes), seed=args.seed + 5, split="reviewed_pool",
                                             size=args.size, layouts=reviewed_layouts))
    other = load_annotations(generate_dataset(root, args.n_relabel, seed=args.seed + 6, split="relabel",
                                              size=args.size, layouts=other_layouts))
    coords, vis, _ = _predict(model, root, other)
    before = prelabelled(other, coords, vis, costs)
    before_ne = float(evaluate(other, _as_predictions(other, coords, vis), intersect=True).ne)
    home_floor = i["prelabelled_share"] * from_scratch(other, costs).total / before.total
    # The retrain's own before/after figures are not read here: measured on the annotated boxes (cheap).
    config = RetrainConfig.for_mode(args.mode, boxes="annotated", **{k: v for k, v in (("steps", args.steps),
                                                                    ("detector_steps", args.detector_steps))
                                                  if v is not None},
                                    **({"self_training": args.self_training} if args.self_training is not None
                                       else {}))
    print(f"(c) the loop as a learning curve: {len(other)} other images of the new domain (other layouts) "
          f"pre-labelled by the demo model: {before.total:.0f} s, NE {100 * before_ne:.2f} %; retrain: {config.mode} "
          f"mode, {config.steps} + {config.detector_steps} steps, lr {config.lr:g}, self-training "
          f"{'on' if config.self_training else 'off'}", flush=True)
    curve = []

    def scored(tuned: TwoStageModel):
        """A retrained model -> (the other images' review, their NE, batch (i)'s review seconds)."""
        coords, vis, _ = _predict(tuned, root, other)
        ne = float(evaluate(other, _as_predictions(other, coords, vis), intersect=True).ne)
        o_coords, o_vis, _ = _predict(tuned, root, ordinary)
        return prelabelled(other, coords, vis, costs), ne, prelabelled(ordinary, o_coords, o_vis, costs).total

    def retrained_on(n: int, retrain_config: RetrainConfig):
        """Retrain on the first `n` reviewed images -> (seconds, the other images' review after,
        their NE after, batch (i)'s review seconds after)."""
        reviewed = pool.subset(np.arange(n))
        t0 = time.perf_counter()
        result = retrain(model, root, concat_annotations(replay, reviewed), [str(x) for x in reviewed.image_ids],
                         retrain_config, unreviewed=other)
        return (time.perf_counter() - t0, *scored(result.model))

    init = root / "plain_init.pt"  # the demo's keypoint net as a checkpoint, where each plain fine-tune starts

    def plain_fine_tune(n: int) -> dict:
        """The strong baseline at `n` reviewed images: `fkp train-keypoints --init` from the demo's
        keypoint net on them alone (peak lr 3e-3, BatchNorm training, no replay, augmented, a fresh
        schedule), the demo's detector kept."""
        reviewed = pool.subset(np.arange(n))
        save_annotations(reviewed, root / "Annotations" / f"plain_{n}.csv")
        out = root / f"plain_{n}.pt"
        epochs = max(12, math.ceil(6000 / n))
        t0 = time.perf_counter()
        train_keypoints(root, model.preset, out, epochs=epochs, init=init, train_split=f"plain_{n}",
                        val_split="plain_val", lr=3e-3, seed=args.seed)
        seconds = time.perf_counter() - t0
        net, _, _ = load_keypoint_net(out)
        after, ne, ordinary_after = scored(dataclasses.replace(model, keypoint_net=net))
        point = {"epochs": epochs, "train_s": round(seconds, 1), "after_share": round(after.total / before.total, 4),
                 "ne_after": round(ne, 5), "ordinary_change": round(ordinary_after / i["prelabelled_s"] - 1, 4)}
        print(f"    {n} reviewed, plain fine-tune ({epochs} epochs, {seconds / 60:.1f} min): "
              f"{100 * point['after_share']:.1f} % of before, NE {100 * ne:.2f} %, batch (i) "
              f"{100 * point['ordinary_change']:+.1f} %", flush=True)
        return point

    if args.plain_baseline:  # where it starts, and its validation images (logged only: the last epoch counts)
        save_checkpoint(init, keypoint_checkpoint(model.keypoint_net, model.preset))
        generate_dataset(root, 50, seed=args.seed + 9, split="plain_val", size=args.size, layouts=reviewed_layouts)
    for n in sizes:
        retrain_s, after, after_ne, ordinary_after = retrained_on(n, config)
        goal_share, goal_ne = (0.85, 0.13) if n <= 100 else (0.70, 0.10) if n >= 1000 else (None, None)
        point = {"reviewed_images": n, "after_s": round(after.total, 1), "after_share": round(after.total / before.total, 4),
                 "ne_before": round(before_ne, 5), "ne_after": round(after_ne, 5),
                 "ordinary_before_s": i["prelabelled_s"], "ordinary_after_s": round(ordinary_after, 1),
                 "ordinary_change": round(ordinary_after / i["prelabelled_s"] - 1, 4),
                 "retrain_s": round(retrain_s, 1), "goal_share": goal_share, "goal_ne": goal_ne,
                 "after_actions": after.counts(), "after_need_fix_share": round(float(after.needs_fix.mean()), 4)}
        curve.append(point)
        goals = (f"goals <= {100 * goal_share:.0f} % and NE <= {100 * goal_ne:.0f} %: "
                 f"{'met' if point['after_share'] <= goal_share else 'NOT met'} / "
                 f"{'met' if after_ne <= goal_ne else 'NOT met'}; " if goal_share else "")
        print(f"    {n} reviewed ({retrain_s / 60:.1f} min): the other images {before.total:.0f} s -> "
              f"{after.total:.0f} s ({100 * point['after_share']:.1f} % of before), NE {100 * before_ne:.2f} -> "
              f"{100 * after_ne:.2f} %; {goals}batch (i) {i['prelabelled_s']:.0f} s -> {ordinary_after:.0f} s "
              f"({100 * point['ordinary_change']:+.1f} %, goal <= +5 %: "
              f"{'met' if point['ordinary_change'] <= 0.05 else 'NOT met'})", flush=True)
        if args.plain_baseline:
            point["plain"] = plain_fine_tune(n)
    detector_check = {}
    if args.detector_check:
        # What the detector's fine-tuning adds: the first size again with the mode's detector steps.
        n, det_config = sizes[0], RetrainConfig.for_mode(args.mode, boxes="annotated",
                                                         **{k: v for k, v in (("steps", args.steps),)
                                                                       if v is not None})
        retrain_s, after, after_ne, ordinary_after = retrained_on(n, det_config)
        detector_check = {"reviewed_images": n, "detector_steps": det_config.detector_steps,
                          "after_share": round(after.total / before.total, 4), "ne_after": round(after_ne, 5),
                          "ordinary_change": round(ordinary_after / i["prelabelled_s"] - 1, 4),
                          "retrain_s": round(retrain_s, 1)}
        print(f"    {n} reviewed with the mode's {det_config.detector_steps} detector steps ({retrain_s / 60:.1f} min): "
              f"{100 * detector_check['after_share']:.1f} % of before, NE {100 * after_ne:.2f} %, batch (i) "
              f"{100 * detector_check['ordinary_change']:+.1f} %", flush=True)
    print(f"    as well as at home (batch (i)'s share of the from-scratch seconds): {100 * home_floor:.1f} % of before")
    return {"mode": config.mode, "steps": config.steps, "detector_steps": config.detector_steps, "lr": config.lr,
            "self_training": config.self_training, "relabelled_images": len(other), "before_s": round(before.total, 1),
            "ne_before": round(before_ne, 5), "home_floor_share": round(home_floor, 4), "curve": curve,
            "detector_check": detector_check}


def _as_predictions(truth: Annotations, coords: np.ndarray, vis: np.ndarray) -> Annotations:
    return Annotations.from_arrays([str(x) for x in truth.image_ids], truth.categories, coords, vis)


if __name__ == "__main__":
    main()
