"""`fkp` commands on models: train (both stages into a package), train-detector, train-keypoints,
model-info, predict and retrain."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from engine.cli.arguments import add_runtime_arguments, fraction, non_negative_int, positive_float, positive_int
from engine.cli.registry import command as _command
from engine.io.messages import describe_error


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
    p.add_argument("--detector-steps", type=positive_int, default=3000, help="training steps (default 3000)")
    p.add_argument("--detector-batch", type=positive_int, default=8, help="images per step (default 8)")
    p.add_argument("--detector-lr", type=positive_float, default=1e-3, help="peak AdamW learning rate (default 1e-3)")
    p.add_argument("--eval-every", type=positive_int, default=250, help="steps between held-out box checks")
    p.add_argument("--backbone-weights", help="ImageNet weights of the backbone (local torchvision state dict)")
    p.add_argument("--detector-init", help="continue training from this detector checkpoint (same preset and size)")
    p.add_argument("--detector-size", type=positive_int,
                   help="detector input size (shorter side; default: the preset's). Images smaller than the "
                        "preset's size gain nothing from upscaling and train faster at their own size")
    p.add_argument("--limit", type=positive_int, help="use at most this many training images")
    p.add_argument("--detector-images", type=positive_int, default=4000,
                   help="the detector holds its training images in memory, scaled: use at most this many (default 4000)")
    add_runtime_arguments(p, torchrun=True)
    p.add_argument("--sync-bn", action="store_true",
                   help="under torchrun on GPUs: synchronize BatchNorm statistics across the ranks (SyncBatchNorm)")


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
    p.add_argument("--epochs", type=positive_int, help="keypoint-net epochs (default: the preset's)")
    p.add_argument("--batch-size", type=positive_int, help="keypoint-net batch size (default: the preset's)")
    p.add_argument("--workers", type=non_negative_int, default=0,
                   help="keypoint-net data loader worker processes (default 0)")
    p.add_argument("--half", action="store_true", help="store the weights in float16 (half the size)")
    _add_test_time_args(p, "the package's default: ", "the preset's")
    _add_detector_training_args(p)
    p.set_defaults(func=_run_train)


def _add_test_time_args(p: argparse.ArgumentParser, prefix: str, default: str) -> None:
    """The test-time choices: `fkp predict` sets them for a run, `fkp train` stores the package's defaults."""
    flag = argparse.BooleanOptionalAction
    p.add_argument("--flip-tta", action=flag, default=None, help=f"{prefix}average with mirrored crops (default: {default})")
    p.add_argument("--crops", type=positive_int, help=f"{prefix}crops per image (default: {default})")
    p.add_argument("--rotation-search", action=flag, default=None,
                   help=f"{prefix}where the upright crop is unconvincing, try the garment rotated in 45-degree steps "
                        f"(default: {default})")
    p.add_argument("--box-search", action=flag, default=None,
                   help=f"{prefix}where the crop is unconvincing, try the detector's other distinct boxes: a distractor "
                        f"can outrank a faint garment (default: {default})")


def _detector_stage(args: argparse.Namespace):
    from engine.training.two_stage import DetectorStage

    return DetectorStage(split=args.split, val_split=args.val_split, steps=args.detector_steps,
                         batch_size=args.detector_batch, lr=args.detector_lr, eval_every=args.eval_every,
                         backbone_weights=args.backbone_weights, init=args.detector_init, size=args.detector_size,
                         limit=args.limit, max_images=args.detector_images, seed=args.seed, device=args.device,
                         sync_bn=args.sync_bn)


def _detector_reporting(steps: int):
    """(on_data, on_progress, close) callbacks that report detector training on stderr."""
    import logging

    from engine.cli.progress import ProgressBar

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    bar = ProgressBar(steps, label="detector", log_every=60.0)

    def on_data(config, n_train: int, n_val: int) -> None:
        print(f"detector: {config.backbone}, {n_train} training / {n_val} held-out images", file=sys.stderr)

    def on_progress(step: int, total: int, figures: dict[str, float]) -> None:
        bar.total = max(1, total)  # under torchrun the steps are divided by the world size
        bar.update(step, **figures)

    return on_data, on_progress, bar.close


