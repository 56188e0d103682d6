"""`fkp` commands on data: synth, validate, eval (NE, error types, suspected label errors),
merge, export-coco, import-coco, export-yolo and import-yolo."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from engine.cli.arguments import fraction, non_negative_float, positive_int
from engine.cli.registry import command as _command

if TYPE_CHECKING:  # pandas and numpy load only when a command needs them
    from engine.io.annotations import Annotations, RowProblem


@_command
def _register_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="render a synthetic FashionAI-format data set (images + CSV)")
    p.add_argument("out", nargs="?", help="data set root to write (Images/..., Annotations/<split>.csv)")
    p.add_argument("--n", type=positive_int, help="number of images")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives byte-identical output (default 0)")
    p.add_argument("--split", default="train", help="annotation file name: train, test, ... (default train)")
    p.add_argument("--size", type=positive_int, default=512, help="longer image side in pixels (default 512)")
    p.add_argument("--categories", help="comma-separated subset of blouse,outwear,trousers,skirt,dress")
    p.add_argument("--hard-fraction", type=fraction, default=0.1,
                   help="share of hard cases: crossed, rotation, cut, low_contrast (default 0.1)")
    p.add_argument("--annotations-only", action="store_true", help="write only the CSV (no images; fast)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT/Annotations/<split>.csv when it exists (default: refuse)")
    p.add_argument("--layouts", metavar="REAL.csv", help="take garment geometry from a real FashionAI CSV")
    p.add_argument("--workers", type=positive_int, help="render processes (default: all cores)")
    p.add_argument("--contact-sheet", metavar="PNG",
                   help="also (or, without OUT, only) write a contact sheet of 20 samples with keypoints")
    p.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    import time

    from engine.synth import contact_sheet, generate_dataset

    if args.out is None and args.contact_sheet is None:
        print("fkp synth: give OUT and --n, or --contact-sheet PNG", file=sys.stderr)
        return 2
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
                               workers=args.workers, progress=lambda done, n: bar.update(done),
                               overwrite=args.overwrite)
        bar.close()
        dt = time.perf_counter() - t0
        what = "rows" if args.annotations_only else "images"
        print(f"wrote {csv} ({args.n} {what} in {dt:.1f} s, {args.n / max(dt, 1e-9):.0f}/s)")
    if args.contact_sheet is not None:
        contact_sheet(args.contact_sheet, seed=args.seed, layouts=args.layouts)
        print(f"wrote {args.contact_sheet}")
    return 0



@_command
def _register_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="Normalized Error of a prediction CSV against ground truth")
    p.add_argument("gt", help="ground-truth annotation CSV")
    p.add_argument("pred", help="prediction CSV (FashionAI submission format)")
    p.add_argument("--intersect", action="store_true", help="score only images present in both files")
    p.add_argument("--missing-penalty", type=non_negative_float, default=1.0,
                   help="normalized error of a visible point with no prediction (default 1.0)")
    p.add_argument("--json", action="store_true", help="print one JSON object (fractions, not percent)")
    p.add_argument("--errors", action="store_true",
                   help="also type every error (good, jitter, inversion, miss), the fix-what-if table and "
                        "suspected annotation errors (`errors`, `what_if`, `check_annotation` in --json)")
    p.add_argument("--t-good", type=non_negative_float, default=None,
                   help="--errors: normalized error up to which a point is good (default 0.05)")
    p.add_argument("--t-miss", type=non_negative_float, default=None,
                   help="--errors: normalized error beyond which a point is a miss (default 0.20)")
    p.add_argument("--scores", help="--errors: per-keypoint confidences of the predictions "
                                    "(default: PRED.scores.csv when it exists)")
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    import json

    from engine.io.annotations import load_annotations
    from engine.analysis.ne import evaluate

    gt = load_annotations(args.gt)
    pred = load_annotations(args.pred)
    for path, ann, what in ((args.gt, gt, "annotation"), (args.pred, pred, "prediction")):
        if len(ann) == 0:
            why = f": {ann.problems[0].describe(path)}" if ann.problems else " (the file has only a header)"
            raise ValueError(f"{path}: no {what} rows could be read{why}")
    result = evaluate(gt, pred, missing_penalty=args.missing_penalty, intersect=args.intersect)
    if (args.scores or args.t_good is not None or args.t_miss is not None) and not args.errors:
        raise ValueError("--scores, --t-good and --t-miss need --errors")
    analysis = _error_analysis(gt, pred, args) if args.errors else None
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
    p.add_argument("--images", metavar="ROOT",
                   help="also report the rows whose image file is not under ROOT (the data set root the ids "
                        "are relative to)")
    p.set_defaults(func=_run_validate)


def _run_validate(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from engine.io.annotations import load_annotations

    ann = load_annotations(args.csv)
    missing = _rows_without_image(ann, args.images) if args.images is not None else []
    # Every problem leaves a row (the header included) unparsed and kept verbatim.
    failed = bool(ann.problems) or bool(missing)
    if args.json:
        print(json.dumps({
            "path": str(args.csv), "ok": not failed, "rows": len(ann), "unparsed": ann.unparsed_count,
            "has_keypoints": ann.has_keypoints, "problems": [asdict(p) for p in ann.problems],
            **({"missing_images": [asdict(p) for p in missing]} if args.images is not None else {}),
        }))
    else:
        for problem in sorted([*ann.problems, *missing], key=lambda p: p.line):
            print(problem.describe(args.csv))
        kind = "keypoint annotations" if ann.has_keypoints else "test split (no keypoint columns)"
        images = f", {len(missing)} rows without their image under {args.images}" if args.images is not None else ""
        print(f"{args.csv}: {len(ann)} rows loaded, {ann.unparsed_count} rows not parsed (kept as is), "
              f"{len(ann.problems)} problems{images}; {kind}")
    return 1 if failed else 0


def _rows_without_image(ann: Annotations, root: str) -> list[RowProblem]:
    """A `RowProblem` for each parsed row whose image file is not under `root` (line named)."""
    from pathlib import Path

    from engine.io.annotations import RowProblem, row_line_numbers

    base = Path(root)
    if not base.is_dir():
        raise ValueError(f"{root}: no such data set folder (--images)")
    lines = row_line_numbers(ann)
    return [RowProblem(int(line), str(image_id), None, f"no image file {base / str(image_id)}", "")
            for line, image_id in zip(lines.tolist(), ann.image_ids) if not (base / str(image_id)).is_file()]


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
def _register_merge(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge", help="append the rows of annotation files to another (e.g. reviewed images to train.csv)")
    p.add_argument("base", help="FashionAI CSV whose bytes are kept as they are")
    p.add_argument("more", nargs="+", help="FashionAI CSVs whose rows are appended, in order")
    p.add_argument("--out", required=True, help="file to write (BASE itself appends in place)")
    p.set_defaults(func=_run_merge)


def _run_merge(args: argparse.Namespace) -> int:
    from engine.io.annotations import merge_annotation_files

    # Every file is read and every row checked before the one write: a refusal writes nothing.
    kept, added = merge_annotation_files(args.base, args.more, args.out)
    print(f"wrote {args.out}: {added} rows appended to the {kept} of {args.base}")
    return 0


@_command
def _register_import_coco(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-coco", help="write a COCO keypoints JSON as a FashionAI CSV")
    p.add_argument("json", help="COCO keypoints JSON (categories named blouse, outwear, trousers, skirt, dress)")
    p.add_argument("out", help="FashionAI CSV to write")
    p.set_defaults(func=_run_import_coco)


def _run_import_coco(args: argparse.Namespace) -> int:
    from engine.io.annotations import save_annotations
    from engine.io.coco import load_coco

    ann, warnings = load_coco(args.json)
    save_annotations(ann, args.out)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"wrote {args.out}: {len(ann)} rows" + (f", {len(ann.verbatim)} kept verbatim" if ann.verbatim else ""))
    return 0


@_command
def _register_export_yolo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-yolo", help="write a FashionAI CSV as an Ultralytics YOLO-pose data set "
                                           "(images linked, labels, data.yaml)")
    p.add_argument("csv", help="FashionAI annotation CSV")
    p.add_argument("out", help="new (or empty) folder to write: data.yaml, images/<split>/..., labels/<split>/...")
    p.add_argument("--images", metavar="ROOT",
                   help="data set root the image ids resolve against (default: the CSV's data set root)")
    p.add_argument("--val-split", type=fraction, default=0.0, metavar="F",
                   help="share of images in val, chosen by a hash of the image id (default 0: val is train)")
    p.set_defaults(func=_run_export_yolo)


def _run_export_yolo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from engine.io.annotations import load_annotations
    from engine.io.yolo import export_yolo

    csv = Path(args.csv)
    if args.val_split >= 1:
        raise ValueError("--val-split must be below 1 (the train set cannot be empty)")
    ann = load_annotations(csv)
    root = Path(args.images) if args.images else _dataset_root(csv)
    report = export_yolo(ann, root, args.out, args.val_split, source=str(csv))
    for message in report.skipped:
        print(f"warning: {message}", file=sys.stderr)
    if ann.problems:
        print(f"warning: {csv}: {len(ann.problems)} problems; {ann.unparsed_count} rows could not be parsed "
              f"and are not exported (`fkp validate {csv}`)", file=sys.stderr)
    if report.clipped:
        print(f"warning: {report.clipped} keypoints outside their image were written on its border", file=sys.stderr)
    linked = report.train + report.val - report.copied
    print(f"wrote {args.out}: {report.train} train and {report.val} val images ({linked} linked, "
          f"{report.copied} copied), {len(report.skipped)} rows skipped; data.yaml")
    return 0


@_command
def _register_import_yolo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-yolo", help="write YOLO-pose labels (or Ultralytics predictions) as a FashionAI CSV")
    p.add_argument("dir", help="YOLO-pose data set folder (with data.yaml), its data.yaml, or a labels folder "
                               "(e.g. Ultralytics' runs/pose/predict/labels)")
    p.add_argument("out", help="FashionAI CSV to write (predictions: also OUT.scores.csv)")
    p.add_argument("--images", metavar="ROOT",
                   help="FashionAI data set root for the images' ids and sizes when they are not mirrored "
                        "beside the labels (labels/ -> images/)")
    p.add_argument("--predictions", action="store_true",
                   help="the files are predictions (keypoint confidences in place of v); "
                        "default: decided by a confidence column (save_conf)")
    p.set_defaults(func=_run_import_yolo)


def _run_import_yolo(args: argparse.Namespace) -> int:
    from engine.io.annotations import save_annotations
    from engine.io.scores import save_scores, scores_path
    from engine.io.yolo import load_yolo

    result = load_yolo(args.dir, args.images, predictions=True if args.predictions else None)
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if len(result.annotations) == 0:
        raise ValueError(f"{args.dir}: no label file could be read with its image")
    save_annotations(result.annotations, args.out)
    what = f"{len(result.annotations)} rows"
    if result.predictions:
        scores = scores_path(args.out)
        save_scores(scores, result.annotations.image_ids.tolist(), result.scores)
        what += f" of predictions; confidences in {scores}"
    print(f"wrote {args.out}: {what}")
    return 0
