"""The value of the hard-example loop on synthetic data (goal: hard-kind NE -20 % relative,
ordinary NE at most +5 % relative).

In one run, from one model package (the demo model by default):
1. synthesize a pool rich in hard cases (`--hard-fraction`), a *separate* evaluation set of
   the same hard kinds (every image hard) and an evaluation set of ordinary images;
2. predict the pool with the model and rank its images by NE; the worst `--worst` become the
   hard set (what a user does with "add the worst N by NE");
3. retrain on them (`engine.training.retrain`: hard crops oversampled, replay of the rest of the pool,
   OHEM, replay distilled from the model) for `--steps` steps, then the detector on the same
   images for `--detector-steps`;
4. score the model before (the baseline) and after on both evaluation sets, with the whole
   two-stage pipeline, and per hard kind.

The machine is shared: the 1-minute load average before and after is printed. The last line
printed is one JSON object of the figures.

    python benchmarks/bench_retrain_loop.py [--model resources/models/demo] [--pool 300] [--worst 60]
        [--eval-hard 100] [--eval-ordinary 100] [--steps 600] [--lr 3e-4] [--hard-share 0.5]
        [--detector-steps 300] [--detector-lr 3e-4] [--no-ohem-per-group] [--no-distill-replay] [--holdout 20] [--size 512] [--threads 2]
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

from engine.io.annotations import Annotations, load_annotations
from engine.analysis.ne import evaluate, pooled_ne
from engine.model.package import TwoStageModel, load_model
from engine.model.pipeline import Pipeline
from engine.training.retrain import RetrainConfig, retrain, save_retrained
from engine.synth import generate_dataset, load_hard_kinds

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "resources" / "models" / "demo"


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def _predict(model: TwoStageModel, root: Path, ann: Annotations) -> tuple[Annotations, float]:
    t0 = time.perf_counter()
    pred, _, errors = Pipeline(model, batch_size=8).predict(root, ann)
    if errors:
        raise SystemExit(f"unreadable images: {errors}")
    return pred, time.perf_counter() - t0


def _scores(model: TwoStageModel, root: Path, ann: Annotations, kinds: dict[str, str]) -> dict:
    """NE overall and per hard kind (images without a kind count as 'ordinary')."""
    pred, seconds = _predict(model, root, ann)
    result = evaluate(ann, pred)
    kind_of = np.array([kinds.get(str(i), "ordinary") for i in ann.image_ids])
    per_kind = {kind: pooled_ne(result.per_image_errors[kind_of == kind]) for kind in sorted(set(kind_of))}
    return {"ne": result.ne, "per_kind": per_kind, "images": len(ann), "images_per_s": len(ann) / seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL), help="model package (default: the demo model)")
    ap.add_argument("--pool", type=int, default=300, help="images in the pool that is ranked (default 300)")
    ap.add_argument("--hard-fraction", type=float, default=0.6, help="share of hard cases in the pool (default 0.6)")
    ap.add_argument("--worst", type=int, default=60, help="worst-ranked pool images retrained on (default 60)")
    ap.add_argument("--eval-hard", type=int, default=100, help="held-out hard images (default 100)")
    ap.add_argument("--eval-ordinary", type=int, default=100, help="held-out ordinary images (default 100)")
    ap.add_argument("--steps", type=int, default=RetrainConfig.steps)
    ap.add_argument("--lr", type=float, default=RetrainConfig.lr)
    ap.add_argument("--hard-share", type=float, default=RetrainConfig.hard_share)
    ap.add_argument("--batch-size", type=int, help="default: the model preset's")
    ap.add_argument("--ohem-per-group", action=argparse.BooleanOptionalAction, default=RetrainConfig.ohem_per_group,
                    help="OHEM ranks hard-set and replayed crops apart (default; --no-ohem-per-group: together)")
    ap.add_argument("--detector-steps", type=int, default=RetrainConfig.detector_steps,
                    help=f"detector fine-tuning steps after the keypoint network's (default "
                         f"{RetrainConfig.detector_steps}; 0 keeps it)")
    ap.add_argument("--detector-lr", type=float, default=RetrainConfig.detector_lr)
    ap.add_argument("--distill-replay", action=argparse.BooleanOptionalAction, default=RetrainConfig.distill_replay,
                    help="replayed crops learn the starting model's outputs (default; --no-distill-replay: "
                         "their annotations)")
    ap.add_argument("--holdout", type=int, default=20, help="pool images held out of the retrain (default 20)")
    ap.add_argument("--size", type=int, default=512, help="synthetic image side (default 512)")
    ap.add_argument("--categories", default=None, help="comma-separated categories (default all five)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--work", help="keep the synthetic data here (default: a temporary folder)")
    ap.add_argument("--save", help="also write the retrained model package here (to look into it afterwards)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = _load()
    t_start = time.perf_counter()

    model = load_model(args.model)
    tmp = tempfile.TemporaryDirectory() if not args.work else None
    root = Path(args.work or tmp.name)
    s = args.seed
    for split, n, frac, seed in (("pool", args.pool, args.hard_fraction, s), ("eval_hard", args.eval_hard, 1.0, s + 1),
                                 ("eval_ordinary", args.eval_ordinary, 0.0, s + 2)):
        if not (root / "Annotations" / f"{split}.csv").is_file():
            generate_dataset(root, n, seed=seed, split=split, size=args.size, categories=args.categories,
                             hard_fraction=frac, workers=1)
    pool = load_annotations(root / "Annotations" / "pool.csv")
    eval_hard = load_annotations(root / "Annotations" / "eval_hard.csv")
    eval_ordinary = load_annotations(root / "Annotations" / "eval_ordinary.csv")
    kinds_pool = load_hard_kinds(root, "pool")
    kinds_eval = load_hard_kinds(root, "eval_hard")

    # Rank the pool by NE, as the studio's list sorted by NE does.
    pred, predict_s = _predict(model, root, pool)
    per_image = evaluate(pool, pred).per_image
    order = np.argsort(np.where(np.isfinite(per_image), -per_image, np.inf), kind="stable")
    worst = [str(pool.image_ids[i]) for i in order[:args.worst]]
    worst_hard_share = float(np.mean([w in kinds_pool for w in worst]))
    print(f"pool: {len(pool)} images ({len(kinds_pool)} hard) predicted in {predict_s:.0f} s; "
          f"worst {len(worst)}: {100 * worst_hard_share:.0f} % hard cases")

    config = RetrainConfig(steps=args.steps, lr=args.lr, hard_share=args.hard_share, batch_size=args.batch_size,
                           seed=args.seed, holdout_fraction=0.5, max_holdout=args.holdout,
                           ohem_per_group=args.ohem_per_group, distill_replay=args.distill_replay,
                           detector_steps=args.detector_steps, detector_lr=args.detector_lr)
    t0 = time.perf_counter()
    result = retrain(model, root, pool, worst, config,
                     on_step=lambda step, n, loss: print(f"  step {step}/{n} loss {loss:.4f}", flush=True)
                     if step % max(1, n // 10) == 0 else None)
    retrain_s = time.perf_counter() - t0
    if args.save:
        save_retrained(result, args.save, parent=str(args.model))

    before_hard = _scores(model, root, eval_hard, kinds_eval)
    after_hard = _scores(result.model, root, eval_hard, kinds_eval)
    before_ord = _scores(model, root, eval_ordinary, {})
    after_ord = _scores(result.model, root, eval_ordinary, {})
    hard_change = after_hard["ne"] / before_hard["ne"] - 1
    ord_change = after_ord["ne"] / before_ord["ne"] - 1

    print(f"retrain: {args.steps} keypoint + {args.detector_steps} detector steps in {retrain_s:.0f} s, "
          f"{len(result.hard_ids)} hard + {result.replay_images} replay images")
    print(f"{'':24s} {'before':>8s} {'after':>8s} {'change':>8s}")
    print(f"{'held-out hard kinds':24s} {100 * before_hard['ne']:7.2f}% {100 * after_hard['ne']:7.2f}% "
          f"{100 * hard_change:+7.1f}%   (goal <= -20 %)")
    for kind in before_hard["per_kind"]:
        b, a = before_hard["per_kind"][kind], after_hard["per_kind"][kind]
        print(f"  {kind:22s} {100 * b:7.2f}% {100 * a:7.2f}% {100 * (a / b - 1):+7.1f}%")
    print(f"{'held-out ordinary':24s} {100 * before_ord['ne']:7.2f}% {100 * after_ord['ne']:7.2f}% "
          f"{100 * ord_change:+7.1f}%   (goal <= +5 %)")
    load_after = _load()
    print(f"cores {os.cpu_count()}, torch threads {torch.get_num_threads()}, load average {load_before:.1f} -> "
          f"{load_after:.1f}, total {time.perf_counter() - t_start:.0f} s")
    print(json.dumps({
        "model": str(args.model), "pool": len(pool), "worst": len(worst), "worst_hard_share": worst_hard_share,
        "steps": args.steps, "lr": args.lr, "hard_share": args.hard_share, "ohem_per_group": args.ohem_per_group,
        "distill_replay": args.distill_replay, "detector_steps": args.detector_steps,
        "detector_lr": args.detector_lr,
        "size": args.size,
        "hard_ne_before": before_hard["ne"], "hard_ne_after": after_hard["ne"], "hard_change": hard_change,
        "hard_per_kind_before": before_hard["per_kind"], "hard_per_kind_after": after_hard["per_kind"],
        "ordinary_ne_before": before_ord["ne"], "ordinary_ne_after": after_ord["ne"], "ordinary_change": ord_change,
        "goal_hard": hard_change <= -0.20, "goal_ordinary": ord_change <= 0.05,
        "retrain_s": retrain_s, "predict_images_per_s": len(pool) / predict_s,
        "load_before": load_before, "load_after": load_after, "cpu_count": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