def _set_threads(args: argparse.Namespace) -> None:
    """Torch's CPU thread count from `--threads`, when given."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def _run_train_detector(args: argparse.Namespace) -> int:
    from engine.model.distributed import is_main_process
    from engine.model.presets import get_preset
    from engine.training.two_stage import train_detector_stage

    _set_threads(args)
    on_data, on_progress, close = _detector_reporting(args.detector_steps)
    _, quality, _ = train_detector_stage(args.data, get_preset(args.preset), args.out, _detector_stage(args),
                                         on_data, on_progress)
    close()
    if is_main_process():  # under torchrun rank 0 wrote the file
        print(f"wrote {args.out}: " + ", ".join(f"{k} {v:.3f}" for k, v in quality.items()))
    return 0


def _run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from engine.model.distributed import is_main_process
    from engine.model.presets import get_preset
    from engine.training.two_stage import KeypointStage, preset_with_overrides, train_two_stage

    _set_threads(args)
    preset = preset_with_overrides(get_preset(args.preset), args.preset_json)
    work = Path(args.work) if args.work else Path(str(Path(args.out).with_suffix("")) + ".work")
    keypoints = KeypointStage(epochs=args.epochs, batch_size=args.batch_size, keypoints=args.keypoints,
                              detector=args.detector, half=args.half, flip_tta=args.flip_tta, crops=args.crops,
                              rotation_search=args.rotation_search, box_search=args.box_search,
                              workers=args.workers, sync_bn=args.sync_bn)
    on_data, on_progress, close = _detector_reporting(args.detector_steps)
    written, val_ne, val_images = train_two_stage(args.data, preset, args.out, work, _detector_stage(args), keypoints,
                                                  on_data, on_progress)
    close()
    if is_main_process():  # under torchrun rank 0 wrote the package
        print(f"wrote {written}: two-stage validation NE {100 * val_ne:.2f} % on {val_images} images")
    return 0


@_command
def _register_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict the keypoints of a split with a model package (submission CSV)")
    p.add_argument("--model", required=True,
                   help="model package (.fkpmodel file or its directory), or a folder written by fkp export-onnx "
                        "(run by ONNX Runtime)")
    p.add_argument("--data", help="data set root (Annotations/<split>.csv, Images/...)")
    p.add_argument("--split", default="test", help="annotation file to predict (default test)")
    p.add_argument("--images", metavar="DIR",
                   help="instead of --data: every image under DIR, with no annotation file (ids relative to the "
                        "folder above Images/; the category from the folder name, else the detector's)")
    p.add_argument("--out", required=True, help="predictions CSV to write (confidences go to <out>.scores.csv)")
    _add_test_time_args(p, "", "the model preset's choice")
    p.add_argument("--refine", type=non_negative_int, default=1,
                   help="passes that re-crop around the predicted keypoints (default 1; 0: the detector's box only)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per batch (default 8)")
    p.add_argument("--limit", type=positive_int, help="predict only the first N images")
    # Under torchrun each rank predicts its share on its own device (`predict_sharded`).
    add_runtime_arguments(p, seed=False, torchrun=True,
                          threads_default="one per usable CPU, at most torch's own count")
    p.set_defaults(func=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    from engine.model.prediction import prediction_threads

    # Where `fkp predict` chooses its CPU threads (as the studio's predict job does): the
    # engine's count unless --threads says otherwise, given back after (in-process callers).
    with prediction_threads(args.threads):
        return _predict(args)


def _predict(args: argparse.Namespace) -> int:
    """`fkp predict` on the thread count `_run_predict` set: the images, then the workflow."""
    import numpy as np

    from engine.io.scores import check_prediction_outputs, scores_path, write_predictions
    from engine.model.distributed import join_process_group, shard_bounds
    from engine.model.pipeline import Pipeline
    from engine.model.prediction import load_for_prediction, predict_split_as_saved
    from engine.cli.progress import ProgressBar

    model, default_device = load_for_prediction(args.model, threads=args.threads)
    if "onnx" in model.metadata:
        print(f"ONNX Runtime: {', '.join(model.metadata['onnx']['providers'])}", file=sys.stderr)
    root, ids, cats, problems, where = _images_to_predict(args)
    if args.limit is not None:
        ids, cats = ids[:args.limit], cats[:args.limit]
    check_prediction_outputs(args.out, len(ids))  # before the work, not after it
    # Under torchrun every rank predicts its share of the images on its own device and rank 0
    # writes them all, in the order of one process (engine.model.distributed.predict_sharded).
    ranks = join_process_group(args.device or default_device)
    if ranks.main:
        for problem in problems:
            print(f"warning: {problem.describe(where)} (row not predicted)", file=sys.stderr)
    pipeline = Pipeline(model, device=ranks.device, flip_tta=args.flip_tta, num_crops=args.crops,
                        batch_size=args.batch_size, refine_steps=args.refine,
                        rotation_search=args.rotation_search, box_search=args.box_search)
    bounds = shard_bounds(len(ids), ranks.world, pipeline.batch_size)
    label = "predict" if not ranks.distributed else f"predict (rank 0's {bounds[1]} of {len(ids)})"
    bar = ProgressBar(int(bounds[1]), label=label, log_every=10.0) if ranks.main else None
    # An image without a known category (a folder that names none) takes the detector's.
    merged = predict_split_as_saved(pipeline, root, ids, cats,
                                    on_progress=(lambda done, total: bar.update(done)) if bar else None)
    if bar is not None:
        bar.close()
    if merged is None:  # another rank than 0: rank 0 writes
        return 0
    pred, scores, errors = merged
    for image_id, message in errors.items():
        print(f"error: image {image_id}: {message} (written as missing)", file=sys.stderr)
    unknown = np.flatnonzero(pred.categories < 0)
    if len(unknown):  # unreadable, and no folder to tell the category: no row can be written
        print(f"warning: {len(unknown)} unreadable images of unknown category left out, e.g. "
              f"{pred.image_ids[unknown[0]]}", file=sys.stderr)
        keep = np.flatnonzero(pred.categories >= 0)
        pred, scores = pred.subset(keep), scores[keep]
    write_predictions(args.out, pred, scores)
    print(f"wrote {args.out} ({len(pred)} images, {len(errors)} unreadable) and {scores_path(args.out)}")
    return 0


def _images_to_predict(args: argparse.Namespace) -> tuple:
    """(root, ids, categories, row problems, where) of `--images DIR` or `--data ROOT --split`."""
    from pathlib import Path

    from engine.io.annotations import load_annotations
    from engine.io.image_scan import IMAGE_SUFFIXES, scan_images

    if (args.data is None) == (args.images is None):
        raise ValueError("give --data ROOT (with --split) or --images DIR")
    if args.images is not None:
        scanned = scan_images(args.images)
        for skipped in scanned.skipped:  # before the work: a name no row can hold must not cost the rest
            print(f"warning: {skipped}", file=sys.stderr)
        if not scanned.image_ids:
            raise ValueError(f"{args.images}: no image files to predict ({', '.join(IMAGE_SUFFIXES)})")
        return scanned.root, scanned.image_ids, scanned.categories, [], args.images
    split_path = Path(args.data) / "Annotations" / f"{args.split}.csv"
    if not split_path.is_file():
        raise FileNotFoundError(2, "annotation file not found", str(split_path))
    ann = load_annotations(split_path)
    return args.data, list(ann.image_ids), [int(c) for c in ann.categories], ann.problems, split_path


@_command
def _register_export_onnx(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-onnx", help="write a model package as ONNX files (detector, keypoint net) + JSON")
    p.add_argument("--model", required=True, help="model package (.fkpmodel file or its directory)")
    p.add_argument("--out", required=True,
                   help="folder to write detector.onnx, keypoints.onnx and fkp_onnx.json into (fkp predict --model OUT)")
    p.add_argument("--opset", type=positive_int, default=17, help="ONNX opset (default 17; at least 11)")
    add_runtime_arguments(p, device=False, seed=False)
    p.set_defaults(func=_run_export_onnx)


def _run_export_onnx(args: argparse.Namespace) -> int:
    from pathlib import Path

    from engine.io.model_files import package_file
    from engine.model.onnx_export import export_onnx, require
    from engine.model.package import load_model

    if args.opset < 11:
        raise ValueError(f"--opset {args.opset}: torchvision's detector needs opset 11 or later")
    require("onnx", "ONNX export")     # before loading the model: say what is missing first
    _set_threads(args)
    model = load_model(args.model)
    manifest = export_onnx(model, args.out, source=str(package_file(args.model)), opset=args.opset)
    sizes = ", ".join(f"{f.name} {f.stat().st_size / 1e6:.1f} MB" for f in sorted(Path(args.out).glob("*.onnx")))
    print(f"wrote {manifest} ({sizes}); the detector takes one image per call, the keypoint net any batch")
    return 0


@_command
def _register_train_keypoints(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-keypoints", help="train the stage-2 keypoint network (stacked hourglass)")
    p.add_argument("--data", required=True, help="data set root (Annotations/<split>.csv, Images/...)")
    p.add_argument("--preset", default="lite", help="lite, fast or accurate (default lite)")
    p.add_argument("--out", required=True, help="checkpoint to write after every epoch (best also as <out>.best.pt)")
    p.add_argument("--epochs", type=positive_int, help="epochs (default: the preset's)")
    p.add_argument("--resume", help="continue from this checkpoint (its preset, optimizer and history)")
    p.add_argument("--init", help="start a new run (new schedule, new history) from this checkpoint's weights and preset")
    p.add_argument("--split", default="train", help="training annotation file name (default train)")
    p.add_argument("--val-split", default="val", help="held-out annotation file (default val; absent: 5%% held out)")
    p.add_argument("--val-data", help="root of the held-out split (default: --data)")
    p.add_argument("--batch-size", type=positive_int, help="crops per step and process (default: the preset's)")
    p.add_argument("--lr", type=positive_float, help="peak AdamW learning rate (default: the preset's)")
    p.add_argument("--workers", type=non_negative_int, default=0, help="data loader worker processes (default 0)")
    p.add_argument("--encoder-weights", help="ImageNet ResNet weights for the encoder (local file; needs --widths torchvision)")
    p.add_argument("--widths", choices=("seed", "torchvision"), default=None,
                   help="encoder widths: the seed's dilated plan or torchvision's (for --encoder-weights)")
    p.add_argument("--limit", type=positive_int, help="use at most this many training images")
    p.add_argument("--val-limit", type=positive_int, help="validate on at most this many images")
    p.add_argument("--max-steps", type=positive_int, help="stop after this many steps (smoke tests)")
    p.add_argument("--time-budget", type=positive_float,
                   help="minutes of training: the learning-rate schedule fits them and training stops when spent")
    add_runtime_arguments(p, torchrun=True)
    p.add_argument("--sync-bn", action="store_true",
                   help="under torchrun on GPUs: synchronize BatchNorm statistics across the ranks (SyncBatchNorm)")
    p.set_defaults(func=_run_train_keypoints)


def _run_train_keypoints(args: argparse.Namespace) -> int:
    import logging

    from engine.model.presets import TORCHVISION_WIDTHS, SEED_WIDTHS, get_preset
    from engine.cli.progress import ProgressBar
    from engine.training.keypoints import train_keypoints

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    _set_threads(args)
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

    history = train_keypoints(
        args.data, preset, args.out, epochs=args.epochs, resume=args.resume, init=args.init, train_split=args.split,
        val_split=args.val_split, val_root=args.val_data, device=args.device, batch_size=args.batch_size,
        lr=args.lr, workers=args.workers, encoder_weights=args.encoder_weights, max_train_images=args.limit,
        max_val_images=args.val_limit, seed=args.seed, max_steps=args.max_steps,
        time_budget_s=None if args.time_budget is None else 60.0 * args.time_budget, progress=progress,
        sync_bn=args.sync_bn,
    )
    if history:
        last = history[-1]
        print(f"wrote {args.out}: epoch {last['epoch']}, val NE {100 * last['val_ne']:.2f} %")
    return 0


@_command
def _register_train_hints(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-hints", help="teach a package's keypoint net to take the points a reviewer set as hints "
                                           "(refinement after a correction): writes a format-2 package")
    p.add_argument("--model", required=True, help="model package to start from (a hint-taking one goes on training)")
    p.add_argument("--data", required=True, help="data set root with Annotations/train.csv and val.csv")
    p.add_argument("--out", required=True, help="the hint-taking package to write")
    p.add_argument("--steps", type=positive_int, default=100_000, help="at most this many steps (default 100000)")
    p.add_argument("--minutes", type=positive_float, default=30.0, help="minutes of training (default 30)")
    p.add_argument("--val-limit", type=positive_int, default=300, help="val images the curves are measured on")
    p.add_argument("--skip-before", action="store_true", help="no curve before training")
    p.add_argument("--max-hints", type=non_negative_int, help="most points set per crop (default: HintTraining's)")
    p.add_argument("--lr", type=positive_float, help="peak learning rate of the net (default: HintTraining's)")
    p.add_argument("--hint-lr", type=positive_float, help="peak learning rate of the hint convolutions")
    p.add_argument("--no-loss-on-hinted", action="store_true", help="leave the set points' own loss out")
    add_runtime_arguments(p, device=False, threads_default="1")
    p.set_defaults(func=_run_train_hints)


def _run_train_hints(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    import logging

    from engine.training.hint_training import HintTraining, train_hint_package

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.threads = args.threads or 1
    _set_threads(args)
    given = {"max_hints": args.max_hints, "lr": args.lr, "hint_lr": args.hint_lr}
    settings = dataclasses.replace(HintTraining(), loss_on_hinted=not args.no_loss_on_hinted,
                                   **{k: v for k, v in given.items() if v is not None})

    def progress(d: dict) -> None:
        if d["step"] % 25 == 0:
            print(f"step {d['step']} loss {d['loss']:.4f} {d['elapsed_s']:.0f} s ({100 * d['done']:.0f} %)", flush=True)

    result = train_hint_package(args.model, args.data, args.out, settings, steps=args.steps, minutes=args.minutes,
                                seed=args.seed, val_limit=args.val_limit, curve_before=not args.skip_before,
                                progress=progress)
    print(json.dumps(result))
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
def _register_retrain(sub: argparse._SubParsersAction) -> None:
    from engine.training.retrain_config import MODES, RetrainConfig

    adapt = RetrainConfig.adapt()
    p = sub.add_parser("retrain", help="fine-tune a model package's keypoint network and detector on hard samples")
    p.add_argument("--model", required=True, help="model package to start from (.fkpmodel file or its directory)")
    p.add_argument("--data", required=True, help="data set root (Annotations/<split>.csv, Images/...)")
    p.add_argument("--split", default="train", help="annotation file trained on (default train)")
    p.add_argument("--hard", required=True,
                   help="hard-set image ids: one per line, or a CSV whose first column is image_id")
    p.add_argument("--out", required=True, help="model package to write (.fkpmodel file or a directory)")
    p.add_argument("--mode", choices=MODES, default="hard",
                   help="hard (default): fix the hard set's images without moving the rest; adapt: learn from "
                        f"reviewed images of a new domain ({adapt.hard_share:g} of each batch, {adapt.steps} steps; 1 in 5 of "
                        "them, at least 10 (none below 10 reviewed), held out and measured before and after)")
    p.add_argument("--steps", type=positive_int,
                   help=f"keypoint network training steps (default {RetrainConfig.steps}, with --mode adapt {adapt.steps})")
    p.add_argument("--lr", type=positive_float,
                   help=f"keypoint network peak learning rate (default {RetrainConfig.lr:g}, with --mode adapt "
                        f"{adapt.lr:g})")
    p.add_argument("--batch-size", type=positive_int, help="images per step (default: the model preset's)")
    p.add_argument("--hard-share", type=fraction,
                   help=f"share of each batch from the hard set (default {RetrainConfig.hard_share:g}, with --mode "
                        f"adapt {adapt.hard_share:g})")
    p.add_argument("--detector-steps", type=non_negative_int, default=RetrainConfig.detector_steps,
                   help=f"detector fine-tuning steps after the keypoint network's (default "
                        f"{RetrainConfig.detector_steps}; 0 keeps the detector)")
    p.add_argument("--detector-lr", type=positive_float, default=RetrainConfig.detector_lr,
                   help=f"detector peak learning rate (default {RetrainConfig.detector_lr:g})")
    p.add_argument("--distill-replay", action=argparse.BooleanOptionalAction,
                   help="replayed images learn the starting model's outputs (default) instead of their annotations")
    p.add_argument("--reestimate-batchnorm", action=argparse.BooleanOptionalAction,
                   help="estimate the keypoint network's BatchNorm statistics again on the hard set's crops after "
                        "training (default off: it cost the new-domain benchmark 9 points)")
    p.add_argument("--self-training", action=argparse.BooleanOptionalAction,
                   help=f"pseudo-labels on the --unreviewed images: the model's sure points (agreeing with the "
                        f"mirrored crop and across the hourglass stages), weighted below reviewed points "
                        f"(default {'on' if adapt.self_training else 'off'} with --mode adapt, off otherwise)")
    p.add_argument("--unreviewed",
                   help="ids of the batch's images nobody reviewed yet (one per line, or a CSV), rows of the "
                        "annotation file for their categories: never replayed as truth; read unlabelled by "
                        "--self-training (and by a BatchNorm re-estimate on them where the mode's settings ask)")
    p.add_argument("--lr-warmup", type=fraction,
                   help=f"share of the steps the learning rate warms up over (default {RetrainConfig.warmup_share:g})")
    p.add_argument("--holdout", help="file of held-out validation ids; created (deterministic choice) when absent")
    p.add_argument("--boxes", choices=("detector", "annotated"), default="detector",
                   help="measure before/after with the detector's boxes (default) or the annotated ones")
    add_runtime_arguments(p)
    p.add_argument("--json", action="store_true", help="print the before/after figures as one JSON object last")
    p.set_defaults(func=_run_retrain)


def _read_id_list(path) -> list[str]:
    """Image ids of a plain list (one per line) or of a CSV's first column (header `image_id` skipped)."""
    try:
        text = open(path, encoding="utf-8").read()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a UTF-8 text file (one image id per line, or a CSV)") from None
    ids = []
    for line in text.splitlines():
        first = line.split(",", 1)[0].strip()
        if first and first != "image_id":
            ids.append(first)
    return ids


