"""Which adapt-retrain recipe learns a new domain without losing the old one (issue 31, item 1)?

The data are built as in `bench_annotation_effort.py`'s loop (c): the new domain is
`fkp synth --layouts` with half of the rows of `tests/data/fashionai/val.csv` (real garment
geometry); `--reviewed` of those images are the reviewed ones trained on (beside `--replay`
ordinary synthetic images standing in for the model's training data), and the retrained keypoint
network is tested on `--n-test` images drawn with the *other* half's layouts (the batch's
unreviewed images: self-training and BatchNorm statistics may read them, unlabelled, as the
studio's batch would offer them) and on `--n-test` ordinary synthetic images of an unseen seed
(the old domain). NE is the keypoint network's on crops at the annotated boxes (no detector:
the detector is the same for every recipe and `bench_annotation_effort.py` measures the whole
pipeline). Each recipe is a set of `RetrainConfig` fields (`RECIPES`; no detector steps);
`--keep` also scores each retrained network with a share of the starting weights mixed back in
(`RetrainConfig.keep_share`), which costs no training; every result is appended to `--out` (JSON lines) as it comes, so a long search
can be read while it runs. The last line printed is one JSON object.

    python benchmarks/search_adapt_recipe.py [--recipes NAME,...] [--steps 300] [--reviewed 100]
        [--replay 200] [--n-test 100] [--size 256] [--seed 20261202] [--threads 1] [--out results.jsonl]
        [--list]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from engine.analysis.ne import evaluate
from engine.io.annotations import concat_annotations, load_annotations
from engine.model.package import load_model
from engine.synth import generate_dataset
from engine.training.retrain import RetrainConfig, mix_weights, predict_annotated_boxes, retrain

REPO = Path(__file__).resolve().parents[1]
VAL_CSV = REPO / "tests" / "data" / "fashionai" / "val.csv"

# The recipes tried, as RetrainConfig fields over BASE (the fields not named are RetrainConfig's
# defaults: distilled replay, BatchNorm frozen, all layers, warm-up 0.1 and cosine, no weight mixing,
# no self-training); "adapt_default" is RetrainConfig.adapt() as it is.
BASE = dict(mode="adapt", detector_steps=0, boxes="annotated")
RECIPES: dict[str, dict] = {
    "adapt_default": {},
    # What the adapt mode was before this search (lr 3e-4, distilled replay, BatchNorm frozen).
    "old_adapt": dict(lr=3e-4, hard_share=0.75),
    # `fkp train-keypoints --init` on the reviewed images alone: peak 3e-3, BatchNorm training, no replay.
    "plain_finetune": dict(lr=3e-3, hard_share=1.0, freeze_batchnorm=False),
    "lr3e-3_distill25": dict(lr=3e-3, hard_share=0.75),
    "lr1e-3_distill25": dict(lr=1e-3, hard_share=0.75),
    "lr3e-3_distill50": dict(lr=3e-3, hard_share=0.5),
    "lr3e-3_annotated25": dict(lr=3e-3, hard_share=0.75, distill_replay=False),
    "lr3e-3_distill25_bntrain": dict(lr=3e-3, hard_share=0.75, freeze_batchnorm=False),
    "lr3e-3_distill25_after_encoder": dict(lr=3e-3, hard_share=0.75, train_layers="after_encoder"),
    "lr3e-3_distill25_bn_new": dict(lr=3e-3, hard_share=0.75, reestimate_batchnorm=True, batchnorm_images="new"),
    "lr3e-3_distill25_bn_unreviewed": dict(lr=3e-3, hard_share=0.75, reestimate_batchnorm=True,
                                           batchnorm_images="unreviewed"),
    "lr3e-3_distill25_self": dict(lr=3e-3, hard_share=0.5, self_training=True, pseudo_share=0.25),
    "lr6e-3_distill25": dict(lr=6e-3, hard_share=0.75),
    "lr3e-3_distill12": dict(lr=3e-3, hard_share=0.875),
    "lr1e-3_distill25_bntrain": dict(lr=1e-3, hard_share=0.75, freeze_batchnorm=False),
    "lr1e-3_distill50": dict(lr=1e-3, hard_share=0.5),
    "lr3e-4_distill50": dict(lr=3e-4, hard_share=0.5),
    "lr3e-4_distill75": dict(lr=3e-4, hard_share=0.25),
    "lr3e-4_distill88": dict(lr=3e-4, hard_share=0.125),
    "lr3e-4_distill88_bntrain": dict(lr=3e-4, hard_share=0.125, freeze_batchnorm=False),
    "lr1e-4_distill50": dict(lr=1e-4, hard_share=0.5),
    "lr3e-4_annotated50": dict(lr=3e-4, hard_share=0.5, distill_replay=False),
    "lr3e-4_distill50_bntrain": dict(lr=3e-4, hard_share=0.5, freeze_batchnorm=False),
    "lr3e-4_distill50_bn_new": dict(lr=3e-4, hard_share=0.5, reestimate_batchnorm=True, batchnorm_images="new"),
    "lr3e-4_distill50_self": dict(lr=3e-4, hard_share=0.375, self_training=True, pseudo_share=0.125),
    "lr3e-4_distill50_after_encoder": dict(lr=3e-4, hard_share=0.5, train_layers="after_encoder"),
    "lr1e-3_annotated25": dict(lr=1e-3, hard_share=0.75, distill_replay=False),
    "lr1e-3_distill25_bn_new": dict(lr=1e-3, hard_share=0.75, reestimate_batchnorm=True, batchnorm_images="new"),
    "lr1e-3_distill25_self": dict(lr=1e-3, hard_share=0.5, self_training=True, pseudo_share=0.25),
    "lr1e-3_distill25_after_encoder": dict(lr=1e-3, hard_share=0.75, train_layers="after_encoder"),
}


def halves(csv: Path, out: Path) -> tuple[Path, Path]:
    """`csv`'s rows split in two (alternate rows), each written with the header: the layouts of the
    reviewed images and those of the test images never meet."""
    lines = csv.read_text(encoding="utf-8").splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    paths = out / "layouts_a.csv", out / "layouts_b.csv"
    for k, path in enumerate(paths):
        path.write_text(header + "".join(rows[k::2]), encoding="utf-8")
    return paths


def build_data(root: Path, reviewed: int, replay: int, n_test: int, size: int, seed: int):
    """(training annotations, reviewed ids, unreviewed new-domain test set, old-domain test set);
    generated once per root (the same seed gives the same files)."""
    root.mkdir(parents=True, exist_ok=True)
    a, b = halves(VAL_CSV, root)

    def split(name: str, n: int, s: int, layouts=None):
        csv = root / "Annotations" / f"{name}.csv"
        if not csv.exists():
            generate_dataset(root, n, seed=s, split=name, size=size, layouts=layouts, workers=1)
        return load_annotations(csv)

    new_train = split(f"new_a_{reviewed}", reviewed, seed + 1, a)
    new_test = split(f"new_b_{n_test}", n_test, seed + 3, b)
    old_test = split(f"old_{n_test}", n_test, seed + 4)
    replay_set = split(f"replay_{replay}", replay, seed + 2)
    training = concat_annotations(replay_set, new_train)
    return training, [str(i) for i in new_train.image_ids], new_test, old_test


def keypoint_ne(net, preset, root: Path, truth) -> float:
    pred = predict_annotated_boxes(net, preset, root, truth, torch.device("cpu"), 16)
    return float(evaluate(truth, pred, intersect=True).ne)


def mixed_copy(trained: torch.nn.Module, start: torch.nn.Module, keep: float) -> torch.nn.Module:
    """A copy of `trained` with `keep` of `start`'s weights mixed in (`RetrainConfig.keep_share`'s rule)."""
    out = copy.deepcopy(trained)
    mix_weights(out, start, keep)
    return out.eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(REPO / "resources" / "models" / "demo"))
    p.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated names (--list shows them)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--reviewed", type=int, default=100)
    p.add_argument("--replay", type=int, default=200)
    p.add_argument("--n-test", type=int, default=100)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seed", type=int, default=20261202)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default=None, help="data folder (kept between runs; default: a folder under /tmp)")
    p.add_argument("--out", default=None, help="JSON lines file the results are appended to")
    p.add_argument("--set", action="append", default=[],
                   help="FIELD=VALUE over every recipe (e.g. steps=600), JSON values")
    p.add_argument("--keep", default="", help="comma-separated shares of the starting weights mixed back in, "
                                              "each evaluated after every recipe (e.g. 0.3,0.5)")
    p.add_argument("--list", action="store_true")
    args = p.parse_args()
    if args.list:
        for k, v in RECIPES.items():
            print(k, v)
        return
    torch.set_num_threads(args.threads)
    extra = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    root = Path(args.data or f"/tmp/fkp_adapt_search_{args.size}_{args.seed}")
    started = time.perf_counter()
    training, reviewed, new_test, old_test = build_data(root, args.reviewed, args.replay, args.n_test, args.size,
                                                        args.seed)
    model = load_model(args.model)
    net, preset = model.keypoint_net.eval(), model.preset
    base = {"new_ne": keypoint_ne(net, preset, root, new_test), "old_ne": keypoint_ne(net, preset, root, old_test)}
    print(f"data: {len(reviewed)} reviewed + {len(training) - len(reviewed)} replay, {len(new_test)} new-domain "
          f"and {len(old_test)} ordinary test images ({time.perf_counter() - started:.0f} s); the model as it is: "
          f"new-domain NE {100 * base['new_ne']:.2f} %, ordinary {100 * base['old_ne']:.2f} %", flush=True)
    rows = []
    for name in args.recipes.split(","):
        if name == "adapt_default":  # RetrainConfig.adapt() as it is now (no detector steps)
            config = RetrainConfig.adapt(detector_steps=0, boxes="annotated", **extra)
            fields = {k: getattr(config, k) for k in ("steps", "lr", "hard_share", "keep_share", "self_training")}
        else:
            fields = {"steps": args.steps, **RECIPES[name], **extra}
            config = RetrainConfig(**{**BASE, **fields})
        t0 = time.perf_counter()
        result = retrain(model, root, training, reviewed, config, holdout_ids=[], unreviewed=new_test)
        minutes = (time.perf_counter() - t0) / 60
        new_net = result.model.keypoint_net.eval()
        row = {"recipe": name, "fields": fields, "reviewed": len(reviewed),
               "new_ne": round(keypoint_ne(new_net, preset, root, new_test), 5),
               "old_ne": round(keypoint_ne(new_net, preset, root, old_test), 5),
               "reviewed_ne_after": round(result.after.hard, 5), "minutes": round(minutes, 2),
               "final_loss": round(float(np.mean(result.losses[-10:])), 5)}
        row["new_change"] = round(row["new_ne"] / base["new_ne"] - 1, 4)
        row["old_change"] = round(row["old_ne"] / base["old_ne"] - 1, 4)
        rows.append(row)
        print(f"{name:<34} new {100 * row['new_ne']:6.2f} % ({100 * row['new_change']:+.1f} %)  old "
              f"{100 * row['old_ne']:5.2f} % ({100 * row['old_change']:+.1f} %)  {minutes:.1f} min  {fields}",
              flush=True)
        # The retrained weights mixed with the starting ones (weight-space ensembling, WiSE-FT):
        # each share of the starting weights kept costs one evaluation, no training.
        for keep in [float(x) for x in args.keep.split(",") if x]:
            mixed = mixed_copy(new_net, net, keep)
            extra_row = {**row, "recipe": f"{name}+keep{keep:g}", "fields": {**fields, "keep_share": keep},
                         "new_ne": round(keypoint_ne(mixed, preset, root, new_test), 5),
                         "old_ne": round(keypoint_ne(mixed, preset, root, old_test), 5)}
            extra_row["new_change"] = round(extra_row["new_ne"] / base["new_ne"] - 1, 4)
            extra_row["old_change"] = round(extra_row["old_ne"] / base["old_ne"] - 1, 4)
            rows.append(extra_row)
            print(f"{extra_row['recipe']:<34} new {100 * extra_row['new_ne']:6.2f} % "
                  f"({100 * extra_row['new_change']:+.1f} %)  old {100 * extra_row['old_ne']:5.2f} % "
                  f"({100 * extra_row['old_change']:+.1f} %)", flush=True)
            if args.out:
                with open(args.out, "a", encoding="utf-8") as f:
                    f.write(json.dumps({**extra_row, "base": base, "steps": args.steps, "threads": args.threads}) + "\n")
        if args.out:
            with open(args.out, "a", encoding="utf-8") as f:
                f.write(json.dumps({**row, "base": base, "steps": args.steps, "threads": args.threads}) + "\n")
    print(json.dumps({"base": base, "results": rows, "threads": args.threads,
                      "load_average": round(os.getloadavg()[0], 2),
                      "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
