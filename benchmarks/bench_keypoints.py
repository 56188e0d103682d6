"""Accuracy and speed of a trained keypoint net on ground-truth crops of held-out images.

Measures, in one run, on `<data>/Annotations/<split>.csv`:
- NE with the method's decoder (Hough voting of heatmap-weighted offsets, sub-pixel refined),
  against the baseline of the same network decoded by plain heatmap argmax (the cell centre
  of the most confident cell, offsets ignored): the ratio says what the offsets buy;
- NE per category;
- inference speed (forward + decode) in crops/s with the torch threads given;
and, with `--curve PNG`, plots the checkpoint's training history (validation NE and training
loss against images seen). The machine is shared: the 1-minute load average is printed.
The last line printed is one JSON object.

    python benchmarks/bench_keypoints.py --checkpoint CKPT --data ROOT [--split val] [--limit 600]
        [--threads 1] [--curve docs/lite_training_curve.png]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from engine.model.checkpoints import load_keypoint_net
from engine.training.dataset import CropSubset, KeypointCropDataset
from engine.schema import CATEGORIES
from engine.training.keypoints import predict_dataset, validate


def heatmap_argmax(stride: int):
    """Baseline decoder: the centre of the highest-probability cell of each heatmap."""
    def decoder(out: torch.Tensor):
        b, c, h, w = out.shape
        k = c // 3
        heat = out[:, :k].reshape(b, k, h * w)
        best = heat.argmax(dim=2)
        x = (best % w).float() * stride + (stride - 1) / 2.0
        y = torch.div(best, w, rounding_mode="floor").float() * stride + (stride - 1) / 2.0
        return torch.stack([x, y], dim=2), torch.sigmoid(heat.max(dim=2).values)
    return decoder


def per_category(model, ds, preset) -> dict[str, float]:
    from engine.analysis.ne import normalized_errors
    from engine.schema import CATEGORY_MASK

    idx, pred, _ = predict_dataset(model, ds, preset)
    cats = ds.categories[idx]
    err = normalized_errors(ds.coords[idx], ds.visibility[idx], cats, pred,
                            np.where(CATEGORY_MASK[cats], 1, -1).astype(np.int8)).errors
    out = {}
    for c, name in enumerate(CATEGORIES):
        e = err[cats == c]
        e = e[np.isfinite(e)]
        if e.size:
            out[name] = float(e.mean())
    return out


def plot_curve(history: list[dict], path: str, title: str, earlier: list[dict] | None = None) -> None:
    """Validation NE and training loss per epoch; `earlier`: the run this one started from (--init)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    earlier = earlier or []
    offset_seen = earlier[-1]["images_seen"] if earlier else 0
    offset_s = earlier[-1].get("train_seconds", 0.0) if earlier else 0.0
    history = earlier + [{**h, "images_seen": h["images_seen"] + offset_seen,
                          "train_seconds": h.get("train_seconds", np.nan) + offset_s} for h in history]
    seen = np.array([h["images_seen"] for h in history]) / 1000.0
    minutes = np.array([h.get("train_seconds", np.nan) for h in history]) / 60.0
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(seen, [100 * h["val_ne"] for h in history], "o-", color="C0", label="validation NE (GT crops)")
    ax.set_xlabel("training images seen (thousands)")
    ax.set_ylabel("validation NE (%)", color="C0")
    if earlier:
        ax.axvline(offset_seen / 1000.0, color="grey", ls=":", lw=1)
        ax.text(offset_seen / 1000.0, ax.get_ylim()[1], " second cosine cycle (--init)", fontsize=7, va="top", color="grey")
    for x, m, h in zip(seen, minutes, history):
        ax.annotate(f"{100 * h['val_ne']:.2f}%\n{m:.0f} min", (x, 100 * h["val_ne"]), textcoords="offset points",
                    xytext=(0, 8), ha="center", fontsize=7)
    ax2 = ax.twinx()
    ax2.plot(seen, [h["train_loss"] for h in history], "s--", color="C1", label="training loss (last stage)")
    ax2.set_ylabel("training loss", color="C1")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, default=600)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--curve", help="write the training curve of the checkpoint to this PNG")
    ap.add_argument("--earlier", help="checkpoint of the run this one started from (--init), drawn first in the curve")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model, preset, ckpt = load_keypoint_net(args.checkpoint)
    ds = KeypointCropDataset(args.data, os.path.join(args.data, "Annotations", f"{args.split}.csv"), preset)
    if args.limit and args.limit < len(ds):
        ds = CropSubset(ds, np.arange(args.limit))

    load_before = os.getloadavg()[0]
    hough = validate(model, ds, preset)
    argmax = validate(model, ds, preset, decoder=heatmap_argmax(preset.stride))
    cats = per_category(model, ds, preset)

    images = torch.stack([ds[i]["image"] for i in range(min(64, len(ds)))])
    from engine.training.keypoints import predict_crops

    predict_crops(model, images[:4], preset)  # warm-up
    t = time.perf_counter()
    predict_crops(model, images, preset)
    rate = len(images) / (time.perf_counter() - t)
    load_after = os.getloadavg()[0]

    history = ckpt.get("history", [])
    print(f"checkpoint {args.checkpoint}: preset {preset.name}, input {preset.input_size}, R {preset.radius}, "
          f"epoch {ckpt.get('epoch')}, trained {ckpt.get('train_seconds', float('nan')) / 60:.1f} min, "
          f"{history[-1]['images_seen'] if history else 0} images seen")
    print(f"held-out {args.split}: {hough['images']} images, {hough['points']} visible points (ground-truth crops)")
    print(f"NE, Hough voting (method):      {100 * hough['ne']:.2f} %")
    print(f"NE, heatmap argmax (baseline):  {100 * argmax['ne']:.2f} %  (x{argmax['ne'] / hough['ne']:.2f} the method's)")
    print("NE per category: " + ", ".join(f"{k} {100 * v:.2f} %" for k, v in cats.items()))
    print(f"inference: {rate:.1f} crops/s ({args.threads} thread(s), forward + decode, batch {len(images)})")
    print(f"load average: {load_before:.2f} before, {load_after:.2f} after (2-core machine shared with other jobs)")
    if args.curve:
        earlier = load_keypoint_net(args.earlier)[2].get("history", []) if args.earlier else None
        plot_curve(history, args.curve, f"keypoint net '{preset.name}' trained from scratch on a shared 2-core CPU", earlier)
        print(f"wrote {args.curve}")
    print(json.dumps({
        "preset": preset.name, "images": hough["images"], "points": hough["points"],
        "ne_hough": hough["ne"], "ne_argmax_baseline": argmax["ne"], "ratio_baseline_over_hough": argmax["ne"] / hough["ne"],
        "ne_per_category": cats, "crops_per_s": rate, "threads": args.threads,
        "train_minutes": ckpt.get("train_seconds", 0.0) / 60.0,
        "images_seen": history[-1]["images_seen"] if history else 0,
        "load_before": load_before, "load_after": load_after,
    }))


if __name__ == "__main__":
    main()