def _holdout_writer(path) -> Callable[[list[str]], None]:
    """Writes a new hold-out choice to `path` as an id list (read back by `_read_id_list`)."""
    from engine.io.files import atomic_write_text

    def write(ids: list[str]) -> None:
        atomic_write_text(path, "image_id\n" + "".join(f"{i}\n" for i in ids))

    return write


def _run_retrain(args: argparse.Namespace) -> int:
    import errno
    import json

    import numpy as np
    from pathlib import Path

    from engine.io.annotations import load_annotations
    from engine.model.package import load_model
    from engine.cli.progress import ProgressBar
    from engine.training.retrain import RetrainConfig, RetrainError, retrain_and_save, save_retrained

    _set_threads(args)
    split_path = Path(args.data) / "Annotations" / f"{args.split}.csv"
    model = load_model(args.model)
    ann = load_annotations(split_path)
    hard = _read_id_list(args.hard)
    unreviewed = None
    if args.unreviewed:
        wanted, index = _read_id_list(args.unreviewed), ann.id_index()
        missing = [i for i in wanted if i not in index]
        if missing:
            raise ValueError(f"{args.unreviewed}: {len(missing)} id(s) are not rows of {split_path}, "
                             f"e.g. {missing[0]}")
        unreviewed = ann.subset(np.asarray([index[i] for i in wanted], np.int64))
    # Only the settings given replace the mode's defaults.
    given = {k: v for k, v in (("steps", args.steps), ("lr", args.lr), ("distill_replay", args.distill_replay),
                               ("hard_share", args.hard_share), ("reestimate_batchnorm", args.reestimate_batchnorm),
                               ("self_training", args.self_training), ("warmup_share", args.lr_warmup))
             if v is not None}
    config = RetrainConfig.for_mode(args.mode, batch_size=args.batch_size,
                                    detector_steps=args.detector_steps, detector_lr=args.detector_lr,
                                    boxes=args.boxes, device=args.device, seed=args.seed, **given)
    config.check()
    holdout_file = Path(args.holdout) if args.holdout else None
    saved = _read_id_list(holdout_file) if holdout_file is not None and holdout_file.is_file() else None
    keep_holdout = None
    if holdout_file is not None and saved is None:  # checked before the work; written after a success
        if not holdout_file.resolve().parent.is_dir():
            raise FileNotFoundError(errno.ENOENT, "folder for the hold-out file not found", args.holdout)
        keep_holdout = _holdout_writer(holdout_file)
    steps = config.steps_for(len(hard))  # about: the images held out are not counted off
    bar = ProgressBar(steps + config.detector_steps, label="retrain", log_every=10.0)
    try:
        result, written = retrain_and_save(
            model, args.data, ann, hard, config, saved,
            save=lambda r: save_retrained(r, args.out, parent=str(Path(args.model).resolve())),
            keep_holdout=keep_holdout, on_step=lambda step, steps, loss: bar.update(step, loss=loss),
            on_progress=lambda done, total, message: bar.update(int(done)) if done > steps else None,
            unreviewed=unreviewed)
    except RetrainError as e:
        print(f"\nfkp retrain: {describe_error(e)}", file=sys.stderr)
        return 1
    finally:
        bar.close()
    before, after = result.before, result.after
    reviewed = len(result.reviewed_holdout_ids)
    print(f"wrote {written}: {len(result.hard_ids)} hard + {result.replay_images} replay images, "
          f"{len(result.holdout_ids)} held out" + (f", {reviewed} reviewed held out" if reviewed else ""))
    if result.reviewed_holdout_note:
        print(f"note: {result.reviewed_holdout_note}")
    rows = [("held-out NE", before.overall, after.overall), ("hard-set NE", before.hard, after.hard)]
    rows += [(f"  {c}", before.per_category.get(c, float("nan")), after.per_category.get(c, float("nan")))
             for c in sorted(set(before.per_category) | set(after.per_category))]
    if reviewed:
        rows.append(("reviewed held-out NE", before.reviewed_holdout, after.reviewed_holdout))
    print(f"{'':20s} {'before':>9s} {'after':>9s}")
    for name, b, a in rows:
        print(f"{name:20s} {100 * b:8.2f}% {100 * a:8.2f}%")
    if reviewed:
        print(f"{'  review seconds':20s} {before.reviewed_holdout_seconds:8.1f}s {after.reviewed_holdout_seconds:8.1f}s")
    if args.json:
        report = result.report()
        for side in ("before", "after"):
            report[side].pop("hard_per_image", None)
        print(json.dumps(report))
    return 0



