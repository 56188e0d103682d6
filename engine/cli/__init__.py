"""The `fkp` command line: headless access to every engine feature.

Each sub-command is registered by one `_register_<name>(subparsers)` function that adds its
parser and sets `func` to the function that runs it; `func(args)` returns the exit code.
Heavy imports (torch, cv2) happen inside the command functions so `fkp --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

_REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = []


def _command(register: Callable[[argparse._SubParsersAction], None]):
    """Decorator: add a sub-command registrar to the `fkp` parser."""
    _REGISTRARS.append(register)
    return register


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fkp", description="FashionAI keypoint engine (headless)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _REGISTRARS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# --- sub-commands -------------------------------------------------------------------------


@_command
def _register_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="render a synthetic FashionAI-format data set (images + CSV)")
    p.add_argument("out", nargs="?", help="data set root to write (Images/..., Annotations/<split>.csv)")
    p.add_argument("--n", type=int, help="number of images")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives byte-identical output (default 0)")
    p.add_argument("--split", default="train", help="annotation file name: train, test, ... (default train)")
    p.add_argument("--size", type=int, default=512, help="longer image side in pixels (default 512)")
    p.add_argument("--categories", help="comma-separated subset of blouse,outwear,trousers,skirt,dress")
    p.add_argument("--hard-fraction", type=float, default=0.1,
                   help="share of hard cases: crossed, rotation, cut, low_contrast (default 0.1)")
    p.add_argument("--annotations-only", action="store_true", help="write only the CSV (no images; fast)")
    p.add_argument("--layouts", metavar="REAL.csv", help="take garment geometry from a real FashionAI CSV")
    p.add_argument("--workers", type=int, help="render processes (default: all cores)")
    p.add_argument("--contact-sheet", metavar="PNG",
                   help="also (or, without OUT, only) write a contact sheet of 20 samples with keypoints")
    p.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    import time

    from engine.synth import contact_sheet, generate_dataset

    if args.out is None and args.contact_sheet is None:
        print("fkp synth: give OUT and --n, or --contact-sheet PNG", file=sys.stderr)
        return 2
    try:
        if args.out is not None:
            if args.n is None:
                print("fkp synth: --n is required with OUT", file=sys.stderr)
                return 2
            from engine.cli.progress import ProgressBar

            bar = ProgressBar(args.n, label="synth", log_every=10.0)
            t0 = time.perf_counter()
            csv = generate_dataset(args.out, args.n, seed=args.seed, split=args.split, size=args.size,
                                   categories=args.categories, hard_fraction=args.hard_fraction,
                                   annotations_only=args.annotations_only, layouts=args.layouts,
                                   workers=args.workers, progress=lambda done, n: bar.update(done))
            bar.close()
            dt = time.perf_counter() - t0
            what = "rows" if args.annotations_only else "images"
            print(f"wrote {csv} ({args.n} {what} in {dt:.1f} s, {args.n / max(dt, 1e-9):.0f}/s)")
        if args.contact_sheet is not None:
            contact_sheet(args.contact_sheet, seed=args.seed, layouts=args.layouts)
            print(f"wrote {args.contact_sheet}")
    except (OSError, ValueError) as e:
        print(f"fkp synth: {e}", file=sys.stderr)
        return 2
    return 0



@_command
def _register_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="Normalized Error of a prediction CSV against ground truth")
    p.add_argument("gt", help="ground-truth annotation CSV")
    p.add_argument("pred", help="prediction CSV (FashionAI submission format)")
    p.add_argument("--intersect", action="store_true", help="score only images present in both files")
    p.add_argument("--missing-penalty", type=float, default=1.0,
                   help="normalized error of a visible point with no prediction (default 1.0)")
    p.add_argument("--json", action="store_true", help="print one JSON object (fractions, not percent)")
    p.add_argument("--errors", action="store_true",
                   help="also type every error (good, jitter, inversion, miss), the fix-what-if table and "
                        "suspected annotation errors (`errors`, `what_if`, `check_annotation` in --json)")
    p.add_argument("--t-good", type=float, default=None,
                   help="--errors: normalized error up to which a point is good (default 0.05)")
    p.add_argument("--t-miss", type=float, default=None,
                   help="--errors: normalized error beyond which a point is a miss (default 0.20)")
    p.add_argument("--scores", help="--errors: per-keypoint confidences of the predictions "
                                    "(default: PRED.scores.csv when it exists)")
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    import json

    from engine.io.annotations import load_annotations
    from engine.analysis.ne import evaluate

    try:
        gt = load_annotations(args.gt)
        pred = load_annotations(args.pred)
        result = evaluate(gt, pred, missing_penalty=args.missing_penalty, intersect=args.intersect)
        if (args.scores or args.t_good is not None or args.t_miss is not None) and not args.errors:
            raise ValueError("--scores, --t-good and --t-miss need --errors")
        analysis = _error_analysis(gt, pred, args) if args.errors else None
    except (OSError, ValueError) as e:
        print(f"fkp eval: {e}", file=sys.stderr)
        return 2
    for path, ann in ((args.gt, gt), (args.pred, pred)):
        if ann.problems:
            print(f"warning: {path}: {len(ann.problems)} problems, {ann.unparsed_count} rows not loaded "
                  f"(run `fkp validate {path}`)", file=sys.stderr)
    if args.json:
        obj = result.to_json()
        if analysis is not None:
            errors, suspects = analysis
            obj.update(errors.to_json())
            obj["check_annotation"] = [s.to_json() for s in suspects]
        print(json.dumps(obj))
        return 0
    print(_format_evaluation(result, len(gt), args))
    if analysis is not None:
        print(_format_error_analysis(*analysis))
    return 0


def _error_analysis(gt, pred, args: argparse.Namespace):
    """(ErrorAnalysis, suspected label errors) for `fkp eval --errors`."""
    from pathlib import Path

    from engine.analysis.label_errors import align_scores, suspected_label_errors
    from engine.analysis.error_types import DEFAULT_T_GOOD, DEFAULT_T_MISS, analyze_errors

    t_good = DEFAULT_T_GOOD if args.t_good is None else args.t_good
    t_miss = DEFAULT_T_MISS if args.t_miss is None else args.t_miss
    analysis = analyze_errors(gt, pred, t_good, t_miss, args.missing_penalty, args.intersect)
    scores_file = Path(args.scores) if args.scores else Path(args.pred).with_name(Path(args.pred).stem + ".scores.csv")
    scores = None
    if args.scores or scores_file.is_file():
        from engine.io.scores import load_scores

        if not scores_file.is_file():
            raise ValueError(f"{scores_file}: scores file not found")
        ids, values = load_scores(scores_file)
        scores = align_scores(gt, ids, values)
    return analysis, suspected_label_errors(gt, analysis.types, scores)


_MAX_SUSPECTS_SHOWN = 50


def _format_error_analysis(analysis, suspects) -> str:
    """The `fkp eval --errors` report: type counts, per category and keypoint, what-if, suspects."""
    from engine.analysis.error_types import ERROR_TYPES

    t = analysis.types
    counts = analysis.counts()
    typed = sum(counts[k] for k in ERROR_TYPES)
    share = ", ".join(f"{k} {counts[k]} ({100 * counts[k] / max(typed, 1):.1f} %)" for k in ERROR_TYPES)
    lines = ["", f"error types (normalized error: good <= {t.t_good:g} < jitter <= {t.t_miss:g} < miss; "
                 f"inversion: nearer the left/right twin's ground truth)",
             f"{share}; no prediction {counts['no_prediction']}"]
    from engine.schema import CATEGORIES, KEYPOINTS

    for title, names, table in (("category", CATEGORIES, t.counts_per_category()),
                                ("keypoint", KEYPOINTS, t.counts_per_keypoint())):
        lines.append("")
        lines.append(f"{title:<18}" + "".join(f"{k:>11}" for k in ERROR_TYPES))
        lines.extend(f"{name:<18}" + "".join(f"{int(x):>11}" for x in row)
                     for name, row in zip(names, table) if row.any())
    lines += ["", "what-if: NE with each error type fixed, cumulatively (as coco-analyze)",
              f"{'fixed':<14}{'NE %':>8}{'gain':>8}{'points':>8}"]
    prev = None
    for step in analysis.what_if:
        label = step.fixed if prev is None else f"+ {step.fixed}"
        gain = "" if prev is None else f"{100 * (prev - step.ne):.3f}"
        lines.append(f"{label:<14}{100 * step.ne:>8.3f}{gain:>8}{step.points:>8}")
        prev = step.ne
    lines += ["", f"check annotation: {len(suspects)} suspected label errors"]
    lines.extend(f"  {s.image_id}  {s.keypoint}: {s.reason}" for s in suspects[:_MAX_SUSPECTS_SHOWN])
    if len(suspects) > _MAX_SUSPECTS_SHOWN:
        lines.append(f"  ... and {len(suspects) - _MAX_SUSPECTS_SHOWN} more (all of them with --json)")
    return "\n".join(lines)


def _format_evaluation(result, n_gt: int, args: argparse.Namespace) -> str:
    """The human-readable `fkp eval` report: NE in percent, then per category and keypoint."""
    def pct(x) -> str:
        return "n/a" if x != x else f"{100 * x:.3f}"

    scope = (f"{n_gt - result.unmatched_gt} of {n_gt} ground-truth images have predictions"
             + (" (--intersect: only those are scored)" if args.intersect else ""))
    lines = [
        f"NE {pct(result.ne)} % over {result.n_visible} visible points in {result.n_images} images",
        scope,
        f"missing predictions: {result.missing} visible points (each scored {args.missing_penalty:g})",
        f"excluded (normalizer cannot be computed): {len(result.excluded)} images",
    ]
    if result.unmatched_pred:
        lines.append(f"ignored: {result.unmatched_pred} prediction rows whose image is not in the ground truth")
    for title, table in (("category", result.per_category), ("keypoint", result.per_keypoint)):
        lines.append("")
        lines.append(f"{title:<18}{'NE %':>8}{'points':>8}")
        lines.extend(f"{name:<18}{pct(row['ne']):>8}{row['n']:>8}" for name, row in table.items())
    return "\n".join(lines)


@_command
def _register_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="list every problem of an annotation CSV (exit 1 if a row cannot be parsed)")
    p.add_argument("csv", help="FashionAI annotation CSV")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run_validate)


def _run_validate(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from engine.io.annotations import load_annotations

    try:
        ann = load_annotations(args.csv)
    except OSError as e:
        print(f"fkp validate: {e}", file=sys.stderr)
        return 2
    # Every problem leaves a row (the header included) unparsed and kept verbatim.
    failed = bool(ann.problems)
    if args.json:
        print(json.dumps({
            "path": str(args.csv), "ok": not failed, "rows": len(ann), "unparsed": ann.unparsed_count,
            "has_keypoints": ann.has_keypoints, "problems": [asdict(p) for p in ann.problems],
        }))
    else:
        for problem in ann.problems:
            print(problem.describe(args.csv))
        kind = "keypoint annotations" if ann.has_keypoints else "test split (no keypoint columns)"
        print(f"{args.csv}: {len(ann)} rows loaded, {ann.unparsed_count} rows not parsed (kept as is), "
              f"{len(ann.problems)} problems; {kind}")
    return 1 if failed else 0


@_command
def _register_train_detector(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-detector", help="train the stage-1 garment detector (Faster R-CNN)")
    p.add_argument("--data", required=True, help="data set root (Annotations/<split>.csv, Images/...)")
    p.add_argument("--preset", default="lite", help="lite, fast or accurate (default lite)")
    p.add_argument("--out", required=True, help="detector checkpoint to write")
    _add_detector_training_args(p)
    p.set_defaults(func=_run_train_detector)


def _add_detector_training_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", default="train", help="training annotation file name (default train)")
    p.add_argument("--val-split", default="val",
                   help="held-out annotation file; when absent 10%% of the training images are held out")
    p.add_argument("--detector-steps", type=int, default=3000, help="training steps (default 3000)")
    p.add_argument("--detector-batch", type=int, default=8, help="images per step (default 8)")
    p.add_argument("--detector-lr", type=float, default=1e-3, help="peak AdamW learning rate (default 1e-3)")
    p.add_argument("--eval-every", type=int, default=250, help="steps between held-out box checks")
    p.add_argument("--backbone-weights", help="ImageNet weights of the backbone (local torchvision state dict)")
    p.add_argument("--detector-init", help="continue training from this detector checkpoint (same preset and size)")
    p.add_argument("--detector-size", type=int,
                   help="detector input size (shorter side; default: the preset's). Images smaller than the "
                        "preset's size gain nothing from upscaling and train faster at their own size")
    p.add_argument("--limit", type=int, help="use at most this many training images")
    p.add_argument("--detector-images", type=int, default=4000,
                   help="the detector holds its training images in memory, scaled: use at most this many (default 4000)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when available)")
    p.add_argument("--seed", type=int, default=0)


def _detector_data(args: argparse.Namespace, config):
    """Training and held-out samples for the detector, as the CLI options say."""
    from pathlib import Path

    from engine.training.detector import load_detector_samples

    limits = [n for n in (args.limit, args.detector_images) if n]
    limit = min(limits) if limits else None
    train = load_detector_samples(args.data, args.split, config, limit=limit)
    if (Path(args.data) / "Annotations" / f"{args.val_split}.csv").exists():
        val = load_detector_samples(args.data, args.val_split, config, limit=100)
    else:
        train, val = train.hold_out(0.1, seed=args.seed)
    return train, val


def _train_detector_from_args(args: argparse.Namespace, preset, out):
    import dataclasses
    import logging

    import torch

    from engine.model.detector import DetectorConfig
    from engine.training.detector import DetectorTraining, train_detector
    from engine.model.device import pick_device

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    config = DetectorConfig.from_preset(preset)
    if args.detector_size:
        config = dataclasses.replace(config, min_size=args.detector_size,
                                     max_size=max(args.detector_size, round(args.detector_size * 1.5)))
    train, val = _detector_data(args, config)
    print(f"detector: {config.backbone}, {len(train)} training / {len(val)} held-out images", file=sys.stderr)
    schedule = DetectorTraining(
        steps=args.detector_steps, batch_size=args.detector_batch, lr=args.detector_lr,
        warmup=min(200, max(1, args.detector_steps // 10)), eval_every=args.eval_every, seed=args.seed,
    )
    meta = {"data": str(args.data), "split": args.split, "images": len(train)}
    from engine.cli.progress import ProgressBar

    bar = ProgressBar(schedule.steps, label="detector", log_every=60.0)
    result = train_detector(
        train, config, schedule, out=out, val=val, backbone_weights=args.backbone_weights,
        device=pick_device(args.device), metadata=meta, init=args.detector_init,
        on_progress=lambda step, total, figures: bar.update(step, **figures),
    )
    bar.close()
    return result + (config,)


def _run_train_detector(args: argparse.Namespace) -> int:
    from engine.model.presets import get_preset

    _, quality, _ = _train_detector_from_args(args, get_preset(args.preset), args.out)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v:.3f}" for k, v in quality.items()))
    return 0


@_command
def _register_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the two-stage model (detector + keypoint net) into a model package")
    p.add_argument("--data", required=True, help="data set root (Annotations/<split>.csv, Images/...)")
    p.add_argument("--preset", default="lite", help="lite, fast or accurate (default lite)")
    p.add_argument("--out", required=True, help="model package: a .fkpmodel file or a directory")
    p.add_argument("--preset-json", help="JSON file of preset fields to override (\"net\": {...} for the network)")
    p.add_argument("--work", help="where the stage checkpoints go (default: <out>.work beside the package)")
    p.add_argument("--detector", help="use this trained detector checkpoint instead of training one")
    p.add_argument("--keypoints", help="use this trained keypoint-net checkpoint (and its preset) instead of training one")
    p.add_argument("--epochs", type=int, help="keypoint-net epochs (default: the preset's)")
    p.add_argument("--batch-size", type=int, help="keypoint-net batch size (default: the preset's)")
    p.add_argument("--half", action="store_true", help="store the weights in float16 (half the size)")
    p.add_argument("--flip-tta", action=argparse.BooleanOptionalAction, default=None,
                   help="the package's default for mirrored test-time crops (default: the preset's)")
    p.add_argument("--crops", type=int, help="the package's default number of crops per image (default: the preset's)")
    p.add_argument("--rotation-search", action=argparse.BooleanOptionalAction, default=None,
                   help="the package's default for trying rotated crops of garments the upright crop does not fit "
                        "(default: the preset's)")
    p.add_argument("--box-search", action=argparse.BooleanOptionalAction, default=None,
                   help="the package's default for trying the detector's other boxes where the crop is unconvincing "
                        "(default: the preset's)")
    _add_detector_training_args(p)
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import torch

    from engine.model.checkpoints import load_keypoint_net
    from engine.model.detector import load_detector
    from engine.model.package import save_model
    from engine.model.presets import get_preset
    from engine.training.keypoints import train_keypoints

    preset = get_preset(args.preset)
    if args.preset_json:
        preset = preset.with_(**json.loads(Path(args.preset_json).read_text(encoding="utf-8")))
    work = Path(args.work) if args.work else Path(str(Path(args.out).with_suffix("")) + ".work")
    work.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.keypoints:
        net, preset, kp_ckpt = load_keypoint_net(args.keypoints)
    else:
        kp_path = work / "keypoints.pt"
        train_keypoints(
            args.data, preset, kp_path, epochs=args.epochs, train_split=args.split, val_split=args.val_split,
            device=args.device, batch_size=args.batch_size, max_train_images=args.limit, seed=args.seed,
        )
        best = kp_path.with_name(kp_path.stem + ".best" + kp_path.suffix)
        net, preset, kp_ckpt = load_keypoint_net(best if best.exists() else kp_path)
    if args.detector:
        detector, det_config, det_meta = load_detector(args.detector)
    else:
        detector, _, det_config = _train_detector_from_args(args, preset, work / "detector.pt")
        _, _, det_meta = load_detector(work / "detector.pt")

    from engine.model.package import TwoStageModel

    # Test-time defaults only: they change how the package predicts, not its weights.
    if args.flip_tta is not None:
        preset = preset.with_(flip_tta=args.flip_tta)
    if args.crops is not None:
        preset = preset.with_(num_crops=args.crops)
    if args.rotation_search is not None:
        preset = preset.with_(rotation_search=args.rotation_search)
    if args.box_search is not None:
        preset = preset.with_(box_search=args.box_search)
    model = TwoStageModel(preset, detector, det_config, net)
    val_ne, val_images = _two_stage_val_ne(model, args)
    meta = {
        "data": str(Path(args.data).resolve()), "split": args.split, "preset": preset.name,
        "val_ne": val_ne, "val_images": val_images,
        "keypoint_val_ne": (kp_ckpt.get("metrics") or {}).get("val_ne"),
        "detector_val": det_meta.get("val", {}),
    }
    written = save_model(args.out, preset, detector, det_config, net, meta, half=args.half)
    print(f"wrote {written}: two-stage validation NE {100 * val_ne:.2f} % on {val_images} images")
    return 0


def _two_stage_val_ne(model, args: argparse.Namespace) -> tuple[float, int]:
    """NE of the whole pipeline on the validation split (or the last 5 % of the training split)."""
    from pathlib import Path

    import numpy as np

    from engine.io.annotations import load_annotations
    from engine.analysis.ne import normalized_errors, pooled_ne
    from engine.model.pipeline import Pipeline

    val_path = Path(args.data) / "Annotations" / f"{args.val_split}.csv"
    if val_path.exists():
        ann = load_annotations(val_path)
    else:
        ann = load_annotations(Path(args.data) / "Annotations" / f"{args.split}.csv")
        ann = ann.subset(np.arange(len(ann))[-max(1, len(ann) // 20):])
    ann = ann.subset(np.arange(min(len(ann), 200)))
    pred, _, _ = Pipeline(model, device=args.device).predict(args.data, ann)
    errors = normalized_errors(ann.coords, ann.visibility, ann.categories, pred.coords, pred.visibility).errors
    return pooled_ne(errors), len(ann)


@_command
def _register_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict the keypoints of a split with a model package (submission CSV)")
    p.add_argument("--model", required=True, help="model package (.fkpmodel file or its directory)")
    p.add_argument("--data", required=True, help="data set root (Annotations/<split>.csv, Images/...)")
    p.add_argument("--split", default="test", help="annotation file to predict (default test)")
    p.add_argument("--out", required=True, help="predictions CSV to write (confidences go to <out>.scores.csv)")
    p.add_argument("--flip-tta", action=argparse.BooleanOptionalAction, default=None,
                   help="average with mirrored crops (default: the model preset's choice)")
    p.add_argument("--crops", type=int, help="crops per image (default: the model preset's)")
    p.add_argument("--rotation-search", action=argparse.BooleanOptionalAction, default=None,
                   help="where the upright crop is unconvincing, try the garment rotated in 45-degree steps "
                        "(default: the model preset's choice)")
    p.add_argument("--box-search", action=argparse.BooleanOptionalAction, default=None,
                   help="where the crop is unconvincing, try the detector's other distinct boxes: a distractor can "
                        "outrank a faint garment (default: the model preset's choice)")
    p.add_argument("--refine", type=int, default=1,
                   help="passes that re-crop around the predicted keypoints (default 1; 0: the detector's box only)")
    p.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
    p.add_argument("--limit", type=int, help="predict only the first N images")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when available)")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.set_defaults(func=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    import torch

    from engine.io.annotations import load_annotations, save_annotations
    from engine.model.checkpoints import CheckpointError
    from engine.model.package import load_model
    from engine.io.scores import save_scores, scores_path
    from engine.model.pipeline import Pipeline, merge_batches
    from engine.cli.progress import ProgressBar

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model = load_model(args.model)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    split_path = Path(args.data) / "Annotations" / f"{args.split}.csv"
    if not split_path.is_file():
        print(f"error: {split_path}: annotation file not found", file=sys.stderr)
        return 2
    ann = load_annotations(split_path)
    if args.limit is not None:
        ann = ann.subset(np.arange(min(args.limit, len(ann))))
    for problem in ann.problems:
        print(f"warning: {problem.describe(split_path)} (row not predicted)", file=sys.stderr)
    pipeline = Pipeline(model, device=args.device, flip_tta=args.flip_tta, num_crops=args.crops,
                        batch_size=args.batch_size, refine_steps=args.refine,
                        rotation_search=args.rotation_search, box_search=args.box_search)
    bar = ProgressBar(len(ann), label="predict", log_every=10.0)
    batches = []
    for batch in pipeline.iter_predict(args.data, list(ann.image_ids), [int(c) for c in ann.categories],
                                       on_progress=lambda done, total: bar.update(done)):
        for image_id, message in batch.errors.items():
            print(f"\nerror: image {image_id}: {message} (written as missing)", file=sys.stderr)
        batches.append(batch)
    bar.close()
    pred, scores, errors = merge_batches(batches)
    save_annotations(pred, args.out)
    save_scores(scores_path(args.out), list(pred.image_ids), scores)
    print(f"wrote {args.out} ({len(pred)} images, {len(errors)} unreadable) and {scores_path(args.out)}")
    return 0


@_command
def _register_train_keypoints(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-keypoints", help="train the stage-2 keypoint network (stacked hourglass)")
    p.add_argument("--data", required=True, help="data set root (Annotations/<split>.csv, Images/...)")
    p.add_argument("--preset", default="lite", help="lite, fast or accurate (default lite)")
    p.add_argument("--out", required=True, help="checkpoint to write after every epoch (best also as <out>.best.pt)")
    p.add_argument("--epochs", type=int, help="epochs (default: the preset's)")
    p.add_argument("--resume", help="continue from this checkpoint (its preset, optimizer and history)")
    p.add_argument("--init", help="start a new run (new schedule, new history) from this checkpoint's weights and preset")
    p.add_argument("--split", default="train", help="training annotation file name (default train)")
    p.add_argument("--val-split", default="val", help="held-out annotation file (default val; absent: 5%% held out)")
    p.add_argument("--val-data", help="root of the held-out split (default: --data)")
    p.add_argument("--batch-size", type=int, help="crops per step and process (default: the preset's)")
    p.add_argument("--lr", type=float, help="peak AdamW learning rate (default: the preset's)")
    p.add_argument("--workers", type=int, default=0, help="data loader worker processes (default 0)")
    p.add_argument("--encoder-weights", help="ImageNet ResNet weights for the encoder (local file; needs --widths torchvision)")
    p.add_argument("--widths", choices=("seed", "torchvision"), default=None,
                   help="encoder widths: the seed's dilated plan or torchvision's (for --encoder-weights)")
    p.add_argument("--limit", type=int, help="use at most this many training images")
    p.add_argument("--val-limit", type=int, help="validate on at most this many images")
    p.add_argument("--max-steps", type=int, help="stop after this many steps (smoke tests)")
    p.add_argument("--time-budget", type=float,
                   help="minutes of training: the learning-rate schedule fits them and training stops when spent")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when available)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_train_keypoints)


def _run_train_keypoints(args: argparse.Namespace) -> int:
    import logging

    import torch

    from engine.model.presets import TORCHVISION_WIDTHS, SEED_WIDTHS, get_preset
    from engine.cli.progress import ProgressBar
    from engine.training.keypoints import train_keypoints

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = get_preset(args.preset)
    if args.widths:
        preset = preset.with_(net={"widths": TORCHVISION_WIDTHS if args.widths == "torchvision" else SEED_WIDTHS})
    bars: dict[int, ProgressBar] = {}

    def progress(event: dict) -> None:
        if "step" in event:
            bar = bars.setdefault(event["epoch"], ProgressBar(event["steps"], f"epoch {event['epoch']}/{event['epochs']}"))
            bar.update(event["step"], loss=event["loss"], img_s=event["images_per_s"])
        elif "epoch_done" in event and event["epoch_done"] in bars:
            bars.pop(event["epoch_done"]).close()

    from engine.model.checkpoints import CheckpointError
    from engine.model.hourglass import EncoderWeightsError

    try:
        history = train_keypoints(
            args.data, preset, args.out, epochs=args.epochs, resume=args.resume, init=args.init, train_split=args.split,
            val_split=args.val_split, val_root=args.val_data, device=args.device, batch_size=args.batch_size,
            lr=args.lr, workers=args.workers, encoder_weights=args.encoder_weights, max_train_images=args.limit,
            max_val_images=args.val_limit, seed=args.seed, max_steps=args.max_steps,
            time_budget_s=None if args.time_budget is None else 60.0 * args.time_budget, progress=progress,
        )
    except (CheckpointError, EncoderWeightsError, OSError, ValueError) as e:
        print(f"fkp train-keypoints: {e}", file=sys.stderr)
        return 2
    if history:
        last = history[-1]
        print(f"wrote {args.out}: epoch {last['epoch']}, val NE {100 * last['val_ne']:.2f} %")
    return 0


@_command
def _register_model_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model-info", help="parameters and FLOPs of the keypoint network per preset")
    p.add_argument("--preset", help="one preset (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_run_model_info)


def _run_model_info(args: argparse.Namespace) -> int:
    import json

    from engine.model.hourglass import KeypointNet, count_flops, count_parameters
    from engine.model.presets import PRESETS, get_preset

    names = [get_preset(args.preset).name] if args.preset else list(PRESETS)
    rows = []
    for name in names:
        preset = PRESETS[name]
        model = KeypointNet(preset.net)
        rows.append({
            "preset": name, "input": preset.input_size, "stages": preset.net.num_stages,
            "blocks": list(preset.net.blocks), "params": count_parameters(model),
            "flops": count_flops(model, preset.input_size),
        })
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'preset':<10}{'input':>6}{'stages':>7}  {'blocks':<14}{'params':>10}{'GFLOPs':>9}")
        for r in rows:
            print(f"{r['preset']:<10}{r['input']:>6}{r['stages']:>7}  {str(tuple(r['blocks'])):<14}"
                  f"{r['params'] / 1e6:>9.2f}M{r['flops'] / 1e9:>9.2f}")
        print("FLOPs: one forward pass of one crop, 2 FLOPs per multiply-add (torch.utils.flop_counter)")
    return 0


@_command
def _register_export_coco(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-coco", help="write a FashionAI CSV as COCO keypoints JSON (or predictions as COCO results)")
    p.add_argument("csv", help="FashionAI annotation or prediction CSV")
    p.add_argument("out", help="COCO JSON file to write")
    p.add_argument("--images", metavar="ROOT",
                   help="data set root the image ids resolve against, for image sizes "
                        "(default: the CSV's data set root when its images are there)")
    p.add_argument("--results", action="store_true",
                   help="write COCO keypoint results ([{image_id, category_id, keypoints, score}]) instead")
    p.add_argument("--scores", help="--results: per-keypoint confidences (default: CSV.scores.csv when it exists)")
    p.add_argument("--ids-from", metavar="COCO.json",
                   help="take image ids from this COCO file's images (matched by file name), "
                        "e.g. the ground truth's export, so results and ground truth agree")
    p.set_defaults(func=_run_export_coco)


def _run_export_coco(args: argparse.Namespace) -> int:
    from pathlib import Path

    from engine.io.annotations import load_annotations
    from engine.io.coco import image_id_map, read_coco, save_coco, to_coco, to_coco_results

    csv = Path(args.csv)
    try:
        if args.scores and not args.results:
            raise ValueError("--scores needs --results (COCO annotations carry no scores)")
        ann = load_annotations(csv)
        if not ann.has_keypoints and args.results:
            raise ValueError(f"{csv}: a test split (no keypoint columns) has no predictions to export")
        id_map = image_id_map(read_coco(args.ids_from), args.ids_from) if args.ids_from else None
        if args.results:
            obj = to_coco_results(ann, _export_scores(ann, csv, args.scores), id_map)
        else:
            root = Path(args.images) if args.images else _dataset_root(csv)
            if args.images and not root.is_dir():
                raise ValueError(f"{root}: images root is not a folder")
            obj = to_coco(ann, root, id_map)
        save_coco(obj, args.out)
    except (OSError, ValueError) as e:
        print(f"fkp export-coco: {e}", file=sys.stderr)
        return 2
    if ann.problems:
        print(f"warning: {csv}: {len(ann.problems)} problems; {ann.unparsed_count} rows kept verbatim "
              + ("(not in the results)" if args.results else "in the 'fashionai_csv' key"), file=sys.stderr)
    if args.results:
        print(f"wrote {args.out}: {len(obj)} COCO keypoint results")
    else:
        sized = sum("width" in im for im in obj["images"])
        print(f"wrote {args.out}: {len(obj['images'])} images ({sized} with sizes), "
              f"{len(obj['annotations'])} annotations, {len(obj['categories'])} categories")
    return 0


def _dataset_root(csv):
    """The data set root of an annotation CSV (a Path): the folder above `Annotations/`, else its own."""
    return csv.parent.parent if csv.parent.name == "Annotations" else csv.parent


def _export_scores(ann, csv, scores_arg):
    """Scores (N, 24) aligned to `ann`'s rows, or None when there is no scores file."""
    from pathlib import Path

    path = Path(scores_arg) if scores_arg else csv.with_name(csv.stem + ".scores.csv")
    if not path.is_file():
        if scores_arg:
            raise ValueError(f"{path}: scores file not found")
        return None
    from engine.analysis.label_errors import align_scores
    from engine.io.scores import load_scores

    ids, values = load_scores(path)
    return align_scores(ann, ids, values)