@_command
def _register_train_visibility(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-visibility",
                       help="train a model package's visibility stage (which predicted points are occluded)")
    p.add_argument("--model", required=True, help="model package to add the stage to (its other stages are kept)")
    p.add_argument("--data", required=True, help="data set root with annotated images (Annotations/<split>.csv)")
    p.add_argument("--split", default="train", help="annotation file name (default train)")
    p.add_argument("--out", required=True, help="package to write (file or folder; may be --model itself)")
    p.add_argument("--limit", type=positive_int, help="use at most this many images")
    p.add_argument("--epochs", type=positive_int, default=12, help="passes over the points (default 12)")
    add_runtime_arguments(p)
    p.add_argument("--half", action="store_true", help="store the package's weights as float16")
    p.set_defaults(func=_run_train_visibility)


def _run_train_visibility(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from pathlib import Path

    import numpy as np

    from engine.cli.progress import ProgressBar
    from engine.io.annotations import load_annotations
    from engine.model.device import pick_device
    from engine.model.package import load_model, save_package
    from engine.training.visibility import train_visibility

    _set_threads(args)
    model = load_model(args.model)
    split = Path(args.data) / "Annotations" / f"{args.split}.csv"
    ann = load_annotations(split)
    if args.limit is not None:
        ann = ann.subset(np.arange(min(args.limit, len(ann))))
    device = pick_device(args.device)
    bar = ProgressBar(args.epochs, label="train-visibility", log_every=10.0)
    try:
        net, report = train_visibility(args.data, ann, epochs=args.epochs, seed=args.seed, device=device,
                                       on_epoch=lambda epoch, _n, loss: bar.update(epoch, loss=loss))
    finally:
        bar.close()
    for problem in report.skipped:
        print(f"warning: {problem} (left out)", file=sys.stderr)
    figures = {"train_points": report.train_points, "held_out_points": report.held_out_points,
               "auc": round(report.auc, 4), "toggles_all_visible": report.toggles_all_visible,
               "toggles": report.toggles}
    metadata = {**model.metadata, "visibility": {"data": str(split), **figures}}
    written = save_package(args.out, replace(model, visibility=net.cpu(), metadata=metadata), half=args.half)
    print(f"wrote {written}: on {report.held_out_points} held-out points (occluded {report.occluded_share:.1%}) "
          f"AUC {report.auc:.3f}; a reviewer's visibility toggles {report.toggles_all_visible} -> {report.toggles}")
    return 0