@_command
def _register_import_coco(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-coco", help="write a COCO keypoints JSON as a FashionAI CSV")
    p.add_argument("json", help="COCO keypoints JSON (categories named blouse, outwear, trousers, skirt, dress)")
    p.add_argument("out", help="FashionAI CSV to write")
    p.set_defaults(func=_run_import_coco)


def _run_import_coco(args: argparse.Namespace) -> int:
    from engine.io.annotations import save_annotations
    from engine.io.coco import load_coco

    try:
        ann, warnings = load_coco(args.json)
        save_annotations(ann, args.out)
    except (OSError, ValueError) as e:
        print(f"fkp import-coco: {e}", file=sys.stderr)
        return 2
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"wrote {args.out}: {len(ann)} rows" + (f", {len(ann.verbatim)} kept verbatim" if ann.verbatim else ""))
    return 0


@_command
def _register_retrain(sub: argparse._SubParsersAction) -> None:
    from engine.training.retrain_config import RetrainConfig

    p = sub.add_parser("retrain", help="fine-tune a model package's keypoint network and detector on hard samples")
    p.add_argument("--model", required=True, help="model package to start from (.fkpmodel file or its directory)")
    p.add_argument("--data", required=True, help="data set root (Annotations/<split>.csv, Images/...)")
    p.add_argument("--split", default="train", help="annotation file trained on (default train)")
    p.add_argument("--hard", required=True,
                   help="hard-set image ids: one per line, or a CSV whose first column is image_id")
    p.add_argument("--out", required=True, help="model package to write (.fkpmodel file or a directory)")
    p.add_argument("--steps", type=int, default=RetrainConfig.steps,
                   help=f"keypoint network training steps (default {RetrainConfig.steps})")
    p.add_argument("--lr", type=float, default=RetrainConfig.lr,
                   help=f"keypoint network peak learning rate (default {RetrainConfig.lr:g})")
    p.add_argument("--batch-size", type=int, help="images per step (default: the model preset's)")
    p.add_argument("--hard-share", type=float, default=RetrainConfig.hard_share,
                   help=f"share of each batch from the hard set (default {RetrainConfig.hard_share:g})")
    p.add_argument("--detector-steps", type=int, default=RetrainConfig.detector_steps,
                   help=f"detector fine-tuning steps after the keypoint network's (default "
                        f"{RetrainConfig.detector_steps}; 0 keeps the detector)")
    p.add_argument("--detector-lr", type=float, default=RetrainConfig.detector_lr,
                   help=f"detector peak learning rate (default {RetrainConfig.detector_lr:g})")
    p.add_argument("--distill-replay", action=argparse.BooleanOptionalAction, default=RetrainConfig.distill_replay,
                   help="replayed images learn the starting model's outputs (default) instead of their annotations")
    p.add_argument("--holdout", help="file of held-out validation ids; created (deterministic choice) when absent")
    p.add_argument("--boxes", choices=("detector", "annotated"), default="detector",
                   help="measure before/after with the detector's boxes (default) or the annotated ones")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when available)")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the before/after figures as one JSON object last")
    p.set_defaults(func=_run_retrain)


def _read_id_list(path) -> list[str]:
    """Image ids of a plain list (one per line) or of a CSV's first column (header `image_id` skipped)."""
    ids = []
    for line in open(path, encoding="utf-8").read().splitlines():
        first = line.split(",", 1)[0].strip()
        if first and first != "image_id":
            ids.append(first)
    return ids


def _run_retrain(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import torch

    from engine.io.annotations import load_annotations
    from engine.model.checkpoints import CheckpointError
    from engine.io.files import atomic_write_text
    from engine.model.package import load_model
    from engine.cli.progress import ProgressBar
    from engine.training.retrain import RetrainConfig, RetrainError, choose_holdout, retrain, save_retrained

    if args.threads:
        torch.set_num_threads(args.threads)
    split_path = Path(args.data) / "Annotations" / f"{args.split}.csv"
    try:
        model = load_model(args.model)
        ann = load_annotations(split_path)
        hard = _read_id_list(args.hard)
        config = RetrainConfig(steps=args.steps, lr=args.lr, batch_size=args.batch_size, hard_share=args.hard_share,
                               detector_steps=args.detector_steps, detector_lr=args.detector_lr,
                               distill_replay=args.distill_replay, boxes=args.boxes, device=args.device,
                               seed=args.seed)
        config.check()
    except (CheckpointError, OSError, ValueError) as e:
        print(f"fkp retrain: {e}", file=sys.stderr)
        return 2
    holdout = None
    if args.holdout and Path(args.holdout).is_file():
        holdout = _read_id_list(args.holdout)
    elif args.holdout:
        holdout = choose_holdout(list(ann.image_ids), hard, config.holdout_fraction, config.max_holdout)
        atomic_write_text(args.holdout, "image_id\n" + "".join(f"{i}\n" for i in holdout))
    bar = ProgressBar(config.steps + config.detector_steps, label="retrain", log_every=10.0)
    try:
        result = retrain(model, args.data, ann, hard, config, holdout_ids=holdout,
                         on_step=lambda step, steps, loss: bar.update(step, loss=loss),
                         on_progress=lambda done, total, message: bar.update(int(done))
                         if done > config.steps else None)
    except RetrainError as e:
        print(f"\nfkp retrain: {e}", file=sys.stderr)
        return 1
    finally:
        bar.close()
    written = save_retrained(result, args.out, parent=str(Path(args.model).resolve()))
    before, after = result.before, result.after
    print(f"wrote {written}: {len(result.hard_ids)} hard + {result.replay_images} replay images, "
          f"{len(result.holdout_ids)} held out")
    rows = [("held-out NE", before.overall, after.overall), ("hard-set NE", before.hard, after.hard)]
    rows += [(f"  {c}", before.per_category.get(c, float("nan")), after.per_category.get(c, float("nan")))
             for c in sorted(set(before.per_category) | set(after.per_category))]
    print(f"{'':16s} {'before':>9s} {'after':>9s}")
    for name, b, a in rows:
        print(f"{name:16s} {100 * b:8.2f}% {100 * a:8.2f}%")
    if args.json:
        report = result.report()
        for side in ("before", "after"):
            report[side].pop("hard_per_image", None)
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
